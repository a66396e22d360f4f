"""What the shipped store (mlruns/, made by scripts/make_shipped_store.sh with our trainer) shows, computed by the
analysis layer: SP's LR optimum drifts with width, μP's and CompleteP's hold; μP/CompleteP coordinate checks are flat
in width and SP's are not. Read-only: these tests never write to mlruns/."""

from __future__ import annotations

import polars as pl
import pytest

from analysis.load import default_tracking_uri, list_experiments, load_runs
from analysis.report import analyze
from trainer import schema
from trainer.coord_stats import growth_exponent

URI = default_tracking_uri()
# The tolerable relative loss penalty of the equivalence test. At this CPU scale (150 steps) μP's optimum moves
# -0.06 octave per doubling; at τ = 0.5 % its 90 % interval overlaps the margin (inconclusive), at τ = 2 % it holds.
# docs/results.md reports both.
TAU = 0.02


@pytest.fixture(scope="module")
def width_runs() -> pl.DataFrame:
    assert "width" in list_experiments(URI), "the shipped store has no width sweep"
    return load_runs(URI, "width")


@pytest.fixture(scope="module")
def width_verdicts(width_runs: pl.DataFrame) -> pl.DataFrame:
    result = analyze(width_runs, tau=TAU)
    return result.verdicts.filter((pl.col("axis") == "width") & (pl.col("hp") == schema.P_LR))


def _row(verdicts: pl.DataFrame, param: str) -> dict:
    rows = verdicts.filter(pl.col("param") == param).to_dicts()
    assert len(rows) == 1, (param, verdicts)
    return rows[0]


def test_sp_optimum_drifts_with_width(width_verdicts: pl.DataFrame) -> None:
    sp = _row(width_verdicts, "sp")
    assert sp["n_used"] >= 3
    assert sp["slope_ci95_hi"] < 0, sp  # the interval excludes zero, on the negative side
    assert sp["verdict"] == "fails"


@pytest.mark.parametrize("param", ["mup", "completep"])
def test_mup_family_optimum_holds_in_width(width_verdicts: pl.DataFrame, param: str) -> None:
    row = _row(width_verdicts, param)
    assert row["n_used"] >= 4
    assert -row["tost_eps"] < row["slope_ci90_lo"] and row["slope_ci90_hi"] < row["tost_eps"], row
    assert row["verdict"] == "holds"
    sp = _row(width_verdicts, "sp")
    assert row["max_penalty"] < sp["max_penalty"] / 3  # transferring the proxy's optimum costs far less than in SP


def test_at_a_strict_tolerance_sp_still_fails_and_mup_is_not_refuted(width_runs: pl.DataFrame) -> None:
    strict = analyze(width_runs, tau=0.005).verdicts.filter(pl.col("axis") == "width")
    assert _row(strict, "sp")["verdict"] == "fails"
    assert _row(strict, "mup")["verdict"] != "fails"


def test_coord_checks_flat_for_mup_family_growing_for_sp() -> None:
    runs = load_runs(URI, "coord-check")
    width_runs = runs.filter(pl.col("coord.axis") == "width")
    # The loaded table holds each metric's latest value: |Δactivation| at the last coordinate-check step.
    rows = [{"param": r[schema.P_PARAMETERIZATION], "value": r["model.width"], "module": m, "step": -1,
             "delta": r[f"{schema.COORD_PREFIX}{m}.delta"]}
            for r in width_runs.to_dicts() for m in ("attn_o", "mlp_down", "resid")]
    assert {r["value"] for r in rows} >= {32, 64, 128, 256}
    for module in ("attn_o", "mlp_down", "resid"):
        assert growth_exponent(rows, "sp", module, -1) > 0.5, module
        for param in ("mup", "completep"):
            assert abs(growth_exponent(rows, param, module, -1)) < 0.25, (param, module)


def test_depth_completep_transfers_with_a_fraction_of_mups_penalty() -> None:
    """Depth 2 → 16 at width 32: the depth-2 optimum costs CompleteP (α = 1) a small fraction of what it costs μP,
    which has no depth rule. (The slope intervals are too wide at one seed for an equivalence verdict.)"""
    verdicts = analyze(load_runs(URI, "depth")).verdicts.filter(pl.col("axis") == "depth")
    mup = _row(verdicts, "mup")
    completep = verdicts.filter((pl.col("param") == "completep") & pl.col("group").str.contains("alpha=1"))
    assert completep.height == 1, verdicts
    assert mup["max_penalty"] > 0.03
    assert completep["max_penalty"][0] < mup["max_penalty"] / 3
