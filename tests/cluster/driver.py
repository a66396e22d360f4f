"""A sweep driver that the cluster tests run as its own process: Ray keeps per-process state (its connection, the
authentication mode it reads once at import, a SIGTERM handler), so the pytest process itself never imports Ray.

    python -m tests.cluster.driver SPEC TRACKING_URI RAY_ADDRESS [--group-size N] [--kill-index I --marker PATH]

Prints the sweep's outcome as JSON on its last line. ``--kill-index`` makes the first attempt at that config kill
its Ray worker mid-run (``die_once_mid_run``), as the OOM killer would.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trainer import sweep
from trainer.executors import SweepTask, TaskResult, execute_task


class _KillAfter:
    """A RunLogger that SIGKILLs its own process after ``calls`` metric logs: the run exists, is tagged running and
    has a loss history, and the worker is gone without a word."""

    def __init__(self, logger: Any, calls: int) -> None:
        self._logger = logger
        self._calls = calls

    def __getattr__(self, name: str) -> Any:
        return getattr(self._logger, name)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self._logger.log_metrics(metrics, step)
        self._calls -= 1
        if self._calls == 0:
            self._logger.flush()
            os.kill(os.getpid(), signal.SIGKILL)


def die_once_mid_run(marker: str, index: int, task: SweepTask) -> TaskResult:
    """Ray task function: the first attempt at config ``index`` kills its worker mid-run (``marker`` records that
    it happened, so Ray's retry trains normally); every other call is ``execute_task``."""
    if task.index != index or os.path.exists(marker):
        return execute_task(task)
    Path(marker).touch()
    import trainer.train

    real = trainer.train.train_run
    # This worker process is about to die: the patch never outlives it.
    trainer.train.train_run = lambda cfg, logger, extra_tags=None: real(cfg, _KillAfter(logger, 2), extra_tags)
    return execute_task(task)


def main(argv: Sequence[str] | None = None) -> int:
    from trainer.ray_executor import RayExecutor

    parser = argparse.ArgumentParser()
    parser.add_argument("spec")
    parser.add_argument("tracking_uri")
    parser.add_argument("address")
    parser.add_argument("--group-size", type=int, default=1)
    parser.add_argument("--kill-index", type=int, default=None)
    parser.add_argument("--marker", default=None)
    args = parser.parse_args(argv)
    task_fn = execute_task
    if args.kill_index is not None:
        task_fn = functools.partial(die_once_mid_run, args.marker, args.kill_index)
    executor = RayExecutor(args.address, group_size=args.group_size, task_fn=task_fn)
    try:
        outcome = sweep.run_sweep(sweep.load_sweep(args.spec), args.tracking_uri, executor)
    finally:
        executor.close()
    print(json.dumps({"counts": dict(outcome.counts), "skipped": outcome.skipped, "left": outcome.left}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
