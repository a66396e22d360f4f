"""What a store holds, per experiment and sweep: run counts by class, parameterizations, varied axes, swept
hyperparameters and last update. The dashboard's Sweeps and Home pages show this table as it is.

Counts are by the analysis classes of classify.prepare_runs (ok / diverged / failed / running / other), not by the
trainer's tags, so the table agrees with what the fits use.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from analysis.classify import hp_columns
from trainer import schema as S

SUMMARY_SCHEMA: dict[str, Any] = {
    "experiment": pl.Utf8, "sweep": pl.Utf8, "runs": pl.Int64, "ok": pl.Int64, "diverged": pl.Int64,
    "failed": pl.Int64, "running": pl.Int64, "other": pl.Int64, "source": pl.Utf8, "params": pl.Utf8,
    "axes": pl.Utf8, "hyperparameters": pl.Utf8, "last update": pl.Datetime("ms"),
}
COUNTED = ("ok", "diverged", "failed", "running")


def swept_hps(prep: pl.DataFrame) -> list[str]:
    """Hyperparameters the sweep varied (hp.lr first), falling back to hp.lr when it is the only one logged."""
    hps = hp_columns(prep) or ([S.P_LR] if S.P_LR in prep.columns else [])
    return sorted(hps, key=lambda h: (h != S.P_LR, h))


def varied_axes(prep: pl.DataFrame) -> list[str]:
    """Scale axes with at least two values among the classified runs (the only ones a verdict can be made on)."""
    return [axis for axis in S.AXES
            if f"scale.{axis}" in prep.columns and prep[f"scale.{axis}"].drop_nulls().n_unique() >= 2]


def sweep_table(experiment: str, raw: pl.DataFrame, prepared: pl.DataFrame | None) -> pl.DataFrame:
    """Rows for one experiment: one per sweep of its training runs (``prepared``, from classify.prepare_runs), one
    for its coordinate-check runs if any, or a single zero row for an experiment without runs."""
    rows: list[dict[str, Any]] = []
    if raw.is_empty():
        rows.append({"experiment": experiment, "sweep": "", "runs": 0})
    coord = raw.filter(pl.col(S.T_RUN_KIND).fill_null("") == S.RUN_KIND_COORD) \
        if S.T_RUN_KIND in raw.columns else raw.clear()
    if coord.height:
        rows.append({"experiment": experiment, "sweep": "(coordinate check)", "runs": coord.height,
                     "source": _uniques(coord, S.T_SOURCE), "params": _uniques(coord, S.P_PARAMETERIZATION),
                     "last update": _last(coord)})
    if prepared is not None and not prepared.is_empty():
        sweep_col = S.T_SWEEP_NAME if S.T_SWEEP_NAME in prepared.columns else S.T_SWEEP_ID
        key = pl.col(sweep_col).cast(pl.Utf8) if sweep_col in prepared.columns else pl.lit(None, pl.Utf8)
        keyed = prepared.with_columns(key.fill_null("(no sweep)").alias("_sweep"))
        for (sweep,), part in keyed.group_by(["_sweep"], maintain_order=True):
            counts = dict(part["status"].value_counts().iter_rows())
            rows.append({
                "experiment": experiment, "sweep": sweep, "runs": part.height,
                **{k: counts.get(k, 0) for k in COUNTED},
                "other": sum(v for k, v in counts.items() if k not in COUNTED),
                "source": _uniques(part, S.T_SOURCE), "params": _uniques(part, S.P_PARAMETERIZATION),
                "axes": ", ".join(_axis_range(part, a) for a in varied_axes(part)),
                "hyperparameters": ", ".join(swept_hps(part)), "last update": _last(part),
            })
    df = pl.DataFrame([{k: r.get(k) for k in SUMMARY_SCHEMA} for r in rows], schema=SUMMARY_SCHEMA)
    return df.with_columns([pl.col(c).fill_null(0) for c in (*COUNTED, "other")])


def _uniques(df: pl.DataFrame, col: str) -> str:
    if col not in df.columns:
        return ""
    return ", ".join(sorted(str(v) for v in df[col].drop_nulls().unique().to_list()))


def _axis_range(df: pl.DataFrame, axis: str) -> str:
    vals = df[f"scale.{axis}"].drop_nulls().unique().sort()
    return f"{axis} {vals[0]:g}–{vals[-1]:g} ({len(vals)})"


def _last(df: pl.DataFrame) -> Any:
    times = [c for c in ("end_time", "start_time") if c in df.columns]
    if not times:
        return None
    latest = df.select(pl.max_horizontal(times).max()).item()
    return None if latest is None else pl.Series([latest]).cast(pl.Datetime("ms"))[0]
