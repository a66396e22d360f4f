"""Run hygiene (spec §6.1): put every run into exactly one class, with a reason, before anything is fitted.

Classes (column ``status``): ``ok`` (fitted), ``diverged`` (censored: never a number in a fit, but a high-side
bracket), ``truncated`` (stopped before its planned steps), ``failed`` (crashed), ``duplicate`` (the same config
and seed trained again; the latest finished copy is kept), ``running`` (not finished), ``invalid`` (a value the
analysis needs is missing or not a number). ``reason`` says why in words; ``loss`` is the objective for ok runs and
null otherwise, so that no censored value can leak into a fit by accident.

``prepare_runs`` is the single entry point the pipeline and dashboard use: it drops parent sweep runs, fills absent
multipliers with 1.0, adds the ``scale.<axis>`` columns and classifies.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from trainer import schema as S

STATUSES = ("ok", "diverged", "truncated", "failed", "duplicate", "running", "invalid")
CONFIG_SECTIONS = ("model", "param", "hp", "optim", "train", "data", "mult", "depth_profile")
# Config fields that do not change what is trained (same list as trainer.config.config_hash) plus the seed, which
# is the replicate index rather than part of a slice, and eval cadence, which only changes what is measured.
NON_IDENTITY = ("train.device", "train.log_every", "train.compile", "train.seed", "train.eval_every",
                "train.eval_batches")
SCALE_PREFIX = "scale."


def default_objective(runs: pl.DataFrame) -> str:
    """``summary.final_val_loss`` (the schema's default objective) when any run has it, else the final train loss
    (imported sweeps such as the μP demo log train loss only)."""
    for name in (S.S_FINAL_VAL_LOSS, S.S_FINAL_TRAIN_LOSS):
        if name in runs.columns and runs[name].dtype.is_numeric() and runs[name].is_not_null().any():
            return name
    return S.S_FINAL_VAL_LOSS


def hp_columns(runs: pl.DataFrame, *, swept_only: bool = True) -> list[str]:
    """Tunable hyperparameters: those of ``schema.TUNABLE_HPS`` (LR, init scale, α_input/α_output/attention
    multipliers) and every ``mult.<kind>.<module>`` column (absent multipliers are 1.0).

    With ``swept_only`` only those that take more than one value, i.e. the ones a sweep actually varied."""
    cols = [c for c in runs.columns if c in S.TUNABLE_HPS or c.startswith(S.MULT_PREFIX)]
    if swept_only:
        cols = [c for c in cols if runs[c].drop_nulls().n_unique() > 1]
    return cols


def config_columns(runs: pl.DataFrame) -> list[str]:
    """Params that define what is trained (everything but derived values, seed, device and logging cadence)."""
    return [c for c in runs.columns if c.split(".", 1)[0] in CONFIG_SECTIONS and c not in NON_IDENTITY
            and c not in S.HISTORY_METRICS]  # the latest value of train.loss shares the "train." prefix


def slice_columns(runs: pl.DataFrame, hp: str | Sequence[str]) -> list[str]:
    """The columns held fixed within one slice of a sweep over ``hp``: every config column except the swept
    hyperparameter(s) and the raw axis fields (replaced by the comparable ``scale.*`` columns)."""
    hps = {hp} if isinstance(hp, str) else set(hp)
    raw_axes = set(S.AXES.values()) | {"train.steps"}
    cols = [c for c in config_columns(runs) if c not in hps and c not in raw_axes]
    return cols + [c for c in runs.columns if c.startswith(SCALE_PREFIX)]


def add_scale_columns(runs: pl.DataFrame) -> pl.DataFrame:
    """``scale.<axis>`` for every axis of schema.AXES present, as Float64.

    ``scale.tokens`` is the planned token count: ``train.tokens`` when set, else derived.steps × batch × seq_len
    (the trainer logs tokens = 0 when a run is given in steps), else ``summary.tokens_seen``. ``scale.experts`` is
    null for dense models (0 experts) so that a log-scale fit never sees log(0); ``scale.expert_width`` is the
    effective h_e/d of MoE runs (``model.expert_mlp_ratio``, whose 0 means "= model.mlp_ratio") and null for dense
    ones."""
    out = runs
    for axis, col in S.AXES.items():
        if axis == "tokens":
            continue
        if col in runs.columns:
            expr = _num(col)
            if axis == "experts":
                expr = pl.when(expr > 0).then(expr).otherwise(None)
            if axis == "expert_width":
                moe = _num(S.AXES["experts"]) > 0 if S.AXES["experts"] in runs.columns else pl.lit(False)
                ratio = pl.when(expr > 0).then(expr).otherwise(_num("model.mlp_ratio")) \
                    if "model.mlp_ratio" in runs.columns else expr
                expr = pl.when(moe & (ratio > 0)).then(ratio).otherwise(None)
            out = out.with_columns(expr.alias(SCALE_PREFIX + axis))
    tokens = pl.lit(None, pl.Float64)
    if S.S_TOKENS_SEEN in runs.columns:
        tokens = _num(S.S_TOKENS_SEEN)
    if all(c in runs.columns for c in (S.P_STEPS, S.AXES["batch"], "model.seq_len")):
        planned = _num(S.P_STEPS) * _num(S.AXES["batch"]) * _num("model.seq_len")
        tokens = pl.when(planned > 0).then(planned).otherwise(tokens)
    if S.AXES["tokens"] in runs.columns:
        tokens = pl.when(_num(S.AXES["tokens"]) > 0).then(_num(S.AXES["tokens"])).otherwise(tokens)
    if any(c in runs.columns for c in (S.AXES["tokens"], S.S_TOKENS_SEEN, S.P_STEPS)):
        out = out.with_columns(tokens.alias(SCALE_PREFIX + "tokens"))
    return out


def _num(col: str) -> pl.Expr:
    return pl.col(col).cast(pl.Float64, strict=False)


def prepare_runs(runs: pl.DataFrame, objective: str | None = None, *, history: pl.DataFrame | None = None,
                 blowup_rel: float = 0.05, progress_frac: float = 0.5) -> pl.DataFrame:
    """Drop parent sweep runs, fill absent multipliers with 1.0, add ``scale.*`` columns and classify every run.

    See ``classify_runs`` for the rules and the added columns."""
    df = runs
    if S.T_RUN_KIND in df.columns:
        # Only training runs are data: sweep parents and coordinate-check runs are not points of a sweep.
        df = df.filter(pl.col(S.T_RUN_KIND).is_null() | (pl.col(S.T_RUN_KIND) == S.RUN_KIND_TRAIN))
    mult_cols = [c for c in df.columns if c.startswith(S.MULT_PREFIX)]
    df = df.with_columns([pl.col(c).fill_null(1.0) if df[c].dtype.is_numeric() else pl.col(c).fill_null("1.0")
                          for c in mult_cols])
    df = add_scale_columns(df)
    return classify_runs(df, objective or default_objective(df), history=history, blowup_rel=blowup_rel,
                         progress_frac=progress_frac)


def classify_runs(runs: pl.DataFrame, objective: str, *, history: pl.DataFrame | None = None,
                  blowup_rel: float = 0.05, progress_frac: float = 0.5) -> pl.DataFrame:
    """Add ``status``, ``reason`` and ``loss`` (see module docstring). Rules, first match wins (spec §6.1):

    1. invalid: the objective (or a swept hp / scale value) is missing or not a number;
    2. failed / running / interrupted, from the trainer's ``run.status`` tag (an interrupted run that a resumed
       sweep re-ran is a duplicate, otherwise truncated);
    3. diverged: the trainer said so; the objective is NaN/inf; final ≥ initial loss; a late blow-up (final above
       the best logged loss by more than ``blowup_rel`` *and* by more than ``blowup_rel`` of the progress made, a
       guard [OURS] against tiny-loss regimes where 5 % is noise); or, on the high-LR side of its slice, a run that
       kept less than ``progress_frac`` of the progress the best run made [OURS, our form of the spec's
       'far above the cell minimum' rule that does not misfire on slow low-LR runs];
    4. truncated: fewer steps done than planned (``derived.steps``);
    5. duplicate: same ``config.hash`` (or the same config and seed) as a later finished run.

    ``history`` (run_id, key, step, value), when given, supplies the best logged value for the late blow-up test
    of a train-loss objective; a val-loss objective uses ``summary.best_val_loss``."""
    n = runs.height
    df = runs.with_row_index("_row")
    status = pl.Series("status", [None] * n, dtype=pl.Utf8)
    reason = pl.Series("reason", [None] * n, dtype=pl.Utf8)

    def mark(mask: pl.Series, st: str, why: pl.Series | str) -> None:
        nonlocal status, reason
        mask = mask.fill_null(False) & status.is_null()
        why_s = why if isinstance(why, pl.Series) else pl.Series([why] * n, dtype=pl.Utf8)
        status = pl.select(pl.when(mask).then(pl.lit(st)).otherwise(status)).to_series()
        reason = pl.select(pl.when(mask).then(why_s).otherwise(reason)).to_series()

    tag = df[S.T_STATUS] if S.T_STATUS in df.columns else pl.Series([None] * n, dtype=pl.Utf8)
    tag_reason = (df[S.T_STATUS_REASON].fill_null("") if S.T_STATUS_REASON in df.columns
                  else pl.Series([""] * n, dtype=pl.Utf8))

    # 1. invalid values (never crash on a string where a number belongs; say which value it was).
    if objective not in df.columns:
        mark(pl.Series([True] * n), "invalid", f"objective {objective} not logged")
        y = pl.Series([None] * n, dtype=pl.Float64)
    else:
        y = df[objective].cast(pl.Float64, strict=False)
        not_number = y.is_null() & df[objective].is_not_null()
        mark(not_number, "invalid", pl.format("{}={} is not a number", pl.lit(objective),
                                              df[objective].cast(pl.Utf8)).alias("r").pipe(_eval, df))
    for col in [*hp_columns(df), *[c for c in df.columns if c.startswith(SCALE_PREFIX)]]:
        raw = df[col]
        val = raw.cast(pl.Float64, strict=False)
        bad = (val.is_null() & raw.is_not_null()) | (val <= 0).fill_null(False)
        if col == S.P_LR:
            bad = bad | raw.is_null()
        mark(bad, "invalid", pl.format("{}={} is not a positive number", pl.lit(col), pl.col(col).cast(pl.Utf8))
             .pipe(_eval, df))

    # 2. the trainer's own verdicts.
    mlflow_status = df["mlflow_status"] if "mlflow_status" in df.columns else pl.Series([None] * n, dtype=pl.Utf8)
    mark(tag == S.STATUS_FAILED, "failed", _why("trainer: failed", tag_reason))
    mark(tag.is_null() & mlflow_status.is_in(["FAILED", "KILLED"]), "failed", "MLflow run status FAILED/KILLED")
    mark(tag == S.STATUS_RUNNING, "running", "still running (or died without a final status)")
    mark(tag.is_null() & (mlflow_status == "RUNNING"), "running", "MLflow run status RUNNING")
    if S.T_SUPERSEDED_BY in df.columns:
        mark((tag == S.STATUS_INTERRUPTED) & df[S.T_SUPERSEDED_BY].is_not_null(), "duplicate",
             pl.format("interrupted; re-run as {}", pl.col(S.T_SUPERSEDED_BY)).pipe(_eval, df))
    mark(tag == S.STATUS_INTERRUPTED, "truncated", _why("interrupted", tag_reason))

    # 3. divergence.
    mark(tag == S.STATUS_DIVERGED, "diverged", _why("trainer: diverged", tag_reason))
    mark(~y.is_finite() & y.is_not_null(), "diverged", "objective is NaN/inf")
    initial = _col_or_null(df, S.S_INITIAL_LOSS)
    mark(y >= initial, "diverged", "final loss >= initial loss")
    best = _best_logged(df, objective, history)
    if best is not None:
        rise = y - best
        blown = (y > best * (1 + blowup_rel)) & (rise > blowup_rel * (initial - best).fill_null(0.0))
        mark(blown, "diverged", pl.format("late blow-up: final {} vs best {}", pl.lit(y).round(4),
                                          pl.lit(best).round(4)).pipe(_eval, df))
    mark(y.is_null(), "invalid", f"no {objective} value")
    status, reason = _high_side_rule(df, y, initial, status, reason, progress_frac)

    # 4. truncation: fewer steps than planned.
    planned = _planned_steps(df)
    done = _col_or_null(df, S.S_STEPS_DONE)
    mark(done < planned, "truncated", pl.format("stopped at step {} of {}", pl.lit(done).cast(pl.Int64),
                                                pl.lit(planned).cast(pl.Int64)).pipe(_eval, df))

    # 5. duplicates among the remaining ok runs: keep the most recently finished copy.
    mark(pl.Series([True] * n), "ok", "")
    status = _mark_duplicates(df, status)
    reason = pl.select(pl.when((status == "duplicate") & (reason == "")).then(pl.lit("same config and seed as a "
                                                                                      "later run"))
                       .otherwise(reason)).to_series()
    loss = pl.select(pl.when(status == "ok").then(y).otherwise(None)).to_series()
    return runs.with_columns(status.alias("status"), reason.alias("reason"), loss.alias("loss"))


def _eval(expr: pl.Expr, df: pl.DataFrame) -> pl.Series:
    return df.select(expr.alias("r"))["r"]


def _why(prefix: str, detail: pl.Series) -> pl.Series:
    return pl.select(pl.when(detail != "").then(pl.lit(prefix + ": ") + detail).otherwise(pl.lit(prefix))).to_series()


def _col_or_null(df: pl.DataFrame, col: str) -> pl.Series:
    if col in df.columns:
        return df[col].cast(pl.Float64, strict=False)
    return pl.Series([None] * df.height, dtype=pl.Float64)


def _best_logged(df: pl.DataFrame, objective: str, history: pl.DataFrame | None) -> pl.Series | None:
    """The lowest logged value of the objective's history over training (None when unknown)."""
    if objective == S.S_FINAL_VAL_LOSS and S.S_BEST_VAL_LOSS in df.columns:
        return _col_or_null(df, S.S_BEST_VAL_LOSS)
    if objective == S.S_FINAL_TRAIN_LOSS and S.S_MIN_TRAIN_LOSS in df.columns and history is None:
        return _col_or_null(df, S.S_MIN_TRAIN_LOSS)
    key = {S.S_FINAL_VAL_LOSS: S.M_VAL_LOSS, S.S_FINAL_TRAIN_LOSS: S.M_TRAIN_LOSS}.get(objective)
    if history is None or key is None:
        return None
    best = (history.filter((pl.col("key") == key) & pl.col("value").is_finite())
            .group_by("run_id").agg(pl.col("value").min().alias("_best")))
    return df.select("run_id").join(best, on="run_id", how="left")["_best"]


def _planned_steps(df: pl.DataFrame) -> pl.Series:
    if S.P_STEPS in df.columns:
        return _col_or_null(df, S.P_STEPS)
    if "train.steps" in df.columns and S.AXES["tokens"] in df.columns:
        return pl.select(pl.when(_col_or_null(df, S.AXES["tokens"]) == 0)
                         .then(_col_or_null(df, "train.steps"))).to_series()
    return pl.Series([None] * df.height, dtype=pl.Float64)


def _high_side_rule(df: pl.DataFrame, y: pl.Series, initial: pl.Series, status: pl.Series, reason: pl.Series,
                    progress_frac: float) -> tuple[pl.Series, pl.Series]:
    """Within each LR slice, a run above the best run's LR that kept < progress_frac of the best run's progress
    (initial − best) is diverged (spec §6.1 'far above the cell minimum', in our relative-progress form)."""
    if S.P_LR not in df.columns or not initial.is_not_null().any():
        return status, reason
    keys = slice_columns(df, S.P_LR) or ["_one"]
    cand = df.with_columns(pl.lit(1).alias("_one")).select([*keys, "_row"]).with_columns(
        y.alias("_y"), initial.alias("_l0"), df[S.P_LR].cast(pl.Float64, strict=False).alias("_lr"),
        status.is_null().alias("_open"))
    open_ = cand.filter(pl.col("_open") & pl.col("_y").is_finite())
    if open_.is_empty():
        return status, reason
    best = (open_.sort("_y").group_by(keys, maintain_order=True)
            .agg(pl.col("_y").first().alias("_ymin"), pl.col("_lr").first().alias("_lrmin"),
                 pl.col("_l0").median().alias("_l0med")))
    joined = open_.join(best, on=keys, how="left", nulls_equal=True)
    progress = pl.col("_l0med") - pl.col("_ymin")
    hit = joined.filter((pl.col("_lr") > pl.col("_lrmin")) & (progress > 0)
                        & (pl.col("_y") - pl.col("_ymin") > (1 - progress_frac) * progress))
    if hit.is_empty():
        return status, reason
    rows = hit["_row"].to_list()
    msg = {r: f"high-LR side: final {v:.4g} kept < {progress_frac:.0%} of the progress to the slice best {b:.4g}"
           for r, v, b in hit.select("_row", "_y", "_ymin").iter_rows()}
    status = status.scatter(rows, "diverged")
    reason = reason.scatter(rows, [msg[r] for r in rows])
    return status, reason


def _mark_duplicates(df: pl.DataFrame, status: pl.Series) -> pl.Series:
    """Among ok runs with the same identity, all but the most recently finished become duplicates."""
    if S.T_CONFIG_HASH in df.columns and df[S.T_CONFIG_HASH].is_not_null().any():
        ident = [S.T_CONFIG_HASH]
    else:
        ident = config_columns(df) + ([S.P_SEED] if S.P_SEED in df.columns else [])
    if not ident:
        return status
    order = [c for c in ("end_time", "start_time") if c in df.columns]
    sub = df.select(["_row", *ident, *order]).with_columns(status.alias("_st")).filter(pl.col("_st") == "ok")
    if order:
        sub = sub.sort(order, descending=True, nulls_last=True)
    dup_rows = sub.filter(pl.int_range(pl.len()).over(ident) > 0)["_row"].to_list()
    return status.scatter(dup_rows, "duplicate") if dup_rows else status
