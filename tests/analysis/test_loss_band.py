"""The seed band (optimum.loss_band) on real runs: the μP demo (one run per grid point, so the band is the mean curve),
our trainer's shipped width sweep (two seeds at some points) and a synthetic sweep with three seeds per point; the
band always lines up with optimum_table's mean curve and spans exactly the runs at each grid value."""

from __future__ import annotations

import math
from collections import defaultdict

import polars as pl

from analysis.classify import prepare_runs, slice_columns
from analysis.load import default_tracking_uri, list_experiments, load_runs
from analysis.optimum import loss_band, optimum_table
from tests.analysis.helpers import sweep_runs
from trainer import schema as S


def by_hand(prepared: pl.DataFrame, hp: str, keys: list[str]) -> dict[tuple, tuple[float, float, int]]:
    """(slice values…, ln hp to 1e-6) -> (lowest, highest, count) of the ok runs' losses, in plain Python."""
    cells: dict[tuple, list[float]] = defaultdict(list)
    for r in prepared.filter(pl.col("status") == "ok").iter_rows(named=True):
        cells[(*(r[k] for k in keys), round(math.log(r[hp]), 6))].append(r["loss"])
    return {k: (min(v), max(v), len(v)) for k, v in cells.items()}


def check_against_table(prepared: pl.DataFrame, hp: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """loss_band per slice equals the runs by hand, and every row lines up with optimum_table's mean curve."""
    table = optimum_table(prepared, hp, n_boot=0)
    keys = [k for k in slice_columns(prepared, hp) if k in table.columns]  # the table drops all-null columns
    band = loss_band(prepared, hp, keys)
    got = {(*(r[k] for k in keys), r["grid_log_hp"]): (r["loss_lo"], r["loss_hi"], r["n"])
           for r in band.iter_rows(named=True)}
    assert got == by_hand(prepared, hp, keys) and len(got) == band.height
    curves = table.select(*keys, "grid_log_hp", "grid_loss", "grid_n").explode("grid_log_hp", "grid_loss", "grid_n")
    joined = band.join(curves, on=[*keys, "grid_log_hp"], how="full", nulls_equal=True)
    assert joined.height == band.height == curves.height  # the same grid points, none left over on either side
    assert (joined["n"] == joined["grid_n"]).all()
    assert (joined["loss_lo"] <= joined["grid_loss"] + 1e-12).all()  # the mean lies within its band
    assert (joined["grid_loss"] <= joined["loss_hi"] + 1e-12).all()
    return band, joined


def test_one_run_per_point_collapses_onto_the_mean_curve(mup_sweep) -> None:  # noqa: ANN001 - fixture
    prepared = prepare_runs(mup_sweep.runs, history=mup_sweep.history)
    band, joined = check_against_table(prepared, S.P_LR)
    assert band.height == int((prepared["status"] == "ok").sum())  # 1 run per point
    assert (band["loss_lo"] == band["loss_hi"]).all() and (joined["loss_lo"] == joined["grid_loss"]).all()


def test_our_trainers_seeds_span_the_band() -> None:
    uri = default_tracking_uri()
    assert "width" in list_experiments(uri), "the shipped store has no width sweep"
    runs = load_runs(uri, "width")
    prepared = prepare_runs(runs.filter(pl.col(S.T_RUN_KIND) == S.RUN_KIND_TRAIN))
    band, _ = check_against_table(prepared, S.P_LR)
    seeded = band.filter(pl.col("n") >= 2)
    assert seeded.height > 0 and (seeded["loss_hi"] > seeded["loss_lo"]).all()  # seeds land apart


def test_three_seeds_per_point() -> None:
    prepared = prepare_runs(sweep_runs(seeds=3, noise=0.01))
    band, _ = check_against_table(prepared, S.P_LR)
    assert set(band["n"]) == {3} and (band["loss_hi"] > band["loss_lo"]).all()
    width = loss_band(prepared, S.P_LR, ["scale.width"])  # the dashboard's call: one axis group, by scale
    assert width.columns == ["scale.width", "grid_log_hp", "loss_lo", "loss_hi", "n"]
    assert width.sort("scale.width", "grid_log_hp").equals(width)


def test_float_rounded_values_are_one_point_and_bad_input_gives_an_empty_band() -> None:
    prepared = prepare_runs(sweep_runs(widths=(64,), seeds=2, noise=0.01))
    nudged = prepared.with_columns(pl.when(pl.col("train.seed") == 1).then(pl.col(S.P_LR) * (1 + 1e-9))
                                   .otherwise(pl.col(S.P_LR)).alias(S.P_LR))
    assert set(loss_band(nudged, S.P_LR)["n"]) == {2}
    empty = loss_band(prepared.head(0), S.P_LR, ["scale.width"])
    assert empty.is_empty() and empty.columns == ["scale.width", "grid_log_hp", "loss_lo", "loss_hi", "n"]
    assert loss_band(prepared, "hp.missing").is_empty()
