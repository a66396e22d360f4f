"""Run hygiene: every class, with its reason (spec §6.1)."""

from __future__ import annotations

import math

import polars as pl

from analysis.classify import classify_runs, prepare_runs
from trainer import schema as S

OBJ = S.S_FINAL_VAL_LOSS


def _run(rid: str, lr: float = 1e-3, **kw) -> dict:
    base = {"run_id": rid, S.P_LR: lr, "model.width": 128.0, S.P_PARAMETERIZATION: "mup", S.T_RUN_KIND: "train",
            S.T_STATUS: "ok", S.S_INITIAL_LOSS: 5.0, OBJ: 3.0, S.S_BEST_VAL_LOSS: 3.0, S.S_STEPS_DONE: 100.0,
            S.P_STEPS: 100.0, S.T_CONFIG_HASH: rid, "end_time": 1}
    base.update(kw)
    return base


def _classes(rows: list[dict]) -> dict[str, tuple[str, str]]:
    df = prepare_runs(pl.DataFrame(rows), OBJ)
    return {r["run_id"]: (r["status"], r["reason"]) for r in df.iter_rows(named=True)}


def test_every_class_with_reason():
    rows = [
        _run("ok"),
        _run("nan", lr=2e-3, **{OBJ: math.nan}),
        _run("inf", lr=3e-3, **{OBJ: math.inf}),
        _run("above_start", lr=4e-3, **{OBJ: 5.2}),
        _run("blowup", lr=5e-3, **{OBJ: 3.6, S.S_BEST_VAL_LOSS: 3.1}),
        _run("trainer_div", lr=6e-3, **{S.T_STATUS: "diverged", S.T_STATUS_REASON: "NaN at step 41", OBJ: None}),
        _run("short", lr=7e-4, **{S.S_STEPS_DONE: 60.0}),
        _run("crash", lr=8e-4, **{S.T_STATUS: "failed", S.T_STATUS_REASON: "CUDA OOM"}),
        _run("live", lr=9e-4, **{S.T_STATUS: "running"}),
        _run("dup_old", lr=5e-4, **{S.T_CONFIG_HASH: "h", "end_time": 1}),
        _run("dup_new", lr=5e-4, **{S.T_CONFIG_HASH: "h", "end_time": 2}),
        _run("interrupted", lr=4e-4, **{S.T_STATUS: "interrupted", S.T_SUPERSEDED_BY: "x"}),
        _run("missing", lr=3e-4, **{OBJ: None}),
        _run("parent", **{S.T_RUN_KIND: "sweep"}),
    ]
    c = _classes(rows)
    assert "parent" not in c  # parent sweep runs are not analysed
    assert c["ok"] == ("ok", "")
    for rid in ("nan", "inf", "above_start", "blowup", "trainer_div"):
        assert c[rid][0] == "diverged", (rid, c[rid])
    assert "NaN/inf" in c["nan"][1] and "initial" in c["above_start"][1] and "late blow-up" in c["blowup"][1]
    assert c["trainer_div"][1] == "trainer: diverged: NaN at step 41"
    assert c["short"] == ("truncated", "stopped at step 60 of 100")
    assert c["crash"] == ("failed", "trainer: failed: CUDA OOM")
    assert c["live"][0] == "running"
    assert c["dup_old"][0] == "duplicate" and c["dup_new"][0] == "ok"
    assert c["interrupted"] == ("duplicate", "interrupted; re-run as x")
    assert c["missing"] == ("invalid", f"no {OBJ} value")


def test_loss_is_null_unless_ok():
    df = prepare_runs(pl.DataFrame([_run("a"), _run("b", lr=2e-3, **{OBJ: math.nan})]), OBJ)
    assert df.filter(pl.col("status") != "ok")["loss"].is_null().all()
    assert df.filter(pl.col("status") == "ok")["loss"].to_list() == [3.0]


def test_string_where_a_number_belongs_is_invalid_not_a_crash():
    rows = [_run("a"), _run("b", lr=2e-3)]
    df = pl.DataFrame(rows).with_columns(pl.Series(S.P_LR, ["1e-3", "fast"]), pl.Series(OBJ, ["3.0", "oops"]))
    out = classify_runs(df, OBJ)
    b = out.filter(pl.col("run_id") == "b").row(0, named=True)
    assert b["status"] == "invalid" and "oops" in b["reason"]
    assert out.filter(pl.col("run_id") == "a")["status"][0] == "ok"


def test_missing_objective_column():
    out = classify_runs(pl.DataFrame([_run("a")]).drop(OBJ), OBJ)
    assert out["status"].to_list() == ["invalid"] and "not logged" in out["reason"][0]


def test_high_lr_side_without_progress_is_diverged_but_slow_low_lr_is_not():
    rows = [_run("best", lr=1e-3, **{OBJ: 3.0}), _run("slow", lr=1e-5, **{OBJ: 4.6, S.S_BEST_VAL_LOSS: 4.6}),
            _run("stuck_high", lr=1e-1, **{OBJ: 4.6, S.S_BEST_VAL_LOSS: 4.6})]
    c = _classes(rows)
    assert c["slow"][0] == "ok"
    assert c["stuck_high"][0] == "diverged" and "high-LR side" in c["stuck_high"][1]


def test_late_blowup_from_history_for_train_objective():
    rows = [_run("a", **{S.S_FINAL_TRAIN_LOSS: 3.5}), _run("b", lr=2e-3, **{S.S_FINAL_TRAIN_LOSS: 3.0})]
    hist = pl.DataFrame({"run_id": ["a", "a", "b"], "key": [S.M_TRAIN_LOSS] * 3, "step": [1, 2, 2],
                         "value": [3.0, 3.5, 3.0]})
    out = prepare_runs(pl.DataFrame(rows), S.S_FINAL_TRAIN_LOSS, history=hist)
    assert out.filter(pl.col("run_id") == "a")["status"][0] == "diverged"
    assert out.filter(pl.col("run_id") == "b")["status"][0] == "ok"


def test_late_blowup_from_summaries_for_train_objective():
    """Without histories, the trainer's summary.min_train_loss is the best logged point."""
    rows = [_run("a", **{S.S_FINAL_TRAIN_LOSS: 3.5, S.S_MIN_TRAIN_LOSS: 3.0}),
            _run("b", lr=2e-3, **{S.S_FINAL_TRAIN_LOSS: 3.0, S.S_MIN_TRAIN_LOSS: 2.99})]
    out = prepare_runs(pl.DataFrame(rows), S.S_FINAL_TRAIN_LOSS)
    assert out.filter(pl.col("run_id") == "a")["status"][0] == "diverged"
    assert out.filter(pl.col("run_id") == "b")["status"][0] == "ok"
