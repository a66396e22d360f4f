"""Malformed inputs give a clear result or error, never a crash; the CLI end to end on a tmp store."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from analysis.__main__ import main
from analysis.importers import import_long_table, write_to_mlflow
from analysis.optimum import fit_optimum_1d, optimum_table
from analysis.report import analyze, format_report, report_dict
from analysis.transfer import axis_transfer, fit_power_law
from tests.analysis.conftest import MUP_CSV, MUP_MAPPING
from tests.analysis.helpers import sweep_runs
from trainer import schema as S


def test_empty_table():
    a = analyze(pl.DataFrame(schema={"run_id": pl.Utf8}))
    assert a.problems == ["no runs"] and a.verdicts.is_empty()
    assert "problem: no runs" in format_report(a)


def test_missing_metric_everywhere():
    runs = sweep_runs().drop(S.S_FINAL_VAL_LOSS)
    a = analyze(runs, objective=S.S_FINAL_VAL_LOSS)
    assert any("not logged" in p for p in a.problems) and any("no run is ok" in p for p in a.problems)
    json.dumps(report_dict(a), allow_nan=False)


def test_string_in_a_numeric_column():
    runs = sweep_runs().with_columns(pl.col(S.P_LR).cast(pl.Utf8))
    runs = runs.with_columns(pl.when(pl.int_range(pl.len()) == 5).then(pl.lit("n/a")).otherwise(pl.col(S.P_LR))
                             .alias(S.P_LR))
    a = analyze(runs, n_boot=50)
    assert a.status_counts()["invalid"] == 1
    assert not a.verdicts.is_empty()  # the rest is still analysed


def test_one_scale_only():
    a = analyze(sweep_runs(widths=(128,)), n_boot=50)
    assert a.verdicts.is_empty() and any("no scale axis varies" in p for p in a.problems)
    opt = optimum_table(a.prepared, n_boot=0)
    assert axis_transfer(opt, "width") == []
    with pytest.raises(ValueError, match="at least 2 distinct scales"):
        fit_power_law([128, 128], [0.1, 0.2])


def test_one_scale_in_a_group_is_reported_not_fitted():
    runs = pl.concat([sweep_runs(widths=(64, 128, 256)), sweep_runs(widths=(128,), param="sp")])
    a = analyze(runs, n_boot=50)
    sp = a.verdicts.filter(pl.col("param") == "sp").row(0, named=True)
    assert sp["verdict"] == "inconclusive" and "one scale only" in sp["reasons"] and sp["slope"] is None


def test_degenerate_curves():
    assert fit_optimum_1d([], []).flags == ["no_data"]
    two = fit_optimum_1d([1e-3, 2e-3], [3.0, 2.9])
    assert "too_few_points" in two.flags and two.method == "argmin"
    flat = fit_optimum_1d(np.exp(np.arange(7.0)), [3.0] * 7)
    assert "ill_conditioned" in flat.flags and flat.method == "argmin"
    all_div = fit_optimum_1d([1e-3, 2e-3], [np.nan, np.nan], [True, True])
    assert all_div.flags == ["no_data"] and all_div.n_diverged == 2


def test_transfer_holds_for_a_flat_optimum_and_fails_for_a_drift():
    rng = np.random.default_rng(9)
    flat = analyze(sweep_runs(widths=(64, 128, 256, 512, 1024), slope=0.0, seeds=3, noise=0.0005, rng=rng), tau=0.01,
                   n_boot=100)
    drift = analyze(sweep_runs(widths=(64, 128, 256, 512, 1024), slope=-0.6, seeds=3, noise=0.0005, rng=rng),
                    tau=0.01, n_boot=100)
    assert flat.verdicts["verdict"].to_list() == ["holds"], flat.verdicts["reasons"].to_list()
    assert drift.verdicts["verdict"].to_list() == ["fails"]


@pytest.fixture(scope="module")
def cli_store(tmp_path_factory):
    uri = f"sqlite:///{tmp_path_factory.mktemp('cli') / 'mlflow.db'}"
    data = pl.read_csv(MUP_CSV).filter(pl.col("width").is_in([256, 1024, 4096]) & (pl.col("param") == "muP"))
    write_to_mlflow(import_long_table(data, MUP_MAPPING), uri, "mup")
    return uri


def test_cli_report_and_json(cli_store, tmp_path, capsys):
    out = tmp_path / "report.json"
    assert main(["report", "--experiment", "mup", "--tracking-uri", cli_store, "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "width" in text and "hp.lr" in text and "mup" in text
    doc = json.loads(out.read_text())
    assert doc["verdicts"][0]["axis"] == "width" and doc["verdicts"][0]["n_scales"] == 3


def test_cli_recommend_writes_valid_json(cli_store, tmp_path):
    out = tmp_path / "rec.json"
    assert main(["recommend", "--experiment", "mup", "--tracking-uri", cli_store, "--target", "width=8192",
                 "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["config_overrides"]["model.width"] == 8192 and doc["param_scheme"] == "mup"


def test_cli_errors_are_one_line(cli_store, capsys):
    assert main(["report", "--experiment", "nope", "--tracking-uri", cli_store]) == 2
    assert "unknown experiment" in capsys.readouterr().err
    assert main(["recommend", "--experiment", "mup", "--tracking-uri", cli_store, "--target", "width"]) == 2
    assert main(["report", "--experiment", "Default", "--tracking-uri", cli_store]) == 0
    assert "problem: no runs" in capsys.readouterr().out
