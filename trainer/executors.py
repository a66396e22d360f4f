"""How a sweep's runs are executed: in this process, one worker process per GPU, or as tasks on a Ray cluster.

An executor receives self-contained, picklable tasks (flat config, tags, tracking URI, experiment id, parent run
id) and reports one TaskResult per task through ``on_result`` in the calling process, in completion order. Each
task logs its own run to MLflow from wherever it executes, so an executor only ships tasks to ``execute_task``
somewhere else (trainer/ray_executor.py does it with Ray). A task never raises: whatever goes wrong, including a
worker process dying, becomes a ``failed`` result and the sweep goes on.
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


def execute_grouped(tasks: Sequence[SweepTask], group_size: int, on_result: OnResult) -> None:
    """Train tasks whose configs share a shape as one batched model (trainer.batched: weights with a leading config
    dimension, per-config AdamW, per-config divergence isolation), at most ``group_size`` at a time; a config
    that shares its shape with no other (or group_size 1) trains alone. Small proxies leave a GPU idle, and even on
    CPU a group of 8 runs about 2x faster than one by one (docs/performance.md)."""
    from trainer.batched import execute_batched_tasks, group_configs

    if group_size <= 1:
        for task in tasks:
            on_result(execute_task(task))
        return
    for group in group_configs([RunConfig.from_flat(t.config) for t in tasks], max_size=group_size):
        if len(group) == 1:
            on_result(execute_task(tasks[group[0]]))
        else:
            for result in execute_batched_tasks([tasks[i] for i in group]):
                on_result(result)


class SequentialExecutor:
    """In this process (the default; CPU runs and single-GPU machines): configs that share a shape train together
    as batched groups of up to ``group_size``, the rest one after the other."""

    def __init__(self, group_size: int = 1) -> None:
        self.group_size = group_size

    def run(self, tasks: Sequence[SweepTask], on_result: OnResult) -> None:
        execute_grouped(tasks, self.group_size, on_result)


def _worker_loop(env: dict[str, str], inbox: Any, outbox: Any, slot: int,
                 task_fn: Callable[[SweepTask], TaskResult]) -> None:
    """Worker process body: set the environment before anything imports torch, then run tasks until None."""
    os.environ.update(env)
    try:
        for task in iter(inbox.get, None):
            start = time.perf_counter()
            try:
                result = task_fn(task)
            except Exception as exc:  # task_fn should not raise; if it does, the sweep still goes on
                result = failed_result(task, f"{type(exc).__name__}: {exc}", start)
            outbox.put((slot, result))
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group; the parent reports and cleans up
        pass


class WorkerPoolExecutor:
    """One spawned worker process per entry of ``worker_envs`` (its extra environment), each running one task at a
    time. The parent hands out tasks one by one, so it always knows which task a worker holds: a worker that dies
    (segfault, OOM kill, CUDA error that kills the process) has its task reported as failed and is replaced.

    ``device`` overrides ``train.device`` in every task (not part of the config hash, so resume is unaffected).
    """

    max_consecutive_deaths = 3  # a slot whose worker keeps dying without finishing a task is retired

    def __init__(self, worker_envs: Sequence[dict[str, str]], device: str | None = None,
                 task_fn: Callable[[SweepTask], TaskResult] = execute_task, poll_s: float = 1.0) -> None:
        if not worker_envs:
            raise ExecutorError("a worker pool needs at least one worker")
        self.worker_envs = [dict(env) for env in worker_envs]
        self.device = device
        self.task_fn = task_fn
        self.poll_s = poll_s

    def _prepare(self, task: SweepTask) -> SweepTask:
        if self.device is None:
            return task
        return replace(task, config={**task.config, "train.device": self.device})

    def run(self, tasks: Sequence[SweepTask], on_result: OnResult) -> None:
        pool = _Pool(mp.get_context("spawn"), self)
        pending = deque(self._prepare(t) for t in tasks)
        try:
            while pending or pool.busy():
                pool.dispatch(pending)
                for result in pool.collect(self.poll_s, pending):
                    on_result(result)
        finally:
            pool.shutdown()


class _Pool:
    """Bookkeeping of a WorkerPoolExecutor run: processes, their inboxes, and which task each slot holds."""

    def __init__(self, ctx: Any, owner: WorkerPoolExecutor) -> None:
        self.ctx = ctx
        self.owner = owner
        self.outbox = ctx.Queue()
        self.procs: dict[int, Any] = {}
        self.inboxes: dict[int, Any] = {}
        self.holding: dict[int, tuple[SweepTask, float]] = {}  # slot -> (task, start time)
        self.deaths = dict.fromkeys(range(len(owner.worker_envs)), 0)
        for slot in self.deaths:
            self._start(slot)

    def _start(self, slot: int) -> None:
        self.inboxes[slot] = self.ctx.Queue()
        proc = self.ctx.Process(target=_worker_loop, daemon=True, name=f"sweep-worker-{slot}",
                                args=(self.owner.worker_envs[slot], self.inboxes[slot], self.outbox, slot,
                                      self.owner.task_fn))
        proc.start()
        self.procs[slot] = proc

    def busy(self) -> bool:
        return bool(self.holding)

    def dispatch(self, pending: deque[SweepTask]) -> None:
        for slot in list(self.procs):
            if pending and slot not in self.holding:
                task = pending.popleft()
                self.holding[slot] = (task, time.perf_counter())
                self.inboxes[slot].put(task)

    def collect(self, timeout: float, pending: deque[SweepTask]) -> list[TaskResult]:
        """Results that arrived within ``timeout``, plus failures for tasks whose worker died."""
        results = []
        try:
            slot, result = self.outbox.get(timeout=timeout)
            if slot in self.holding and self.holding[slot][0].index == result.index:
                del self.holding[slot]
                self.deaths[slot] = 0
                results.append(result)
        except queue.Empty:
            pass
        results.extend(self._reap(pending))
        return results

    def _reap(self, pending: deque[SweepTask]) -> list[TaskResult]:
        results = []
        for slot, proc in list(self.procs.items()):
            if proc.is_alive():
                continue
            del self.procs[slot]
            self.deaths[slot] += 1
            if slot in self.holding:
                task, start = self.holding.pop(slot)
                results.append(failed_result(task, f"worker process died (exit code {proc.exitcode})", start))
            if pending and self.deaths[slot] < self.owner.max_consecutive_deaths:
                self._start(slot)
        if not self.procs:  # every slot retired: nothing can run what is left
            while pending:
                results.append(failed_result(pending.popleft(), "no worker process left (they kept dying)",
                                       time.perf_counter()))
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
    """One worker per visible GPU, each seeing only its own GPU (CUDA_VISIBLE_DEVICES) and logging its own runs."""

    def __init__(self) -> None:
        gpus = visible_gpus()
        if not gpus:
            raise ExecutorError("--executor gpu-pool needs at least one CUDA GPU, but torch sees none on this machine "
                                "(check CUDA_VISIBLE_DEVICES and the driver); use --executor sequential")
        super().__init__([{"CUDA_VISIBLE_DEVICES": g} for g in gpus], device="cuda")
        self.gpus = gpus


def make_executor(name: str, group_size: int = 1) -> Executor:
    """The executor for ``--executor NAME`` (``group_size``: ``--batch``); raises ExecutorError when it cannot run
    on this machine."""
    if name == "sequential":
        return SequentialExecutor(group_size)
    if name == "gpu-pool":
        return GpuPoolExecutor()
    if name == "ray":
        try:
            from trainer.ray_executor import RayExecutor
        except ImportError as exc:
            raise ExecutorError(f"--executor ray needs Ray ({exc}); install it with: pip install -r requirements.txt"
                                ) from None
        return RayExecutor.from_env()
    raise ExecutorError(f"unknown executor {name!r}; expected one of {list(EXECUTORS)}")
