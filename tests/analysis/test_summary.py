"""Per-sweep summary table (what the Sweeps page shows), from analysis classes."""

from __future__ import annotations

import polars as pl

from analysis.classify import prepare_runs
from analysis.summary import sweep_table, swept_hps, varied_axes
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


def test_base_multipliers_and_per_module_multipliers_are_tunable_but_fixed_ones_are_not() -> None:
    """α_output (hp.out_mult) swept with the LR is optimised like a mult.* multiplier (TP5 Table 1 lists it as
    μTransferable); a multiplier at one value, or a non-multiplicative HP such as weight decay, is not."""
    rows = [{**_run(f"r{i}{j}", "s", 32, lr, 3.0 - 0.1 * j), "hp.out_mult": om, "hp.weight_decay": 0.1 * j,
             "mult.lr.token_emb": 1.0}
            for i, lr in enumerate((1e-3, 1e-2)) for j, om in enumerate((0.5, 1.0, 2.0))]
    prep = prepare_runs(pl.DataFrame(rows))
    assert swept_hps(prep) == [S.P_LR, "hp.out_mult"]
    assert set(S.TUNABLE_HPS) >= {S.P_LR, S.P_INIT_STD, "hp.out_mult"}
