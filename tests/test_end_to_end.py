"""The whole loop on real runs: sweep with our trainer -> MLflow -> analysis -> recommendation JSON -> trainer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from analysis.classify import prepare_runs
from analysis.load import load_runs
from analysis.recommend import read_recommendation, recommend, write_recommendation
from analysis.report import analyze
from tests.conftest import TINY
from trainer import schema
from trainer.cli import main
from trainer.config import RunConfig
from trainer.executors import SequentialExecutor
from trainer.runlog import read_jsonl_run
from trainer.sweep import load_sweep, run_sweep


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    base = dict(TINY, train=dict(TINY["train"], steps=30))
    (root / "base.yaml").write_text(yaml.safe_dump(base))
    spec = {"name": "e2e", "experiment": "e2e", "base": "base.yaml", "parameterizations": ["mup"],
            "axes": {"model.width": [32, 64]}, "hparams": {"hp.lr": {"log2_min": -10, "log2_max": 0, "num": 6}}}
    (root / "sweep.yaml").write_text(yaml.safe_dump(spec))
    uri = f"sqlite:///{root / 'mlflow.db'}"
    outcome = run_sweep(load_sweep(root / "sweep.yaml"), uri, SequentialExecutor(), say=lambda _: None)
    return root, uri, outcome


def test_sweep_resumes_without_training_again(swept) -> None:
    root, uri, _ = swept
    lines: list[str] = []
    again = run_sweep(load_sweep(root / "sweep.yaml"), uri, SequentialExecutor(), say=lines.append)
    assert again.skipped == 12 and sum(again.counts.values()) == 0
    runs = load_runs(uri, "e2e", use_cache=False)
    children = runs.filter(runs[schema.T_RUN_KIND] == "train")
    assert children.height == 12  # 2 widths x 6 LRs, each trained exactly once


def test_analysis_reads_the_sweep_and_the_recommendation_trains_exactly(swept, tmp_path) -> None:
    root, uri, _ = swept
    prepared = prepare_runs(load_runs(uri, "e2e"))
    assert set(prepared.filter(prepared["status"] == "ok")[schema.AXES["width"]].to_list()) == {32.0, 64.0}
    result = analyze(load_runs(uri, "e2e"))
    assert "width" in result.verdicts["axis"].to_list(), result.problems
    rec = recommend(prepared, {"width": 128}, "mup")
    path = write_recommendation(rec, tmp_path / "rec.json")
    overrides = read_recommendation(path)["config_overrides"]
    assert overrides[schema.AXES["width"]] == 128 and overrides[schema.P_LR] > 0
    logs = tmp_path / "logs"
    assert main(["train", str(root / "base.yaml"), "--hparams", str(path), "--jsonl", str(logs),
                 "--set", "train.steps=5"]) == 0
    run = read_jsonl_run(next(logs.glob("*.jsonl")))
    trained = RunConfig.from_flat(run.params).to_flat()
    for key, value in overrides.items():
        assert trained[key] == pytest.approx(value) if isinstance(value, float) else trained[key] == value, key
    assert json.loads(path.read_text())["schema_version"]


def test_experts_axis_is_swept_logged_analysed_and_shown(tmp_path, monkeypatch) -> None:
    """Issue 5: a small CPU sweep over E in {2, 4, 8} is logged, the analysis treats experts as an axis, and the
    dashboard's Transfer page offers and plots it."""
    base = dict(TINY, train=dict(TINY["train"], steps=12),
                model=dict(TINY["model"], n_experts=2, top_k=1), param=dict(TINY["param"], base_experts=2))
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    spec = {"name": "moe", "experiment": "moe", "base": "base.yaml", "axes": {"model.n_experts": [2, 4, 8]},
            "hparams": {"hp.lr": {"log2_min": -9, "log2_max": -1, "num": 5}}}
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(spec))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    outcome = run_sweep(load_sweep(tmp_path / "sweep.yaml"), uri, SequentialExecutor(), say=lambda _: None)
    assert outcome.counts[schema.STATUS_OK] + outcome.counts[schema.STATUS_DIVERGED] == 15
    runs = load_runs(uri, "moe")
    train_runs = runs.filter(runs[schema.T_RUN_KIND] == schema.RUN_KIND_TRAIN)
    assert sorted(set(train_runs[schema.AXES["experts"]].to_list())) == [2.0, 4.0, 8.0]
    assert train_runs[schema.S_MOE_LOAD_CV].is_not_null().all()
    result = analyze(runs)
    assert "experts" in result.verdicts["axis"].to_list(), result.problems
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app" / "Home.py"), default_timeout=120)
    at.run()
    at.query_params["exp"] = "moe"
    at.query_params["axis"] = "experts"
    at.switch_page("views/transfer.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="axis").value == "experts" and "experts" in at.selectbox(key="axis").options
    assert len(at.get("vega_lite_chart")) == 2  # loss against LR per E, and the optimum against E
