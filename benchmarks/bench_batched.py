"""Benchmark: C small configs trained as one batched model (trainer.batched) against the same C runs one by one.

The C configs share a shape and differ in what a sweep varies: learning rate (spread over --lr-octaves below
--lr-max), a per-module LR multiplier on the readout (alternating 0.5 / 1 / 2) and the seed (c mod 3). Both sides
log to MemoryRunLoggers and include everything a sweep pays per run (model build and init on the CPU, data set-up,
the final evaluation); the warm-up of CUDA kernels is paid once, before timing, by a short untimed run.

  sequential  train_run for each config in turn
  batched     train_batched on all C at once

Reported per (width, C): wall-clock aggregate tokens/s of each side (C · steps · batch · seq / wall), the speedup,
the steady-state aggregate tokens/s (from the logged perf.tokens_per_s, after the first interval), and how far the
two sides' final validation losses are apart (0 up to rounding on CPU fp32; bf16 rounding on CUDA).

Goal (issue, item 2): on GPU, batched aggregate tokens/s ≥ 4× sequential at width ≤ 256.

Usage (GPU): python benchmarks/bench_batched.py [--widths 128 256] [--configs 8 16 32] [--compile]
CPU check:   python benchmarks/bench_batched.py --device cpu --widths 64 --configs 4 --depth 2 --seq 64 --batch 8 \
                 --steps 30
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_throughput import git_commit  # noqa: E402

from trainer import schema as S  # noqa: E402
from trainer.batched import train_batched  # noqa: E402
from trainer.config import RunConfig  # noqa: E402
from trainer.runlog import MemoryRunLogger  # noqa: E402
from trainer.train import describe_device, resolve_device, train_run  # noqa: E402


def make_configs(args: argparse.Namespace, width: int, n: int, steps: int | None = None) -> list[RunConfig]:
    steps = steps or args.steps
    base = {
        "model": {"width": width, "depth": args.depth, "head_dim": args.head_dim, "seq_len": args.seq},
        "param": {"name": "mup", "base_width": 64, "base_depth": args.depth},
        "train": {"batch_size": args.batch, "steps": steps, "log_every": args.log_every, "eval_every": steps,
                  "eval_batches": 2, "device": args.device, "compile": args.compile},
    }
    cfgs = []
    for c in range(n):
        log2_lr = math.log2(args.lr_max) - args.lr_octaves * c / max(1, n - 1)
        cfg = RunConfig.from_dict(base).with_overrides(
            {"hp.lr": 2.0 ** log2_lr, "mult.lr.unemb": (0.5, 1.0, 2.0)[c % 3], "train.seed": c % 3})
        cfgs.append(cfg)
    return cfgs


def steady_tokens_per_s(log: MemoryRunLogger) -> float:
    """Median logged tokens/s without the first interval (warm-up)."""
    points = [v for _, v in log.metrics.get(S.M_TOKENS_PER_S, [])]
    return statistics.median(points[1:] or points) if points else math.nan


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def bench(args: argparse.Namespace, width: int, n: int, dev: torch.device) -> dict:
    cfgs = make_configs(args, width, n)
    tokens = n * cfgs[0].steps * args.batch * args.seq

    seq_logs = [MemoryRunLogger() for _ in cfgs]
    _sync(dev)
    t0 = time.perf_counter()
    seq_results = [train_run(cfg, log) for cfg, log in zip(cfgs, seq_logs, strict=True)]
    _sync(dev)
    seq_wall = time.perf_counter() - t0

    bat_logs = [MemoryRunLogger() for _ in cfgs]
    t0 = time.perf_counter()
    bat_results = train_batched(cfgs, bat_logs)
    _sync(dev)
    bat_wall = time.perf_counter() - t0

    both_ok = [i for i in range(n) if seq_results[i].status == bat_results[i].status == S.STATUS_OK]
    rel = [abs(bat_results[i].summary[S.S_FINAL_VAL_LOSS] / seq_results[i].summary[S.S_FINAL_VAL_LOSS] - 1)
           for i in both_ok]
    seq_steady = statistics.median(steady_tokens_per_s(log) for log in seq_logs)
    bat_steady = n * statistics.median(steady_tokens_per_s(bat_logs[i]) for i in both_ok) if both_ok else math.nan
    row = {"width": width, "configs": n, "steps": cfgs[0].steps, "tokens_total": tokens,
           "sequential_wall_s": round(seq_wall, 3), "batched_wall_s": round(bat_wall, 3),
           "sequential_tokens_per_s": round(tokens / seq_wall, 1), "batched_tokens_per_s": round(tokens / bat_wall, 1),
           "speedup": round(seq_wall / bat_wall, 3),
           "sequential_steady_tokens_per_s": round(seq_steady, 1), "batched_steady_tokens_per_s": round(bat_steady, 1),
           "steady_speedup": round(bat_steady / seq_steady, 3),
           "statuses_sequential": [r.status for r in seq_results], "statuses_batched": [r.status for r in bat_results],
           "max_rel_val_loss_diff": max(rel) if rel else None}
    print(f"{width:>6} {n:>4} {row['sequential_tokens_per_s']:>12.0f} {row['batched_tokens_per_s']:>12.0f} "
          f"{row['speedup']:>8.2f}x {row['steady_speedup']:>8.2f}x {row['max_rel_val_loss_diff'] or 0:>10.1e}",
          flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--widths", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--configs", type=int, nargs="+", default=[8, 16])
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--head-dim", type=int, default=32)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--lr-max", type=float, default=2.0 ** -6)
    ap.add_argument("--lr-octaves", type=float, default=4.0)
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_batched.json")
    args = ap.parse_args()
    dev = resolve_device(args.device)
    print(f"device {describe_device(dev)}; depth {args.depth}, seq {args.seq}, batch {args.batch}, steps {args.steps}, "
          f"compile {args.compile}")
    if dev.type == "cuda":  # one untimed run per side so neither pays CUDA/cuBLAS initialisation
        warm = make_configs(args, args.widths[0], 2, steps=args.log_every)
        train_run(warm[0], MemoryRunLogger())
        train_batched(warm, [MemoryRunLogger(), MemoryRunLogger()])
    print(f"{'width':>6} {'C':>4} {'seq tok/s':>12} {'batch tok/s':>12} {'speedup':>9} {'steady':>9} "
          f"{'val diff':>10}", flush=True)
    rows = [bench(args, width, n, dev) for width in args.widths for n in args.configs]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "device": describe_device(dev), "torch": torch.__version__, "commit": git_commit(),
        "command": " ".join(sys.argv), "machine": platform.platform(), "goal_speedup_gpu_width_le_256": 4.0,
        "results": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
