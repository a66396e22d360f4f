"""Benchmark: runs -> polars table, analysis.load.load_runs (SQLite bulk read) vs mlflow.search_runs.

Builds synthetic stores of 1k and 10k runs shaped like our trainer's runs (≈40 params, 10 tags, 12 latest metrics).
Writing 10k runs through the MLflow API would take many minutes, so the store is created by MLflow (one
experiment, one real run: schema and migrations are MLflow's own) and the synthetic runs are then bulk-inserted
with sqlite3 into runs/params/tags/metrics/latest_metrics exactly as MLflow's SQL store lays them out.

Usage: python benchmarks/bench_load.py [--sizes 1000 10000] [--out benchmarks/results/bench_load.json]
search_runs is timed once per size (≈15 s at 10k); our loader cold (no cache) three times and warm (cache hit).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.load import clear_cache, load_runs  # noqa: E402
from trainer import schema as S  # noqa: E402

EXPERIMENT = "bench"


def new_store(path: Path, experiment: str) -> tuple[str, str]:
    """A brand-new MLflow SQLite store at ``path`` with one experiment: (tracking URI, experiment id). MLflow itself
    creates the schema (one real run, then deleted), so bulk inserts land in exactly the tables it reads."""
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{path}"
    client = MlflowClient(uri)
    exp_id = client.create_experiment(experiment)
    client.delete_run(client.create_run(exp_id).info.run_id)
    mlflow.set_tracking_uri(uri)
    return uri, exp_id


def insert_rows(path: Path, runs: list, params: list, tags: list, latest: list, metrics: list | None = None) -> None:
    """Bulk-insert synthetic runs (rows in MLflow's column order) with one executemany per table: thousands of runs
    per second, where the MLflow client manages a few dozen."""
    with sqlite3.connect(path) as con:
        con.executemany("INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, "
                        "status, start_time, end_time, source_version, lifecycle_stage, artifact_uri, experiment_id)"
                        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", runs)
        con.executemany("INSERT INTO params (key, value, run_uuid) VALUES (?,?,?)", params)
        con.executemany("INSERT INTO tags (key, value, run_uuid) VALUES (?,?,?)", tags)
        if metrics:
            con.executemany("INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
                            "VALUES (?,?,?,?,?,?)", metrics)
        con.executemany("INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) "
                        "VALUES (?,?,?,?,?,?)", latest)


def build_store(path: Path, n_runs: int, seed: int = 0) -> str:
    """Create an MLflow SQLite store at ``path`` holding ``n_runs`` synthetic trainer-like runs."""
    uri, exp_id = new_store(path, EXPERIMENT)
    rng = random.Random(seed)
    runs, params, tags, metrics, latest = [], [], [], [], []
    now = int(time.time() * 1000)
    for i in range(n_runs):
        rid = uuid.uuid4().hex
        runs.append((rid, f"run-{i}", "LOCAL", "bench", "", "bench", "FINISHED", now + i, now + i + 1000, "",
                     "active", f"/tmp/artifacts/{rid}", int(exp_id)))
        width = rng.choice([64, 128, 256, 512, 1024])
        p = {"model.width": width, "model.depth": rng.choice([2, 4, 8]), "hp.lr": 2 ** rng.uniform(-12, -4),
             "train.batch_size": 16, "train.tokens": 0, "train.steps": 200, "train.seed": i % 3,
             "param.name": rng.choice(["sp", "mup"]), "param.alpha": 1.0, S.P_STEPS: 200}
        p.update({f"model.f{k}": k for k in range(12)})
        p.update({f"optim.f{k}": 0.1 * k for k in range(8)})
        p.update({f"mult.lr.m{k}": 1.0 for k in range(10)})
        params += [(k, str(v), rid) for k, v in p.items()]
        t = {S.T_SWEEP_ID: "s1", S.T_RUN_KIND: "train", S.T_STATUS: "ok", S.T_CONFIG_HASH: rid[:16],
             S.T_SOURCE: "trainer", "mlflow.runName": f"run-{i}", "mlflow.user": "bench",
             S.T_GIT_COMMIT: "abc", S.T_DEVICE: "cpu", S.T_HOST: "h"}
        tags += [(k, v, rid) for k, v in t.items()]
        loss = 3 + rng.random()
        for key in (*S.SUMMARY_METRICS, S.M_TRAIN_LOSS):
            value = loss if key != S.S_STEPS_DONE else 200.0
            metrics.append((key, value, now, rid, 0, 0))
            latest.append((key, value, now, 0, 0, rid))
    insert_rows(path, runs, params, tags, latest, metrics)
    return uri


def bench(n_runs: int, workdir: Path) -> dict:
    import mlflow

    db = workdir / f"store_{n_runs}.db"
    t0 = time.perf_counter()
    uri = build_store(db, n_runs)
    build_s = time.perf_counter() - t0
    cold = []
    for _ in range(3):
        clear_cache()
        t0 = time.perf_counter()
        df = load_runs(uri, EXPERIMENT)
        cold.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    load_runs(uri, EXPERIMENT)
    warm = time.perf_counter() - t0
    mlflow.set_tracking_uri(uri)
    t0 = time.perf_counter()
    pdf = mlflow.search_runs(experiment_names=[EXPERIMENT], max_results=1_000_000)
    search = time.perf_counter() - t0
    assert df.height == len(pdf) == n_runs + 1, (df.height, len(pdf))
    return {"n_runs": n_runs, "build_s": round(build_s, 3), "load_runs_cold_s": round(min(cold), 3),
            "load_runs_cold_all_s": [round(c, 3) for c in cold], "load_runs_warm_s": round(warm, 5),
            "search_runs_s": round(search, 3), "speedup_cold": round(search / min(cold), 1),
            "columns": df.width}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bench_load.json")
    args = ap.parse_args()
    import logging

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            results.append(bench(n, Path(tmp)))
    print(f"{'runs':>7} {'build s':>8} {'load_runs cold s':>17} {'warm s':>8} {'search_runs s':>14} {'speedup':>8}")
    for r in results:
        print(f"{r['n_runs']:>7} {r['build_s']:>8.2f} {r['load_runs_cold_s']:>17.3f} {r['load_runs_warm_s']:>8.4f} "
              f"{r['search_runs_s']:>14.2f} {r['speedup_cold']:>7.1f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": platform.platform(), "python": platform.python_version(),
                                    "results": results}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
