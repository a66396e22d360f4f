"""Concurrent local workers on the embedded SQLite store: a brand-new store is created once by the sweep process
before any worker starts, and two workers writing at once lose no run (MLflow waits on SQLite's lock)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cluster.helpers import children, finished_per_config, write_spec
from trainer import schema, sweep
from trainer.executors import WorkerPoolExecutor


@pytest.mark.slow
def test_two_local_workers_on_a_brand_new_sqlite_store(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"  # does not exist yet: no migrated template
    plan = sweep.load_sweep(write_spec(tmp_path, "local-pool"))
    pool = WorkerPoolExecutor([{"OMP_NUM_THREADS": "1"}] * 2, device="cpu", poll_s=0.2)
    outcome = sweep.run_sweep(plan, uri, pool, say=print)
    assert outcome.counts == {schema.STATUS_OK: len(plan.points)} and outcome.left == 0
    runs = children(uri, "local-pool")
    assert len(runs) == len(plan.points)
    assert finished_per_config(runs) == {p.config_hash: 1 for p in plan.points}
