"""compact-store: thinned histories keep each curve's first and last point and every summary, and shrink the file."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.entities import Metric

from trainer import compact, schema, tracking
from trainer.cli import main


def _store_with_history(store_uri: str) -> tuple[str, str]:
    client = tracking.client_for(store_uri)
    exp = client.create_experiment("thin")
    run = client.create_run(exp)
    rid = run.info.run_id
    metrics = [Metric(schema.M_TRAIN_LOSS, 5.0 - 0.01 * s, 1_700_000_000_000 + s, s) for s in range(100)]
    metrics += [Metric(schema.M_LR_SCALE, s / 99, 1_700_000_000_000 + s, s) for s in range(100)]
    metrics += [Metric(schema.M_VAL_LOSS, 4.0 - 0.1 * s, 1_700_000_000_000 + s, s * 10) for s in range(10)]
    metrics.append(Metric(schema.S_FINAL_VAL_LOSS, 3.1, 1_700_000_000_000, 0))
    for i in range(0, len(metrics), 1000):
        client.log_batch(rid, metrics=metrics[i:i + 1000])
    return rid, store_uri


def test_thinning_keeps_first_last_and_summaries(store_uri: str) -> None:
    rid, uri = _store_with_history(store_uri)
    path = tracking.sqlite_path(uri)
    result = compact.compact_store(path, max_points=10)
    assert result.rows_before == 211 and result.rows_after < result.rows_before
    client = tracking.client_for(uri)
    loss = client.get_metric_history(rid, schema.M_TRAIN_LOSS)
    steps = sorted(m.step for m in loss)
    assert steps[0] == 0 and steps[-1] == 99 and 2 <= len(steps) <= 11
    gaps = [b - a for a, b in zip(steps, steps[1:], strict=False)]
    assert max(gaps) <= 12  # evenly spread, not bunched at one end
    assert [m.step for m in client.get_metric_history(rid, schema.M_LR_SCALE)] == [99]  # derived: last point only
    assert len(client.get_metric_history(rid, schema.M_VAL_LOSS)) == 10  # at the cap: untouched
    run = client.get_run(rid)
    assert run.data.metrics[schema.M_TRAIN_LOSS] == pytest.approx(5.0 - 0.99)  # latest value unchanged
    assert run.data.metrics[schema.S_FINAL_VAL_LOSS] == 3.1


def test_cli_refuses_what_it_cannot_compact(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compact-store", "--tracking-uri", f"sqlite:///{tmp_path / 'none.db'}"]) == 2
    assert "no SQLite store" in capsys.readouterr().err
    with pytest.raises(ValueError, match="at least 2"):
        compact.compact_store(tmp_path, max_points=1)
