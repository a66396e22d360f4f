"""Sweeps on Ray: every sweep point, or batched group of points, is one Ray task that trains into the shared store.

Why Ray: a transfer study is hundreds of runs, more than one GPU trains in a day. Ray places each task on whatever
node has the resources it asks for (a GPU, or a CPU), so the same ``--executor ray`` command runs on one machine
(a local Ray instance is started and stopped with the sweep) and on a cluster (``RAY_ADDRESS=head:6379``). The
tasks log to the tracking URI themselves, so on a cluster that URI must be a server every node reaches (an MLflow
server on PostgreSQL, docs/cluster.md), not a SQLite file.

The repository is shipped to the workers as Ray's ``working_dir`` (a few hundred KB; what .gitignore lists and the
local store are left out), so a node needs the Python environment but not a checkout, and trains exactly the code
the sweep was started from. The copy has no .git, so each task carries the driver's commit tags.

Exactly once: a worker process that dies (OOM kill, segfault, lost node) makes Ray run its task again
(``max_retries``). Every attempt first reads the store: a run of its config still tagged ``running`` belongs to a
dead attempt (``run_sweep`` retired all older ones before the first task started, and Ray runs one attempt of a task
at a time), so it is retired with the sweep's own logic (``interrupted``, MLflow KILLED) and gets
``run.superseded_by`` the new run; a config that a dead attempt finished but could not report is reported, not
trained again. A task whose retries are exhausted is reported ``failed`` and the sweep goes on; a rerun resumes.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import ray

from trainer import schema, tracking
from trainer.executors import (
    ExecutorError,
    GroupFn,
    OnResult,
    SweepTask,
    TaskFn,
    TaskResult,
    execute_task,
    execute_unit,
    failed_result,
    plan_units,
    train_group,
)
from trainer.provenance import REPO_ROOT, provenance_tags

# Left out of the code shipped to the workers, on top of what .gitignore lists: history, the environment (each node
# has its own) and the local store, which can be large and which the workers never read.
_EXCLUDES = ["/.git/", "/.venv/", "__pycache__/", "/mlruns/", "/benchmarks/results/"]
# Ray's own default takes 30 % of RAM for the object store; a task's arguments and results are a few KB.
_OBJECT_STORE_BYTES = 128 * 1024**2
DEAD_WORKER_REASON = "its Ray worker died mid-run; Ray retried the config"

# Environment variables read by ``RayExecutor.from_env`` (``python -m trainer sweep --executor ray``).
ENV_CPUS_PER_RUN = "HPT_RAY_CPUS_PER_RUN"
ENV_GPUS_PER_RUN = "HPT_RAY_GPUS_PER_RUN"
ENV_GROUP_SIZE = "HPT_RAY_GROUP_SIZE"
ENV_MAX_RETRIES = "HPT_RAY_MAX_RETRIES"


# ---- what runs on a worker --------------------------------------------------------------------------------------
def previous_attempts(task: SweepTask) -> tuple[TaskResult | None, list[str]]:
    """Look at the store before (re)training ``task``: retire runs of its config left ``running`` by a dead attempt
    (sweep._retire_stale: interrupted, KILLED) and return ``(result of a finished run or None, dead run ids)``."""
    from trainer.sweep import ResumeState, _retire_stale

    client = tracking.client_for(task.tracking_uri)
    query = (f"{tracking.tag_filter(schema.T_SWEEP_ID, task.tags[schema.T_SWEEP_ID])} and "
             f"{tracking.tag_filter(schema.T_CONFIG_HASH, task.config_hash)}")
    state = ResumeState.from_runs(tracking.search_all_runs(client, task.experiment_id, query))
    dead = [run.info.run_id for run in state.stale]
    for run_id in dead:
        client.set_tag(run_id, schema.T_STATUS_REASON, DEAD_WORKER_REASON)
    _retire_stale(client, state)
    finished_id = state.finished.get(task.config_hash)
    if finished_id is None:
        return None, dead
    run = client.get_run(finished_id)
    summary = {k: v for k, v in run.data.metrics.items() if k in schema.SUMMARY_METRICS}
    return TaskResult(task.index, finished_id, run.data.tags[schema.T_STATUS],
                      "finished by an earlier attempt whose worker died before reporting", summary, 0.0), dead


def run_unit(tasks: Sequence[SweepTask], task_fn: TaskFn, group_fn: GroupFn) -> list[TaskResult]:
    """Body of one Ray task: one config (``task_fn``) or a batched group (``group_fn``). Configs a dead attempt
    finished are reported as they are; the others are trained, and their dead attempts point to the new run."""
    done: dict[int, TaskResult] = {}
    dead: dict[int, list[str]] = {}
    todo: list[SweepTask] = []
    for task in tasks:
        finished, dead[task.index] = previous_attempts(task)
        if finished is not None:
            done[task.index] = finished
        else:
            todo.append(task)
    new = execute_unit(todo, task_fn, group_fn) if todo else []
    client = tracking.client_for(tasks[0].tracking_uri)
    for result in new:
        done[result.index] = result
        if result.run_id is not None:
            for run_id in dead[result.index]:
                client.set_tag(run_id, schema.T_SUPERSEDED_BY, result.run_id)
    return [done[task.index] for task in tasks]


# ---- the driver -------------------------------------------------------------------------------------------------
class RayExecutor:
    """One Ray task per config (or per batched group of ``group_size`` configs of one shape), each asking for
    ``cpus_per_run`` CPUs and ``gpus_per_run`` GPUs (default: one GPU when the cluster has GPUs, else none;
    fractions pack several small proxies on one GPU). Results are reported in completion order.

    ``train.device`` follows the request, as in gpu-pool: ``cuda`` (the GPU Ray assigned) when runs get GPUs, else
    ``cpu``; the device is not part of the config hash, so resuming is unaffected.

    ``address``: a Ray cluster (``host:6379``), else ``$RAY_ADDRESS``, else a new local Ray instance with
    ``num_cpus`` CPUs (all cores when None), stopped by ``close`` or when the process exits. An already connected
    Ray (``ray.init`` by the caller) is used as it is. ``task_fn``/``group_fn`` train one task/a group
    (``executors.execute_task`` and ``executors.train_group``); they must be importable on the workers.
    """

    def __init__(self, address: str | None = None, *, num_cpus: int | None = None, cpus_per_run: float = 1.0,
                 gpus_per_run: float | None = None, group_size: int = 1, max_retries: int = 3,
                 task_fn: TaskFn = execute_task, group_fn: GroupFn = train_group) -> None:
        for name, env, value, low in (("group_size", f"{ENV_GROUP_SIZE} or --batch", group_size, 1),
                                      ("max_retries", ENV_MAX_RETRIES, max_retries, 0),
                                      ("cpus_per_run", ENV_CPUS_PER_RUN, cpus_per_run, 0),
                                      ("gpus_per_run", ENV_GPUS_PER_RUN, gpus_per_run or 0, 0)):
            if value < low:
                raise ExecutorError(f"Ray executor: {name} (${env}) must be >= {low}, got {value}")
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.cpus_per_run = cpus_per_run
        self.group_size = group_size
        self.max_retries = max_retries
        self.task_fn = task_fn
        self.group_fn = group_fn
        self._owns_connection = self._connect(num_cpus)
        resources = ray.cluster_resources()
        gpus = resources.get("GPU", 0.0)
        self.gpus_per_run = (1.0 if gpus else 0.0) if gpus_per_run is None else gpus_per_run
        if self.gpus_per_run > gpus or cpus_per_run > resources.get("CPU", 0.0):
            self.close()
            raise ExecutorError(f"each run asks for {cpus_per_run:g} CPU(s) and {self.gpus_per_run:g} GPU(s), but "
                                f"the Ray cluster has {resources.get('CPU', 0.0):g} CPU(s) and {gpus:g} GPU(s)")

    @classmethod
    def from_env(cls, group_size: int | None = None) -> RayExecutor:
        """The executor of ``--executor ray``, set up by ``RAY_ADDRESS`` and the ``HPT_RAY_*`` variables.
        ``group_size`` (``--batch``, when given) overrides ``$HPT_RAY_GROUP_SIZE``, which is then not read: a flag
        typed for this sweep is more specific than a cluster's environment."""
        def number(name: str, default: float | None, kind: type = float) -> Any:
            text = os.environ.get(name)
            if not text:
                return default
            try:
                return kind(text)
            except ValueError:
                raise ExecutorError(f"${name}: expected {'an integer' if kind is int else 'a number'}, got {text!r}"
                                    ) from None

        return cls(cpus_per_run=number(ENV_CPUS_PER_RUN, 1.0), gpus_per_run=number(ENV_GPUS_PER_RUN, None),
                   group_size=number(ENV_GROUP_SIZE, 1, int) if group_size is None else group_size,
                   max_retries=number(ENV_MAX_RETRIES, 3, int))

    def _connect(self, num_cpus: int | None) -> bool:
        """Connect to (or start) Ray; True when this executor made the connection and so must close it."""
        if ray.is_initialized():
            return False
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # Ray would otherwise report usage over the network
        # Our excludes list Ray's defaults (.git, .venv, …) explicitly, which spares a warning per directory.
        os.environ.setdefault("RAY_OVERRIDE_RUNTIME_ENV_DEFAULT_EXCLUDES", "")
        options: dict[str, Any] = {"runtime_env": {"working_dir": str(REPO_ROOT), "excludes": _EXCLUDES},
                                   "logging_level": logging.WARNING}
        if not self.address:
            options.update(address="local", num_cpus=num_cpus, object_store_memory=_OBJECT_STORE_BYTES,
                           include_dashboard=False)
        else:
            options["address"] = self.address
        try:
            ray.init(**options)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ExecutorError(f"cannot connect to Ray at {self.address or 'a new local instance'}: {exc}") from None
        return True

    def close(self) -> None:
        """Disconnect from Ray (stopping the local instance this executor started)."""
        if self._owns_connection and ray.is_initialized():
            ray.shutdown()
        self._owns_connection = False

    def _prepare(self, task: SweepTask, driver_tags: dict[str, str]) -> SweepTask:
        """The device the task's resources imply, and no dependence on the driver's working directory: an absolute
        SQLite path (workers run in the shipped copy of the repository) and the driver's git tags (the copy has no
        .git)."""
        uri = task.tracking_uri
        path = tracking.sqlite_path(uri)
        if path is not None and not path.is_absolute():
            query = uri.partition("?")[1:]
            uri = f"sqlite:///{path.resolve()}{''.join(query)}"
        config = {**task.config, "train.device": "cuda" if self.gpus_per_run else "cpu"}
        return replace(task, config=config, tracking_uri=uri, tags={**task.tags, **driver_tags})

    def _warn_about_local_store(self, tasks: Sequence[SweepTask]) -> None:
        nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
        if nodes > 1 and any(tracking.sqlite_path(task.tracking_uri) for task in tasks):
            print(f"warning: the Ray cluster has {nodes} nodes but the tracking URI is a SQLite file, which only "
                  "this node can write; use a tracking server (docs/cluster.md)", file=sys.stderr, flush=True)

    def _outcome(self, ref: Any, unit: list[SweepTask]) -> list[TaskResult]:
        """The unit's results; when Ray gave up on it (retries exhausted, node lost), its configs are failed after
        retiring the dead attempts, unless one of them had finished."""
        try:
            return ray.get(ref)
        except ray.exceptions.RayError as exc:
            first_line = (str(exc).strip().splitlines() or [""])[0]
            reason = f"Ray task failed ({self.max_retries} retries): {type(exc).__name__}: {first_line}"
        results = []
        for task in unit:
            try:
                finished, _ = previous_attempts(task)
            except Exception:  # the store is unreachable from here too: the next resume retires the attempts
                finished = None
            results.append(finished or failed_result(task, reason, time.perf_counter()))
        return results

    def run(self, tasks: Sequence[SweepTask], on_result: OnResult) -> None:
        """Submit every unit at once (Ray queues what does not fit) and report results as units finish. On any
        exit before the end (Ctrl-C, a store error in ``on_result``) the unfinished units are cancelled."""
        prov = provenance_tags()
        driver_tags = {k: prov[k] for k in (schema.T_GIT_COMMIT, schema.T_GIT_DIRTY)}
        tasks = [self._prepare(task, driver_tags) for task in tasks]
        self._warn_about_local_store(tasks)
        remote = ray.remote(run_unit)
        pending: dict[Any, list[SweepTask]] = {}
        for unit in plan_units(tasks, self.group_size):
            options = {"num_cpus": self.cpus_per_run, "num_gpus": self.gpus_per_run, "max_retries": self.max_retries,
                       "retry_exceptions": False, "name": f"sweep: {unit[0].label}"}
            pending[remote.options(**options).remote(unit, self.task_fn, self.group_fn)] = unit
        try:
            while pending:
                (ref,), _ = ray.wait(list(pending), num_returns=1)
                for result in self._outcome(ref, pending.pop(ref)):
                    on_result(result)
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
