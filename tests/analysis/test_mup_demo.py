"""The μP demo (microsoft/mup MLP, SP vs μP LR sweep): the numbers its README says a correct analysis finds."""

from __future__ import annotations

import math

import polars as pl
import pytest

from analysis.classify import prepare_runs
from analysis.optimum import optimum_table
from analysis.report import analyze, format_report
from analysis.transfer import axis_transfer, verdict_frame
from trainer import schema as S


@pytest.fixture(scope="module")
def prepared(mup_sweep):
    return prepare_runs(mup_sweep.runs, history=mup_sweep.history)


@pytest.fixture(scope="module")
def optima(prepared):
    return optimum_table(prepared, S.P_LR, n_boot=300)


@pytest.fixture(scope="module")
def width_fits(optima):
    return {r.group[S.P_PARAMETERIZATION]: r for r in axis_transfer(optima, "width")}


def test_import_shape(mup_sweep):
    runs = mup_sweep.runs
    assert runs.height == 240
    assert runs[S.P_PARAMETERIZATION].value_counts().sort(S.P_PARAMETERIZATION).rows() == [("mup", 120), ("sp", 120)]
    assert sorted(runs["model.width"].unique().to_list()) == [256, 512, 1024, 2048, 4096, 8192]
    # 54 NaN-terminated runs (31 SP, 23 μP) per the data README
    nan_runs = runs.filter(pl.col(S.S_DIVERGED_STEP).is_not_null())
    assert nan_runs.height == 54
    assert nan_runs.group_by(S.P_PARAMETERIZATION).len().sort(S.P_PARAMETERIZATION).rows() == [("mup", 23),
                                                                                               ("sp", 31)]


def test_nan_runs_are_censored(mup_sweep, prepared, optima):
    nan_ids = set(mup_sweep.runs.filter(pl.col(S.S_DIVERGED_STEP).is_not_null())["run_id"])
    nan_rows = prepared.filter(pl.col("run_id").is_in(list(nan_ids)))
    assert (nan_rows["status"] == "diverged").all()
    assert nan_rows["loss"].is_null().all()  # never a number in any fit
    fitted = {rid for ids in optima["run_ids"].to_list() for rid in ids}
    assert not fitted & nan_ids
    assert optima["n_diverged"].sum() >= 54


def test_sp_width_8192_is_edge_low(optima):
    sp = optima.filter(pl.col(S.P_PARAMETERIZATION) == "sp").sort("scale.width")
    flags = dict(zip(sp["scale.width"].to_list(), sp["flags"].to_list(), strict=True))
    assert "edge_low" in flags[8192]
    assert all("edge_low" not in f and "edge_high" not in f for w, f in flags.items() if w < 8192)
    row = sp.filter(pl.col("scale.width") == 8192).row(0, named=True)
    assert row["suggested"] and max(row["suggested"]) < row["argmin"]  # extend the grid downwards
    assert not row["usable"]


def test_slopes_match_the_reference(width_fits):
    sp, mup = width_fits["sp"].fit, width_fits["mup"].fit
    # README: SP -0.70 ± 0.07, μP +0.18 ± 0.15 (log2 lr* vs log2 width; log-log slopes are base-free)
    assert sp.slope_ci95[0] <= -0.70 <= sp.slope_ci95[1]
    assert mup.slope_ci95[0] <= 0.18 <= mup.slope_ci95[1]
    assert sp.slope == pytest.approx(-0.70, abs=0.05)
    assert mup.slope == pytest.approx(0.18, abs=0.1)
    assert width_fits["sp"].excluded == {8192.0: "edge_low"}
    assert sp.slope_ci95[1] < 0 < mup.slope_ci95[1]


def test_sp_transfer_fails_and_mup_settles(width_fits, optima):
    assert width_fits["sp"].verdict == "fails"
    assert width_fits["mup"].verdict != "fails" or math.isinf(width_fits["mup"].max_penalty)
    mup = optima.filter((pl.col(S.P_PARAMETERIZATION) == "mup") & (pl.col("scale.width") >= 2048))
    log2 = [v / math.log(2) for v in mup["log_opt"].to_list()]
    assert all(abs(v - (-4.0)) < 0.5 for v in log2)  # README: settles near log2 lr ≈ -4 for width ≥ 2048
    # The SP optimum of width 256 diverges at the widest SP models: the realised penalty is infinite there.
    assert math.isinf(width_fits["sp"].penalties[8192.0])


def test_lr_sensitivity_grows_under_sp_only(width_fits):
    sp, mup = width_fits["sp"].sensitivity, width_fits["mup"].sensitivity
    assert sp[8192.0] > 2 * sp[256.0]
    assert mup[8192.0] < 1.5 * mup[256.0]


def test_full_pipeline_report(mup_sweep):
    a = analyze(mup_sweep.runs, history=mup_sweep.history, n_boot=200)
    text = format_report(a)
    assert "width" in text and "fails" in text and "edge_low" in text
    assert "not varied (no verdict): batch=64" in text
    v = verdict_frame(a.transfers)
    assert set(v["param"]) == {"sp", "mup"} and set(v["axis"]) == {"width"}
    assert (S.P_LR, "sp") in a.laws and a.laws[(S.P_LR, "sp")].coef["b_N"] == pytest.approx(-0.70, abs=0.05)
