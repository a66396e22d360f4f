"""Fixture stores for the dashboard tests, built once per session in a temporary directory (~30 s on 2 cores).

* ``main`` store: the μP demo sweep imported from tests/data (SP and μP, 6 widths × 20 LRs: external data that
  must look like our own runs), a coordinate check made by our trainer, and small edge-case experiments: one run
  (whose name is an HTML/Markdown injection attempt), every run diverged, runs without any loss metric, and an
  experiment with no runs.
* ``trainer`` store: a tiny sweep trained by our trainer (SP and μP, 2 widths × 3 LRs, 10 steps), so runs carry
  the full config, val loss and effective per-group settings.

The ``seeded`` fixture is a third, synthetic store (benchmarks/bench_app.build_store at 2,000 runs: SP and μP ×
5 widths × 4 depths × 25 LRs × 2 seeds, the high-LR side diverged): several seeds per grid point, which the
dashboard draws as one dot per point or every run.

The trainer sweep and the coordinate check run as subprocesses while the import happens in-process, so the two
stores are built concurrently; each store has exactly one writer at a time.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[2]
MUP_CSV = ROOT / "tests" / "data" / "mup_demo_mlp" / "mup_demo_mlp_cifar10_lr_sweep.csv"
MUP_MAPPING = ROOT / "tests" / "data" / "mup_demo_mlp" / "mapping.yaml"
EVIL_NAME = "<img src=x onerror=alert(1)>[click](javascript:alert(2))"

SWEEP_SPEC = """\
name: mini
experiment: mini
base: {base}
parameterizations: [sp, mup]
axes:
  model.width: [32, 64]
hparams:
  hp.lr: {{log2_min: -10, log2_max: -2, num: 3}}
  train.steps: [10]
  model.seq_len: [32]
  train.eval_every: [10]
  train.log_every: [5]
seeds: [0]
"""


@dataclass(frozen=True)
class Stores:
    main: str
    trainer: str
    workdir: Path


def _small_mapping(name: str) -> dict:
    return {"name": name, "run": "run", "step": "step", "params": {"param.name": "param", "model.width": "width",
                                                                  "hp.lr": "lr"},
            "metrics": {"train.loss": "loss"}, "constants": {"train.batch_size": 64, "train.seed": 0},
            "planned_steps": "max"}


def _long(rows: list[tuple[str, str, int, float, list[float]]]) -> pl.DataFrame:
    """(run, param, width, lr, losses per step) -> the long table the importer reads."""
    out = {"run": [], "param": [], "width": [], "lr": [], "step": [], "loss": []}
    for run, param, width, lr, losses in rows:
        for step, loss in enumerate(losses, start=1):
            for key, value in zip(out, (run, param, width, lr, step, loss), strict=True):
                out[key].append(value)
    return pl.DataFrame(out)


def _edge_cases(uri: str) -> None:
    from mlflow.tracking import MlflowClient

    from analysis.importers import import_long_table, write_to_mlflow

    write_to_mlflow(import_long_table(_long([(EVIL_NAME, "mup", 64, 0.01, [2.0, 1.5, 1.2])]),
                                      _small_mapping("one-run")), uri, "one-run")
    nan = math.nan
    diverged = [(f"d{i}", "sp", w, lr, [2.0, nan]) for i, (w, lr) in
                enumerate((w, lr) for w in (64, 128) for lr in (0.01, 0.1, 1.0))]
    write_to_mlflow(import_long_table(_long(diverged), _small_mapping("all-diverged")), uri, "all-diverged")
    client = MlflowClient(uri)
    exp = client.create_experiment("no-metric")
    for width in (64, 128):
        run = client.create_run(exp, run_name=f"w{width}", tags={"run.kind": "train", "source": "trainer"})
        client.log_param(run.info.run_id, "model.width", width)
        client.log_param(run.info.run_id, "hp.lr", 0.01)
        client.set_terminated(run.info.run_id)
    client.create_experiment("empty")


@pytest.fixture(scope="session")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Stores:
    """Both fixture stores (module docstring), as sqlite URIs."""
    from analysis.importers import import_long_table, write_to_mlflow

    work = tmp_path_factory.mktemp("app_store")
    main, trainer = f"sqlite:///{work / 'main.db'}", f"sqlite:///{work / 'trainer.db'}"
    spec = work / "mini_sweep.yaml"
    spec.write_text(SWEEP_SPEC.format(base=ROOT / "examples" / "tiny_run.yaml"))
    # One thread per trainer process: the tiny models gain nothing from more, and the import runs beside them.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    py = sys.executable
    sweep = subprocess.Popen([py, "-m", "trainer", "sweep", str(spec), "--tracking-uri", trainer], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        write_to_mlflow(import_long_table(MUP_CSV, MUP_MAPPING), main, "mup-demo")
        _edge_cases(main)
        coord = subprocess.run([py, "-m", "trainer", "coord-check", "--values", "32,64", "--param", "sp,mup",
                                "--steps", "3", "--experiment", "coord", "--tracking-uri", main], cwd=ROOT, env=env,
                               capture_output=True, text=True, timeout=300)
        assert coord.returncode == 0, coord.stdout + coord.stderr
        out, _ = sweep.communicate(timeout=300)
        assert sweep.returncode == 0, out
    finally:
        if sweep.poll() is None:
            sweep.kill()
    return Stores(main, trainer, work)


SEEDED_EXPERIMENT = "bench-transfer"


@pytest.fixture(scope="session")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The synthetic multi-seed store (module docstring), as a sqlite URI (~3 s to build)."""
    from benchmarks.bench_app import EXPERIMENT, build_store

    assert EXPERIMENT == SEEDED_EXPERIMENT
    return build_store(tmp_path_factory.mktemp("seeded") / "seeded.db", 2000)
