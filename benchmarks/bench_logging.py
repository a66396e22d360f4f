"""Benchmark: what logging costs a training step — no sink, JSONL, and MLflow (a temporary SQLite store).

A real train_run trains a small CPU model with each sink; a timing proxy around the sink measures the time spent in
the sink's calls *inside the training loop* (log_metrics, including the buffered MLflow log_batch flushes it
triggers) and, separately, the per-run fixed cost (tags, params, artifacts, the final summary and flush), which a
run pays once and not per step. The in-loop overhead is reported as a fraction of the loop time; the microsecond
cost per log_metrics call lets one work out the overhead for any step time (a GPU step is shorter: overhead =
µs per call / (log_every · step time)). The step time with and without a sink is reported too, but on a shared CPU
its noise is larger than the 1 % being measured, so the proxy's direct measurement is the number to read.

Goal (issue, item 3): logging overhead ≤ 1 % of step time.

Usage: python benchmarks/bench_logging.py [--steps 300] [--log-every 1 10] [--out benchmarks/results/bench_logging.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from trainer import schema as S  # noqa: E402
from trainer.config import RunConfig  # noqa: E402
from trainer.runlog import JsonlRunLogger, RunLogger  # noqa: E402
from trainer.train import train_run  # noqa: E402


class NullLogger:
    """Discards everything: the no-logging reference."""

    def log_params(self, params: dict[str, Any]) -> None:
        pass

    def set_tags(self, tags: dict[str, str]) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        pass

    def log_json(self, name: str, obj: Any) -> None:
        pass

    def flush(self) -> None:
        pass


class TimedLogger:
    """Forwards to a sink and adds up the time of its calls: in the loop (log_metrics of history metrics) and per
    run (everything else, including the final summary metrics)."""

    def __init__(self, sink: RunLogger) -> None:
        self.sink = sink
        self.loop_s = 0.0
        self.loop_calls = 0
        self.fixed_s = 0.0

    def _timed(self, in_loop: bool, fn: Any, *args: Any) -> None:
        t0 = time.perf_counter()
        fn(*args)
        dt = time.perf_counter() - t0
        if in_loop:
            self.loop_s += dt
            self.loop_calls += 1
        else:
            self.fixed_s += dt

    def log_params(self, params: dict[str, Any]) -> None:
        self._timed(False, self.sink.log_params, params)

    def set_tags(self, tags: dict[str, str]) -> None:
        self._timed(False, self.sink.set_tags, tags)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self._timed(S.S_WALL_S not in metrics, self.sink.log_metrics, metrics, step)

    def log_json(self, name: str, obj: Any) -> None:
        self._timed(False, self.sink.log_json, name, obj)

    def flush(self) -> None:
        self._timed(False, self.sink.flush)


@contextmanager
def sink(kind: str, workdir: Path) -> Iterator[RunLogger]:
    if kind == "none":
        yield NullLogger()
    elif kind == "jsonl":
        yield JsonlRunLogger(workdir / "jsonl", f"run-{time.monotonic_ns()}")
    else:
        from trainer.tracking import ensure_store, run_in_experiment

        uri = f"sqlite:///{workdir / 'mlflow.db'}"
        exp = ensure_store(uri, "bench_logging")
        with run_in_experiment(uri, exp) as logger:
            yield logger


def make_config(args: argparse.Namespace, log_every: int) -> RunConfig:
    return RunConfig.from_dict({
        "model": {"width": args.width, "depth": 2, "head_dim": 16, "seq_len": 64},
        "param": {"name": "mup", "base_width": args.width, "base_depth": 2},
        "train": {"batch_size": 8, "steps": args.steps, "log_every": log_every, "eval_every": args.steps,
                  "eval_batches": 1, "device": "cpu"},
    })


def bench(args: argparse.Namespace, kind: str, log_every: int, workdir: Path) -> dict:
    cfg = make_config(args, log_every)
    with sink(kind, workdir) as inner:
        timed = TimedLogger(inner)
        result = train_run(cfg, timed)
    tokens_per_step = cfg.train.batch_size * cfg.model.seq_len
    loop_s = cfg.steps * tokens_per_step / result.summary[S.S_TOKENS_PER_S]
    return {"sink": kind, "log_every": log_every, "steps": cfg.steps, "step_ms": round(1e3 * loop_s / cfg.steps, 3),
            "loop_log_calls": timed.loop_calls, "loop_log_s": round(timed.loop_s, 5),
            "us_per_log_call": round(1e6 * timed.loop_s / max(1, timed.loop_calls), 1),
            "overhead_frac": round(timed.loop_s / loop_s, 6), "per_run_fixed_s": round(timed.fixed_s, 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--log-every", type=int, nargs="+", default=[1, 10])
    ap.add_argument("--sinks", nargs="+", default=["none", "jsonl", "mlflow"], choices=["none", "jsonl", "mlflow"])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_logging.json")
    args = ap.parse_args()
    import logging

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        with sink("mlflow", Path(tmp)):  # create the store once, outside the timing (MLflow's migrations)
            pass
        for log_every in args.log_every:
            for kind in args.sinks:
                rows.append(bench(args, kind, log_every, Path(tmp)))
    print(f"{'sink':<7} {'log_every':>9} {'step ms':>8} {'calls':>6} {'µs/call':>8} {'overhead':>9} {'per-run s':>9}")
    for r in rows:
        print(f"{r['sink']:<7} {r['log_every']:>9} {r['step_ms']:>8.2f} {r['loop_log_calls']:>6} "
              f"{r['us_per_log_call']:>8.1f} {r['overhead_frac']:>9.3%} {r['per_run_fixed_s']:>9.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": platform.platform(), "python": platform.python_version(),
                                    "device": "cpu", "goal_overhead_frac": 0.01, "results": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
