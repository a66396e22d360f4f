"""Benchmark: the analysis pipeline at 1k / 10k / 100k runs — load, classify, fit, report — time and peak memory.

Stores come from ``bench_load.build_store`` (synthetic trainer-like runs bulk-inserted into a real MLflow SQLite
store). That builder writes the same random number into every summary metric, which the classifier rightly calls
diverged (final ≥ initial loss), and draws learning rates at random, while sweeps use a grid; the cost of the
analysis depends on both (how many runs are ok, how many grid points per slice). So ``make_sweep_like`` rewrites
each run's hp.lr onto a 2^(k/2) grid and its summary metrics from a loss bowl over log2(lr) whose optimum moves
with width under SP and stays put under μP, with seed noise and blow-ups at high LR.

Each size is measured in a fresh subprocess, so ``peak_rss_mb`` (resource.getrusage ru_maxrss) is that size's own
peak — the number that decides "100k runs within 2 GB"; polars allocates outside Python's allocator, so tracemalloc
would not see most of it. Stages (each timed once, cold: no load cache):

  load      analysis.load.load_runs(uri, experiment, use_cache=False)
  classify  analysis.classify.prepare_runs(runs)
  fit       analysis.optimum.optimum_table(prepared, "hp.lr")  (bootstrap intervals, --n-boot)
  report    analysis.report.analyze(runs) + format_report  (the whole pipeline from the loaded table)

Baseline: mlflow.search_runs on the same store (skipped above --search-max runs: ≈25 s at 10k, minutes at 100k).
The dashboard's Transfer-page render time is benchmarks/bench_app.py.

Usage: python benchmarks/bench_analysis.py [--sizes 1000 10000 100000] [--out benchmarks/results/bench_analysis.json]
Building the stores is most of the time (bench_load's builder: ≈20 s at 10k, 3-8 min at 100k on 2 busy CPU cores);
``--store-dir DIR`` keeps them for the next run, which then takes ≈1-2 min. ``--sizes 1000 10000`` skips 100k.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_load import EXPERIMENT, build_store  # noqa: E402

from trainer import schema as S  # noqa: E402

GOALS = {"load_10k_s": 2.0, "report_10k_s": 5.0, "peak_100k_mb": 2048}


def make_sweep_like(db: Path, seed: int = 0) -> None:
    """Rewrite hp.lr (onto a 2^(k/2) grid) and every summary metric of the store's runs so that they look like a
    width × LR × seed sweep: loss = floor(width) + 0.05·(log2 lr − log2 lr*)² + noise, lr* shifting with width
    under SP only, and loss 8 (above the initial 5.5: a blow-up) more than 3 octaves above the optimum."""
    rng = random.Random(seed)
    with sqlite3.connect(db) as con:
        params: dict[str, dict[str, str]] = {}
        for rid, key, value in con.execute("SELECT run_uuid, key, value FROM params WHERE key IN "
                                           "('hp.lr', 'model.width', 'param.name')"):
            params.setdefault(rid, {})[key] = value
        lr_rows, metric_rows = [], []
        ts = int(time.time() * 1000)
        for rid, p in params.items():
            log_lr = round(2 * math.log2(float(p["hp.lr"]))) / 2
            lr_rows.append((repr(2.0 ** log_lr), rid))
            m_width = math.log2(int(p["model.width"]) / 64)
            opt = -7.0 - (m_width if p["param.name"] == "sp" else 0.0)
            loss = 3.2 - 0.15 * m_width + 0.05 * (log_lr - opt) ** 2 + rng.gauss(0, 0.01)
            loss = 8.0 if log_lr - opt > 3 else loss
            values = {S.S_INITIAL_LOSS: 5.5, S.S_FINAL_VAL_LOSS: loss, S.S_BEST_VAL_LOSS: min(loss, 5.5),
                      S.S_FINAL_TRAIN_LOSS: loss - 0.02, S.S_MIN_TRAIN_LOSS: min(loss, 5.5) - 0.03,
                      S.S_MAX_TRAIN_LOSS: max(loss, 5.5), S.S_STEPS_DONE: 200.0, S.S_TOKENS_SEEN: 200.0 * 16 * 128,
                      S.S_TOKENS_PER_S: 1e5, S.S_MFU: 0.3, S.S_WALL_S: 30.0, S.M_TRAIN_LOSS: loss - 0.02}
            metric_rows += [(key, v, ts, rid, 0, 0) for key, v in values.items()]
        con.executemany("UPDATE params SET value = ? WHERE key = 'hp.lr' AND run_uuid = ?", lr_rows)
        con.execute("DELETE FROM metrics")
        con.execute("DELETE FROM latest_metrics")
        con.executemany("INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES (?,?,?,?,?,?)",
                        metric_rows)
        con.executemany("INSERT INTO latest_metrics (key, value, timestamp, run_uuid, step, is_nan) "
                        "VALUES (?,?,?,?,?,?)", metric_rows)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def measure(uri: str, n_boot: int, search: bool) -> dict:
    """All stages on one store, in this process (run by ``--one`` in a fresh subprocess)."""
    from analysis.classify import prepare_runs
    from analysis.load import load_runs
    from analysis.optimum import optimum_table
    from analysis.report import analyze, format_report

    out: dict = {"rss_before_mb": round(_rss_mb(), 1)}
    t0 = time.perf_counter()
    runs = load_runs(uri, EXPERIMENT, use_cache=False)
    out["load_s"] = time.perf_counter() - t0
    out["rss_after_load_mb"] = round(_rss_mb(), 1)
    t0 = time.perf_counter()
    prepared = prepare_runs(runs)
    out["classify_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    opt = optimum_table(prepared, "hp.lr", n_boot=n_boot)
    out["fit_s"] = time.perf_counter() - t0
    out["slices"] = opt.height
    t0 = time.perf_counter()
    text = format_report(analyze(runs, hps=["hp.lr"], n_boot=n_boot))
    out["report_s"] = time.perf_counter() - t0
    out["load_plus_report_s"] = out["load_s"] + out["report_s"]
    out["report_lines"] = len(text.splitlines())
    out["runs"] = runs.height
    out["ok_runs"] = int((prepared["status"] == "ok").sum())
    out["peak_rss_mb"] = round(_rss_mb(), 1)
    if search:
        import logging

        import mlflow

        logging.getLogger("mlflow").setLevel(logging.WARNING)
        mlflow.set_tracking_uri(uri)
        t0 = time.perf_counter()
        pdf = mlflow.search_runs(experiment_names=[EXPERIMENT], max_results=1_000_000)
        out["search_runs_s"] = time.perf_counter() - t0
        out["search_runs_rows"] = len(pdf)
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}


def bench_size(n_runs: int, workdir: Path, n_boot: int, search_max: int) -> dict:
    db = workdir / f"store_{n_runs}.db"
    t0 = time.perf_counter()
    if db.exists():  # kept from an earlier run (--store-dir)
        uri = f"sqlite:///{db}"
    else:
        uri = build_store(db, n_runs)
        make_sweep_like(db)
    build_s = time.perf_counter() - t0
    cmd = [sys.executable, __file__, "--one", uri, "--n-boot", str(n_boot)] + (["--search"] if n_runs <= search_max
                                                                               else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"n_runs": n_runs, "build_s": round(build_s, 2), "db_mb": round(db.stat().st_size / 2**20, 1), **result}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples of the optimum fit (analyze default)")
    ap.add_argument("--search-max", type=int, default=10000, help="time mlflow.search_runs up to this many runs")
    ap.add_argument("--store-dir", type=Path, default=None,
                    help="keep the built stores here and reuse them next time (building 100k runs takes minutes)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_analysis.json")
    ap.add_argument("--one", metavar="URI", help=argparse.SUPPRESS)  # internal: measure one store, print JSON
    ap.add_argument("--search", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.n_boot, args.search)))
        return
    import logging

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.store_dir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for n in args.sizes:
            results.append(bench_size(n, workdir, args.n_boot, args.search_max))
            print(f"  {n} runs done", file=sys.stderr)
    head = (f"{'runs':>7} {'load s':>7} {'classify s':>10} {'fit s':>7} {'report s':>8} {'load+report':>11} "
            f"{'peak RSS MB':>11} {'search_runs s':>13}")
    print(head)
    for r in results:
        search = f"{r['search_runs_s']:.2f}" if "search_runs_s" in r else "-"
        print(f"{r['n_runs']:>7} {r['load_s']:>7.3f} {r['classify_s']:>10.3f} {r['fit_s']:>7.3f} {r['report_s']:>8.3f} "
              f"{r['load_plus_report_s']:>11.3f} {r['peak_rss_mb']:>11.0f} {search:>13}")
    print("goals: " + ", ".join(f"{k} <= {v}" for k, v in GOALS.items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": platform.platform(), "python": platform.python_version(),
                                    "cpus": len(os.sched_getaffinity(0)), "n_boot": args.n_boot, "goals": GOALS,
                                    "results": results}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
