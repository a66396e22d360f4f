"""Recommendation JSON (schema, round trip, effective groups) and the fitting-paradigm laws."""

from __future__ import annotations

import json
import math

import jsonschema
import numpy as np
import polars as pl
import pytest

from analysis.classify import prepare_runs
from analysis.optimum import fit_optimum_2d, optimum_table
from analysis.recommend import RecommendationError, read_recommendation, recommend, write_recommendation
from analysis.scaling_law import fit_law
from analysis.transfer import asymptotic_penalty, axis_transfer
from tests.analysis.helpers import sweep_runs, true_log_opt
from trainer import schema as S


@pytest.fixture(scope="module")
def drifting():
    """SP-like: ln η* falls with slope -0.5 in width; 2 seeds."""
    return prepare_runs(sweep_runs(slope=-0.5, param="sp", seeds=2, rng=np.random.default_rng(5)))


def test_recommendation_extrapolates_the_slope(drifting, tmp_path):
    doc = recommend(drifting, {"width": 2048}, "sp", objective=S.S_FINAL_VAL_LOSS, n_boot=100)
    lr = doc["hyperparameters"][0]
    assert lr["name"] == S.P_LR and lr["route"] == "axis_law"
    truth = math.exp(true_log_opt(2048, -0.5))
    assert lr["interval95"][0] <= truth <= lr["interval95"][1]
    assert abs(math.log(lr["value"] / truth)) < 0.3
    assert doc["reference"]["scale"]["width"] == 512
    assert doc["config_overrides"]["model.width"] == 2048 and doc["config_overrides"][S.P_LR] == lr["value"]
    assert doc["config_overrides"][S.P_PARAMETERIZATION] == "sp"
    assert set(lr["sources"]["run_ids"]) <= set(drifting["run_id"])
    groups = doc["effective_groups"]
    assert groups and {"module", "lr", "eps", "init_std"} <= set(groups[0])
    path = write_recommendation(doc, tmp_path / "rec.json")
    assert read_recommendation(path) == json.loads(path.read_text())


def test_schema_rejects_broken_documents(drifting, tmp_path):
    doc = recommend(drifting, {"width": 1024}, "sp", n_boot=50)
    bad = {**doc, "schema_version": 2}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(jsonschema.ValidationError):
        read_recommendation(tmp_path / "bad.json")
    with pytest.raises(jsonschema.ValidationError):
        write_recommendation({**doc, "config_overrides": {"derived.steps": 3}}, tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists()


def test_recommendation_refuses_clearly(drifting):
    with pytest.raises(RecommendationError, match="unknown axis"):
        recommend(drifting, {"heads": 4}, "sp")
    with pytest.raises(RecommendationError, match="no runs with"):
        recommend(drifting, {"width": 1024}, "mup")
    narrow = prepare_runs(sweep_runs(slope=0.0, lrs=2.0 ** np.arange(-6, -3.5, 0.5)))  # optimum below the grid
    with pytest.raises(RecommendationError, match="no usable optimum"):
        recommend(narrow, {"width": 1024})


def test_per_module_multiplier_gets_the_same_treatment():
    rng = np.random.default_rng(6)
    parts = []
    for m in 2.0 ** np.arange(-3, 3.5, 0.5):
        df = sweep_runs(slope=0.0, lrs=[3e-3], rng=rng, extra={"mult.lr.token_emb": float(m)})
        # loss also depends on the multiplier, optimum at m* = 2 at every width
        parts.append(df.with_columns(pl.col(S.S_FINAL_VAL_LOSS) * (1 + 0.03 * math.log(m / 2) ** 2)))
    prepared = prepare_runs(pl.concat(parts))
    opt = optimum_table(prepared, "mult.lr.token_emb", n_boot=100)
    assert opt.height == 4 and opt["usable"].all()
    assert np.allclose(np.exp(opt["log_opt"].to_numpy()), 2.0, rtol=0.1)
    (res,) = axis_transfer(opt, "width")
    assert res.fit.slope_ci95[0] < 0 < res.fit.slope_ci95[1]
    doc = recommend(prepared, {"width": 1024}, hps=["mult.lr.token_emb"], n_boot=100)
    assert doc["hyperparameters"][0]["value"] == pytest.approx(2.0, rel=0.15)
    assert doc["config_overrides"]["mult.lr.token_emb"] == doc["hyperparameters"][0]["value"]


def test_lr_law_in_n_and_d_and_collinear_refusal():
    rng = np.random.default_rng(7)
    N = np.repeat([1e6, 4e6, 1.6e7, 6.4e7], 3)
    D = np.tile([1e8, 4e8, 1.6e9], 4) * (N / 1e6) ** 0.3
    y = 0.5 - 0.7 * np.log(N) + 0.3 * np.log(D) + 0.02 * rng.standard_normal(N.size)
    law = fit_law(y, np.full(N.size, 0.02), N, D, target="hp.lr")
    assert law.refused is None
    assert law.ci95["b_N"][0] < -0.7 < law.ci95["b_N"][1] and law.ci95["c_D"][0] < 0.3 < law.ci95["c_D"][1]
    p = law.predict(N=1e9, D=2e10)
    truth = math.exp(0.5 - 0.7 * math.log(1e9) + 0.3 * math.log(2e10))
    assert p["pi_lo"] < truth < p["pi_hi"]
    collinear = fit_law(y, None, N, 20 * N, target="hp.lr")
    assert collinear.refused and "collinear" in collinear.refused and "tokens per parameter" in collinear.refused
    with pytest.raises(ValueError, match="no fitted law"):
        collinear.predict(N=1e9, D=2e10)
    few = fit_law(y[:2], None, N[:2], D[:2], target="hp.lr")
    assert few.refused and "needs" in few.refused


def test_two_d_optimum_and_positive_definite_check():
    rng = np.random.default_rng(8)
    lx, lb = np.meshgrid(np.log(3e-3) + np.log(2) * np.arange(-3, 4), np.log(64) + np.log(2) * np.arange(-3, 4))
    lx, lb = lx.ravel(), lb.ravel()
    u, v = lx - np.log(4e-3), lb - np.log(80)
    bowl = 3 * (1 + 0.05 * u * u + 0.03 * v * v + 0.02 * u * v) + 0.001 * rng.standard_normal(u.size)
    res = fit_optimum_2d(np.exp(lx), np.exp(lb), bowl, near=0.05)
    assert res.positive_definite and res.method == "quadratic"
    assert res.lr == pytest.approx(4e-3, rel=0.1) and res.batch == pytest.approx(80, rel=0.1)
    saddle = 3 * (1 + 0.05 * u * u - 0.03 * v * v)
    bad = fit_optimum_2d(np.exp(lx), np.exp(lb), saddle, near=0.05)
    assert not bad.positive_definite and bad.method == "argmin" and "ill_conditioned" in bad.flags


def test_asymptotic_penalty_needs_four_shared_scales():
    widths = (64, 128, 256, 512, 1024)
    sp = sweep_runs(widths, slope=0.0, param="sp").with_columns(pl.col(S.S_FINAL_VAL_LOSS) * 1.02)
    mup = sweep_runs(widths, slope=0.0, param="mup")
    opt = optimum_table(prepare_runs(pl.concat([sp, mup])), n_boot=0)
    out = asymptotic_penalty(opt, "width", "sp", "mup")
    assert len(out["R"]) == 5 and out["R_inf"] == pytest.approx(0.02, abs=0.01)
    short = asymptotic_penalty(opt.filter(pl.col("scale.width") <= 128), "width", "sp", "mup")
    assert short["R_inf"] is None and "needs ≥ 4" in short["reason"]
