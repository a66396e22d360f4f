"""How a sweep's runs are executed: in this process, one worker process per GPU, or as tasks on a Ray cluster.

An executor receives self-contained, picklable tasks (flat config, tags, tracking URI, experiment id, parent run
id) and reports one TaskResult per task through ``on_result`` in the calling process, in completion order. Each
task logs its own run to MLflow from wherever it executes, so an executor only ships tasks to ``execute_task``
somewhere else (trainer/ray_executor.py does it with Ray). A task never raises: whatever goes wrong, including a
worker process dying, becomes a ``failed`` result and the sweep goes on.

Every executor trains *units* (``plan_units``): a batched group of configs that share a shape, or a single config.
A unit is what is shipped to a worker and what fails together when that worker dies, and ``execute_unit`` trains
it the same way everywhere.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from trainer import schema, tracking
from trainer.config import RunConfig

EXECUTORS = ("sequential", "gpu-pool", "ray")
# Configs per batched group of sequential and gpu-pool when --batch is not given: 16 tiny proxies fit easily in
# CPU or GPU memory.
DEFAULT_GROUP_SIZE = 16


class ExecutorError(RuntimeError):
    """The requested executor cannot run here (e.g. gpu-pool without a GPU); raised before any training."""


@dataclass(frozen=True)
class SweepTask:
    """One run to train. ``config`` is the flat form (RunConfig.to_flat) so the task pickles and serialises."""

    index: int  # position in the sweep plan (0-based)
    config: dict[str, Any]
    config_hash: str
    label: str  # short human name of the point, e.g. "width=64 lr=2^-7"; also the MLflow run name
    tags: dict[str, str]  # sweep id/name, run kind, config hash, command: set when the run is created
    tracking_uri: str
    experiment_id: str
    parent_run_id: str | None


@dataclass(frozen=True)
class TaskResult:
    """Outcome of one task; ``run_id`` is None only when not even the MLflow run could be created."""

    index: int
    run_id: str | None
    status: str
    reason: str
    summary: dict[str, float]
    wall_s: float


OnResult = Callable[[TaskResult], None]
TaskFn = Callable[[SweepTask], TaskResult]  # trains one task (``execute_task``)
GroupFn = Callable[[Sequence[SweepTask]], list[TaskResult]]  # trains a same-shape group, one result per task


class Executor(Protocol):
    def run(self, tasks: Sequence[SweepTask], on_result: OnResult) -> None:
        """Execute every task; call ``on_result`` once per task, in this process."""


def execute_task(task: SweepTask) -> TaskResult:
    """Train one task into its own MLflow run. Never raises on a training or logging error (the run, if created,
    is marked failed); KeyboardInterrupt propagates."""
    start = time.perf_counter()
    run_id = None
    try:
        from trainer.train import train_run  # torch is imported only where training happens

        cfg = RunConfig.from_flat(task.config)
        create_tags = {**task.tags, schema.T_STATUS: schema.STATUS_RUNNING}  # found by a resume even if killed now
        with tracking.run_in_experiment(task.tracking_uri, task.experiment_id, run_name=task.label, tags=create_tags,
                                        parent_run_id=task.parent_run_id) as logger:
            run_id = logger.run_id
            result = train_run(cfg, logger, extra_tags=task.tags)
    except Exception as exc:
        return failed_result(task, f"{type(exc).__name__}: {exc}", start, run_id)
    return TaskResult(task.index, run_id, result.status, result.reason, dict(result.summary),
                      time.perf_counter() - start)


def failed_result(task: SweepTask, reason: str, start: float, run_id: str | None = None) -> TaskResult:
    """The result of a task that could not train (its run, if one was created, is already marked failed)."""
    return TaskResult(task.index, run_id, schema.STATUS_FAILED, reason, {}, time.perf_counter() - start)


def train_group(tasks: Sequence[SweepTask]) -> list[TaskResult]:
    """The default ``GroupFn``: tasks of one shape trained as one batched model (trainer/batched.py: weights with a
    leading config dimension, per-config AdamW, per-config divergence isolation). Small proxies leave a GPU idle,
    and even on CPU a group of 8 runs about 2x faster than one by one (docs/performance.md). Imported here so that
    torch is loaded only where training happens."""
    from trainer.batched import execute_batched_tasks

    return execute_batched_tasks(tasks)


def plan_units(tasks: Sequence[SweepTask], group_size: int) -> list[list[SweepTask]]:
    """Split ``tasks`` into units: tasks whose configs share a shape (``trainer.batched.group_configs``, in order
    of first appearance) in groups of at most ``group_size``; a config that shares its shape with no other (or any
    config when group_size is 1) is a unit of its own."""
    if group_size <= 1:
        return [[task] for task in tasks]
    from trainer.batched import group_configs

    groups = group_configs([RunConfig.from_flat(task.config) for task in tasks], max_size=group_size)
    return [[tasks[i] for i in group] for group in groups]


def execute_unit(unit: Sequence[SweepTask], task_fn: TaskFn = execute_task,
                 group_fn: GroupFn = train_group) -> list[TaskResult]:
    """Train one unit of ``plan_units``, one result per task: a single task with ``task_fn`` (a batched model of
    one config would only add bookkeeping), several with ``group_fn``."""
    return [task_fn(unit[0])] if len(unit) == 1 else group_fn(unit)


def execute_grouped(tasks: Sequence[SweepTask], group_size: int, on_result: OnResult) -> None:
    """Train ``tasks`` in this process, unit after unit (``plan_units``)."""
    for unit in plan_units(tasks, group_size):
        for result in execute_unit(unit):
            on_result(result)


class SequentialExecutor:
    """In this process (the default; CPU runs and single-GPU machines): configs that share a shape train together
    as batched groups of up to ``group_size``, the rest one after the other."""

    def __init__(self, group_size: int = 1) -> None:
        self.group_size = group_size

    def run(self, tasks: Sequence[SweepTask], on_result: OnResult) -> None:
        execute_grouped(tasks, self.group_size, on_result)


def _worker_loop(env: dict[str, str], inbox: Any, outbox: Any, slot: int, task_fn: TaskFn,
                 group_fn: GroupFn) -> None:
    """Worker process body: set the environment before anything imports torch, then train units until None,
    reporting each task's result as ``(slot, result)``."""
    os.environ.update(env)
    try:
        for unit in iter(inbox.get, None):
            start = time.perf_counter()
            try:
                results = execute_unit(unit, task_fn, group_fn)
            except Exception as exc:  # task_fn/group_fn should not raise; if they do, the sweep still goes on
                results = [failed_result(task, f"{type(exc).__name__}: {exc}", start) for task in unit]
            for result in results:
                outbox.put((slot, result))
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group; the parent reports and cleans up
        pass


class WorkerPoolExecutor:
    """One spawned worker process per entry of ``worker_envs`` (its extra environment), each training one unit at
    a time (``plan_units``: a batched group of up to ``group_size`` same-shape configs, or a single config). The
    parent hands out units one by one, so it always knows which tasks a worker holds: a worker that dies (segfault,
    OOM kill, CUDA error that kills the process) has every task of its unit not reported yet reported as failed,
    and is replaced.

    ``device`` overrides ``train.device`` in every task (not part of the config hash, so resume is unaffected).
    ``task_fn``/``group_fn`` train a single task/a group (``execute_unit``); they are pickled to the workers.
    """

    max_consecutive_deaths = 3  # a slot whose worker keeps dying without finishing a task is retired

    def __init__(self, worker_envs: Sequence[dict[str, str]], device: str | None = None,
                 task_fn: TaskFn = execute_task, poll_s: float = 1.0, *, group_size: int = 1,
                 group_fn: GroupFn = train_group) -> None:
        if not worker_envs:
            raise ExecutorError("a worker pool needs at least one worker")
        self.worker_envs = [dict(env) for env in worker_envs]
        self.device = device
        self.task_fn = task_fn
        self.group_fn = group_fn
        self.group_size = group_size
        self.poll_s = poll_s

    def _prepare(self, task: SweepTask) -> SweepTask:
        if self.device is None:
            return task
        return replace(task, config={**task.config, "train.device": self.device})

    def run(self, tasks: Sequence[SweepTask], on_result: OnResult) -> None:
        pool = _Pool(mp.get_context("spawn"), self)
        pending = deque(plan_units([self._prepare(t) for t in tasks], self.group_size))
        try:
            while pending or pool.busy():
                pool.dispatch(pending)
                for result in pool.collect(self.poll_s, pending):
                    on_result(result)
        finally:
            pool.shutdown()


class _Pool:
    """Bookkeeping of a WorkerPoolExecutor run: processes, their inboxes, and which unit each slot holds."""

    def __init__(self, ctx: Any, owner: WorkerPoolExecutor) -> None:
        self.ctx = ctx
        self.owner = owner
        self.outbox = ctx.Queue()
        self.procs: dict[int, Any] = {}
        self.inboxes: dict[int, Any] = {}
        # slot -> (the tasks of its unit not reported yet, by index; start time)
        self.holding: dict[int, tuple[dict[int, SweepTask], float]] = {}
        self.deaths = dict.fromkeys(range(len(owner.worker_envs)), 0)
        for slot in self.deaths:
            self._start(slot)

    def _start(self, slot: int) -> None:
        self.inboxes[slot] = self.ctx.Queue()
        proc = self.ctx.Process(target=_worker_loop, daemon=True, name=f"sweep-worker-{slot}",
                                args=(self.owner.worker_envs[slot], self.inboxes[slot], self.outbox, slot,
                                      self.owner.task_fn, self.owner.group_fn))
        proc.start()
        self.procs[slot] = proc

    def busy(self) -> bool:
        return bool(self.holding)

    def dispatch(self, pending: deque[list[SweepTask]]) -> None:
        for slot in list(self.procs):
            if pending and slot not in self.holding:
                unit = pending.popleft()
                self.holding[slot] = ({task.index: task for task in unit}, time.perf_counter())
                self.inboxes[slot].put(unit)

    def collect(self, timeout: float, pending: deque[list[SweepTask]]) -> list[TaskResult]:
        """Results that arrived within ``timeout`` (all of them: a batched unit reports its tasks together), plus
        failures for the tasks of workers that died."""
        results = []
        try:
            message = self.outbox.get(timeout=timeout)
            while True:
                results.extend(self._accept(*message))
                message = self.outbox.get_nowait()
        except queue.Empty:
            pass
        results.extend(self._reap(pending))
        return results

    def _accept(self, slot: int, result: TaskResult) -> list[TaskResult]:
        """``[result]`` while its slot still holds its task; a late result from a dead worker whose tasks were
        already reported failed (its slot may hold a new unit by now) is dropped."""
        held = self.holding.get(slot)
        if held is None or result.index not in held[0]:
            return []
        del held[0][result.index]
        if not held[0]:
            del self.holding[slot]
        self.deaths[slot] = 0
        return [result]

    def _reap(self, pending: deque[list[SweepTask]]) -> list[TaskResult]:
        results = []
        for slot, proc in list(self.procs.items()):
            if proc.is_alive():
                continue
            del self.procs[slot]
            self.deaths[slot] += 1
            if slot in self.holding:
                unreported, start = self.holding.pop(slot)
                reason = f"worker process died (exit code {proc.exitcode})"
                results.extend(failed_result(task, reason, start) for task in unreported.values())
            if pending and self.deaths[slot] < self.owner.max_consecutive_deaths:
                self._start(slot)
        if not self.procs:  # every slot retired: nothing can run what is left
            while pending:
                results.extend(failed_result(task, "no worker process left (they kept dying)", time.perf_counter())
                               for task in pending.popleft())
        return results

    def shutdown(self) -> None:
        for slot, proc in self.procs.items():
            if proc.is_alive():
                self.inboxes[slot].put(None)
        deadline = time.monotonic() + 10
        for proc in self.procs.values():
            proc.join(timeout=max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)


def visible_gpus() -> list[str]:
    """CUDA device ids this process may use, as CUDA_VISIBLE_DEVICES values (respecting an existing one)."""
    import torch

    count = torch.cuda.device_count()
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is None:
        return [str(i) for i in range(count)]
    return [d.strip() for d in listed.split(",") if d.strip()][:count]


class GpuPoolExecutor(WorkerPoolExecutor):
    """One worker per visible GPU, each seeing only its own GPU (CUDA_VISIBLE_DEVICES) and logging its own runs,
    training batched groups of up to ``group_size`` same-shape configs (a lone small proxy leaves a GPU idle)."""

    def __init__(self, group_size: int = 1) -> None:
        gpus = visible_gpus()
        if not gpus:
            raise ExecutorError("--executor gpu-pool needs at least one CUDA GPU, but torch sees none on this machine "
                                "(check CUDA_VISIBLE_DEVICES and the driver); use --executor sequential")
        super().__init__([{"CUDA_VISIBLE_DEVICES": g} for g in gpus], device="cuda", group_size=group_size)
        self.gpus = gpus


def make_executor(name: str, group_size: int | None = None) -> Executor:
    """The executor for ``--executor NAME``; raises ExecutorError when it cannot run on this machine.

    ``group_size`` is ``--batch``; None (not given) leaves each executor its default: DEFAULT_GROUP_SIZE for
    sequential and gpu-pool, and for ray ``$HPT_RAY_GROUP_SIZE`` else 1 (a Ray unit is also what a dead worker
    retries, and a cluster's set-up lives in its environment). A given ``--batch`` beats the environment, being the
    more specific request."""
    if name == "sequential":
        return SequentialExecutor(DEFAULT_GROUP_SIZE if group_size is None else group_size)
    if name == "gpu-pool":
        return GpuPoolExecutor(DEFAULT_GROUP_SIZE if group_size is None else group_size)
    if name == "ray":
        try:
            from trainer.ray_executor import RayExecutor
        except ImportError as exc:
            raise ExecutorError(f"--executor ray needs Ray ({exc}); install it with: pip install -r requirements.txt"
                                ) from None
        return RayExecutor.from_env(group_size)
    raise ExecutorError(f"unknown executor {name!r}; expected one of {list(EXECUTORS)}")
