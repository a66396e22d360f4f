"""Per-sweep summary table (what the Sweeps page shows), from analysis classes."""

from __future__ import annotations

import polars as pl

from analysis.classify import prepare_runs
from analysis.summary import sweep_table, varied_axes
from trainer import schema as S


def _run(rid: str, sweep: str, width: int, lr: float, loss: float, status: str = "ok", kind: str = "train") -> dict:
    return {"run_id": rid, S.T_SWEEP_NAME: sweep, S.T_RUN_KIND: kind, S.T_STATUS: status, "model.width": width,
            S.P_LR: lr, S.P_PARAMETERIZATION: "mup", S.S_FINAL_VAL_LOSS: loss, S.S_INITIAL_LOSS: 5.5,
            S.S_BEST_VAL_LOSS: loss, "start_time": 1_700_000_000_000, "end_time": 1_700_000_100_000}


def test_counts_by_class_per_sweep_and_coord_rows() -> None:
    raw = pl.DataFrame([
        _run("a", "s1", 32, 1e-3, 3.0), _run("b", "s1", 32, 1e-2, 2.9), _run("c", "s1", 64, 1e-3, 3.1),
        _run("d", "s1", 64, 1e-2, float("nan"), status="diverged"),
        _run("e", "s2", 32, 1e-3, 3.0, status="failed"),
        _run("f", "", 32, 1e-3, 3.0, kind="coord_check"), _run("g", "", 64, 1e-3, 3.0, kind="coord_check"),
    ])
    prep = prepare_runs(raw)
    table = sweep_table("exp", raw, prep)
    rows = {r["sweep"]: r for r in table.to_dicts()}
    assert rows["s1"]["runs"] == 4 and rows["s1"]["ok"] == 3 and rows["s1"]["diverged"] == 1
    assert rows["s2"]["failed"] == 1 and rows["s2"]["ok"] == 0
    assert rows["(coordinate check)"]["runs"] == 2
    assert rows["s1"]["axes"].startswith("width 32–64") and rows["s1"]["hyperparameters"] == S.P_LR
    assert varied_axes(prep.filter(pl.col(S.T_SWEEP_NAME) == "s2")) == []


def test_empty_experiment_gives_a_zero_row() -> None:
    table = sweep_table("empty", pl.DataFrame(), None)
    assert table.height == 1 and table["runs"][0] == 0 and table["ok"][0] == 0
