"""MLflow tracking: store location, the buffered logger, run lifecycle and the JSONL importer (no training here)."""

from __future__ import annotations

import argparse
import math
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from trainer import schema, tracking
from trainer.runlog import JsonlRunLogger


def test_tracking_uri_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.resolve_tracking_uri(None) == f"sqlite:///{tracking.REPO_ROOT / 'mlruns' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////elsewhere.db")
    assert tracking.resolve_tracking_uri(None) == "sqlite:////elsewhere.db"
    assert tracking.resolve_tracking_uri("http://server:5000") == "http://server:5000"


def test_ensure_store_is_idempotent_and_keeps_artifacts_next_to_the_db(store_uri: str, tmp_path: Path) -> None:
    experiment_id = tracking.ensure_store(store_uri, "exp")
    assert tracking.ensure_store(store_uri, "exp") == experiment_id
    experiment = tracking.client_for(store_uri).get_experiment(experiment_id)
    assert experiment.artifact_location == str(tmp_path / "store" / "artifacts" / experiment_id)


def test_artifacts_are_found_after_the_store_moved(store_uri: str, tmp_path: Path) -> None:
    with tracking.start_run(store_uri, "exp") as logger:
        logger.log_json(schema.A_CONFIG, {"model": {"width": 64}})
    shutil.move(tmp_path / "store", tmp_path / "moved")  # a clone of the repository elsewhere
    moved_uri = f"sqlite:///{tmp_path / 'moved' / 'mlflow.db'}"
    run = tracking.client_for(moved_uri).get_run(logger.run_id)
    assert not Path(run.info.artifact_uri).exists()  # MLflow recorded the old absolute path
    assert (tracking.artifact_dir(moved_uri, run) / schema.A_CONFIG).is_file()


def test_logger_batches_metrics_and_params(store_uri: str) -> None:
    client = tracking.client_for(store_uri)
    run_id = client.create_run(tracking.ensure_store(store_uri, "exp")).info.run_id
    calls: list[tuple[int, int, int]] = []
    real_log_batch = client.log_batch

    def counting_log_batch(run_id: str, metrics: Sequence[Any] = (), params: Sequence[Any] = (),
                           tags: Sequence[Any] = ()) -> None:
        calls.append((len(metrics), len(params), len(tags)))
        real_log_batch(run_id, metrics=metrics, params=params, tags=tags)

    client.log_batch = counting_log_batch  # type: ignore[method-assign]
    logger = tracking.MlflowRunLogger(client, run_id, flush_interval_s=math.inf)
    logger.log_params({f"p{i}": i for i in range(250)} | {"long": "x" * 10_000})
    assert [c[1] for c in calls] == [100, 100, 51]
    calls.clear()
    for step in range(500):
        logger.log_metrics({"a": step, "b": -step, "c": 0.5, "d": 1.0, "e": 2.0}, step)
    assert calls == []  # buffered: a log call does no I/O (its cost is measured by benchmarks/bench_logging.py)
    logger.flush()
    assert [c[0] for c in calls] == [1000, 1000, 500]  # ≤1000 metrics per log_batch call
    assert len(client.get_metric_history(run_id, "a")) == 500
    assert client.get_run(run_id).data.params["long"] == "x" * tracking.MAX_PARAM_VALUE_CHARS


def test_status_tag_flushes_buffered_metrics_first(store_uri: str) -> None:
    client = tracking.client_for(store_uri)
    run_id = client.create_run(tracking.ensure_store(store_uri, "exp")).info.run_id
    logger = tracking.MlflowRunLogger(client, run_id, flush_interval_s=math.inf)
    logger.log_metrics({schema.M_TRAIN_LOSS: 3.0}, step=1)
    logger.set_tags({schema.T_STATUS: schema.STATUS_OK})
    run = client.get_run(run_id)
    assert run.data.metrics[schema.M_TRAIN_LOSS] == 3.0
    assert run.data.tags[schema.T_STATUS] == schema.STATUS_OK


def test_run_lifecycle_maps_trainer_status_to_mlflow_status(store_uri: str) -> None:
    experiment_id = tracking.ensure_store(store_uri, "exp")
    client = tracking.client_for(store_uri)
    with tracking.run_in_experiment(store_uri, experiment_id, tags={schema.T_STATUS: schema.STATUS_RUNNING}) as ok:
        ok.set_tags({schema.T_STATUS: schema.STATUS_DIVERGED})
    assert client.get_run(ok.run_id).info.status == "FINISHED"

    with pytest.raises(RuntimeError), tracking.run_in_experiment(store_uri, experiment_id) as broken:
        broken.log_metrics({schema.M_TRAIN_LOSS: 1.0}, step=1)
        raise RuntimeError("boom")
    run = client.get_run(broken.run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags[schema.T_STATUS] == schema.STATUS_FAILED
    assert "boom" in run.data.tags[schema.T_STATUS_REASON]
    assert run.data.metrics[schema.M_TRAIN_LOSS] == 1.0  # the buffer was not lost

    with pytest.raises(KeyboardInterrupt), tracking.run_in_experiment(
            store_uri, experiment_id, parent_run_id=ok.run_id,
            tags={schema.T_STATUS: schema.STATUS_RUNNING}) as interrupted:
        raise KeyboardInterrupt
    run = client.get_run(interrupted.run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags[schema.T_STATUS] == schema.STATUS_RUNNING  # a resumed sweep marks it interrupted
    assert run.data.tags[schema.T_PARENT_RUN_ID] == ok.run_id


def _write_jsonl_run(directory: Path, name: str, config_hash: str, status: str) -> None:
    logger = JsonlRunLogger(directory, name)
    logger.set_tags({schema.T_CONFIG_HASH: config_hash, schema.T_SWEEP_ID: "gpu-box-1", schema.T_STATUS: status})
    logger.log_params({"model.width": 64, "hp.lr": 0.01})
    for step, loss in [(1, 5.5), (2, 4.0), (3, float("nan")), (4, float("inf"))]:
        logger.log_metrics({schema.M_TRAIN_LOSS: loss}, step)
    logger.log_json(schema.A_CONFIG, {"model": {"width": 64}})
    logger.flush()


def test_import_jsonl_round_trip_keeps_nonfinite_values_and_is_idempotent(store_uri: str, tmp_path: Path) -> None:
    _write_jsonl_run(tmp_path / "runs", "a", "hash-a", schema.STATUS_DIVERGED)
    _write_jsonl_run(tmp_path / "runs", "b", "hash-b", schema.STATUS_RUNNING)  # the box died mid-run
    outcomes = tracking.import_jsonl([tmp_path / "runs"], store_uri, "imported")
    assert [(o.path.name, o.skipped) for o in outcomes] == [("a.jsonl", False), ("b.jsonl", False)]

    client = tracking.client_for(store_uri)
    run = client.get_run(outcomes[0].run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags[schema.T_STATUS] == schema.STATUS_DIVERGED
    assert run.data.params == {"model.width": "64", "hp.lr": "0.01"}
    history = [m.value for m in sorted(client.get_metric_history(run.info.run_id, schema.M_TRAIN_LOSS),
                                       key=lambda m: m.step)]
    assert history[:2] == [5.5, 4.0]
    assert math.isnan(history[2])
    assert history[3] >= sys.float_info.max  # MLflow's SQL store keeps +inf as the largest float
    assert client.download_artifacts(run.info.run_id, schema.A_CONFIG)
    assert client.get_run(outcomes[1].run_id).info.status == "KILLED"
    assert client.get_run(outcomes[1].run_id).data.tags[schema.T_STATUS] == schema.STATUS_RUNNING

    again = tracking.import_jsonl([tmp_path / "runs"], store_uri, "imported")
    assert [(o.run_id, o.skipped) for o in again] == [(o.run_id, True) for o in outcomes]

    _write_jsonl_run(tmp_path / "later", "b", "hash-b", schema.STATUS_OK)  # the same run, finished on a rerun
    (later,) = tracking.import_jsonl([tmp_path / "later" / "b.jsonl"], store_uri, "imported")
    assert not later.skipped


def test_import_jsonl_refuses_a_malformed_file_before_writing(store_uri: str, tmp_path: Path) -> None:
    _write_jsonl_run(tmp_path, "good", "hash-a", schema.STATUS_OK)
    (tmp_path / "bad.jsonl").write_text('{"type": "params", "data": {}}\nnot json\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        tracking.import_jsonl([tmp_path], store_uri, "imported")
    assert tracking.client_for(store_uri).get_experiment_by_name("imported") is None


def test_cli_import_jsonl(store_uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write_jsonl_run(tmp_path, "a", "hash-a", schema.STATUS_OK)
    parser = argparse.ArgumentParser()
    tracking.add_import_arguments(parser)
    args = parser.parse_args([str(tmp_path / "a.jsonl"), "--experiment", "cli", "--tracking-uri", store_uri])
    assert tracking.cli_import_jsonl(args) == 0
    assert "1 imported, 0 already present" in capsys.readouterr().out
    assert tracking.cli_import_jsonl(args) == 0
    assert "0 imported, 1 already present" in capsys.readouterr().out
