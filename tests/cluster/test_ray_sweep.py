"""Sweeps through Ray against the real parts (conftest.py): a Ray head with two worker slots, and a shared MLflow
tracking server on PostgreSQL. A worker is killed mid-run; every config still ends exactly once in the store, the
dead attempt is marked, a rerun trains nothing, and analysis and dashboard read the server's URI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from tests.cluster.conftest import RayHead
from tests.cluster.helpers import ROOT, children, finished_per_config, write_spec
from trainer import schema, sweep, tracking
from trainer.provenance import provenance_tags

pytestmark = [pytest.mark.slow, pytest.mark.cluster]
# Importing Ray is harmless here; connecting is left to the driver subprocesses (see driver.py).
ray_executor = pytest.importorskip("trainer.ray_executor", reason="Ray is not installed (requirements.txt)")


def run_command(args: list[str], head: RayHead) -> str:
    """Run a Python module as a sweep driver on the cluster; its stdout (the test fails on a non-zero exit)."""
    out = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=head.env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


def drive(head: RayHead, spec: Path, uri: str, *options: str) -> dict[str, Any]:
    """tests/cluster/driver.py: a sweep through RayExecutor with test hooks; its outcome."""
    stdout = run_command(["tests.cluster.driver", str(spec), uri, head.address, *options], head)
    return json.loads(stdout.strip().splitlines()[-1])


def shown_text(at: Any) -> str:
    """Everything a page shows as text, tables included (the dashboard is free to pick its widgets)."""
    parts = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "text", "info", "warning", "code"):
        parts += [str(e.value) for e in getattr(at, kind)]
    for kind in ("selectbox", "multiselect", "radio"):
        parts += [str(o) for e in getattr(at, kind) for o in e.options]
    parts += [e.value.to_string() for e in at.dataframe]
    return "\n".join(parts)


def test_ray_sweep_on_the_tracking_server_survives_a_killed_worker(
        tmp_path: Path, mlflow_server: str, ray_head: RayHead, monkeypatch: pytest.MonkeyPatch) -> None:
    experiment = "cluster-ray"
    spec = write_spec(tmp_path, experiment)
    plan = sweep.load_sweep(spec)

    # 1. the documented command on the cluster (RAY_ADDRESS is set): two runs, then stop
    sweep_command = ["trainer", "sweep", str(spec), "--executor", "ray", "--tracking-uri", mlflow_server]
    out = run_command([*sweep_command, "--max-runs", "2"], ray_head)
    assert "4 configs, 0 already finished (skipped), 4 to run, running 2 now (--max-runs)" in out

    # 2. resume: both remaining configs train at once on the two workers, and the first attempt at the last one
    #    kills its worker mid-run; Ray retries it in a new worker
    marker = tmp_path / "worker-killed"
    victim = plan.points[-1]
    outcome = drive(ray_head, spec, mlflow_server, "--kill-index", str(victim.index), "--marker", str(marker))
    assert marker.exists(), "the worker was not killed"
    assert outcome == {"counts": {schema.STATUS_OK: 2}, "skipped": 2, "left": 0}

    # 3. rerunning the same command trains nothing
    assert "4 already finished (skipped), 0 to run" in run_command(sweep_command, ray_head)

    # every config exactly once; the dead attempt marked, pointing to its retry, its logged data kept
    runs = children(mlflow_server, experiment)
    assert finished_per_config(runs) == {p.config_hash: 1 for p in plan.points}
    assert len(runs) == len(plan.points) + 1
    (dead,) = [r for r in runs if r.data.tags[schema.T_STATUS] not in schema.FINISHED_STATUSES]
    (retry,) = [r for r in runs if r.data.tags[schema.T_CONFIG_HASH] == victim.config_hash and r is not dead]
    assert dead.data.tags[schema.T_CONFIG_HASH] == victim.config_hash
    assert dead.data.tags[schema.T_STATUS] == schema.STATUS_INTERRUPTED and dead.info.status == "KILLED"
    assert dead.data.tags[schema.T_STATUS_REASON] == ray_executor.DEAD_WORKER_REASON
    assert dead.data.tags[schema.T_SUPERSEDED_BY] == retry.info.run_id
    assert schema.M_TRAIN_LOSS in dead.data.metrics
    assert retry.data.tags[schema.T_STATUS] == schema.STATUS_OK and retry.info.status == "FINISHED"
    # the code shipped to the workers has no .git: runs carry the driver's commit
    assert retry.data.tags[schema.T_GIT_COMMIT] == provenance_tags()[schema.T_GIT_COMMIT]
    # artifacts went through the server into its artifact root
    client = tracking.client_for(mlflow_server)
    assert schema.A_CONFIG in {a.path for a in client.list_artifacts(retry.info.run_id)}
    parent = [r for r in tracking.search_all_runs(client, dead.info.experiment_id)
              if r.data.tags.get(schema.T_RUN_KIND) == schema.RUN_KIND_SWEEP]
    assert [p.data.tags[schema.T_STATUS] for p in parent] == [schema.STATUS_OK]

    # 4. the analysis reads the server (through the MLflow API)
    from analysis.classify import prepare_runs
    from analysis.load import load_history, load_runs

    table = prepare_runs(load_runs(mlflow_server, experiment))
    assert table.height == len(plan.points) + 1
    assert table.filter(pl.col("run_id") == dead.info.run_id)["status"].to_list() == ["duplicate"]
    kept = table.filter(pl.col("status") != "duplicate")
    assert sorted(kept[schema.T_CONFIG_HASH]) == sorted(p.config_hash for p in plan.points)
    assert sorted(kept[schema.P_LR]) == sorted(p.config.hp.lr for p in plan.points)
    assert load_history([retry.info.run_id], [schema.M_TRAIN_LOSS], mlflow_server).height > 0

    # 5. so does the dashboard
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    at = AppTest.from_file(str(ROOT / "app" / "Home.py"), default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    if experiment not in shown_text(at):  # the overview may not list experiments; the sweeps page does
        at.switch_page("views/sweeps.py").run()
        assert not at.exception, [e.value for e in at.exception]
    assert experiment in shown_text(at)


def test_ray_batched_groups_on_a_brand_new_sqlite_store(tmp_path: Path, ray_head: RayHead) -> None:
    """One machine, the embedded store: Ray workers on a SQLite file the sweep creates, two configs per task
    trained as one batched model (trainer/batched.py)."""
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    spec = write_spec(tmp_path, "ray-sqlite")
    plan = sweep.load_sweep(spec)
    outcome = drive(ray_head, spec, uri, "--group-size", "2")
    assert outcome == {"counts": {schema.STATUS_OK: len(plan.points)}, "skipped": 0, "left": 0}
    runs = children(uri, "ray-sqlite")
    assert finished_per_config(runs) == {p.config_hash: 1 for p in plan.points}
    assert sorted(r.data.tags["batched.size"] for r in runs) == ["2"] * len(plan.points)
