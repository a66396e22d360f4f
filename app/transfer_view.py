"""Turning one axis group's analysis results (AxisTransfer + optimum-table rows + runs) into chart frames and
sentences; shared by the Transfer and Compare pages. Only unit changes (ln hp → hp) and formatting happen here."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from analysis.transfer import AxisTransfer
from app import data
from trainer import schema as S


@dataclass
class GroupView:
    """What the pages draw for one (axis, hp, group)."""

    result: AxisTransfer
    rows: pl.DataFrame  # optimum-table rows of the group, by scale
    curves: pl.DataFrame
    points: pl.DataFrame
    optima: pl.DataFrame
    diverged: pl.DataFrame
    scale_rows: pl.DataFrame
    law: pl.DataFrame


def pow2(value: float | None) -> str:
    """A hyperparameter as a power of two (``2^-7``, ``2^-7.5``), the unit sweeps are written in."""
    if value is None or not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
        return "–"
    k = math.log2(value)
    return f"2^{round(k)}" if abs(k - round(k)) < 0.05 else f"2^{k:.1f}"


def build(result: AxisTransfer, opt: pl.DataFrame, prep: pl.DataFrame) -> GroupView:
    """Chart frames for one axis group: mean curves and optima from the optimum table, run points and diverged
    markers from the classified runs, per-scale optima and the fitted law's prediction band."""
    axis, hp = result.axis, result.hp
    col = f"scale.{axis}"
    rows = data.group_rows(opt, result.group, axis)
    runs = data.group_runs(prep, result.group, axis)
    curves = (rows.select(pl.col(col).alias("scale"), pl.col("grid_log_hp").alias("x"),
                          pl.col("grid_loss").alias("loss"))
              .explode("x", "loss").drop_nulls("x").with_columns(pl.col("x").exp().alias("hp")).drop("x"))
    seed = pl.col(S.P_SEED).cast(pl.Utf8) if S.P_SEED in runs.columns else pl.lit("")
    ok = runs.filter(pl.col("status") == "ok")
    points = ok.select(pl.col(col).alias("scale"), pl.col(hp).cast(pl.Float64).alias("hp"), pl.col("loss"),
                       pl.col("run_id"), pl.col("run_name").fill_null(""), seed.alias("seed"))
    div = runs.filter(pl.col("status") == "diverged")
    diverged = div.select(pl.col(col).alias("scale"), pl.col(hp).cast(pl.Float64).alias("hp"), pl.col("run_id"),
                          pl.col("run_name").fill_null(""), pl.col("reason").fill_null(""))
    optima = rows.filter(pl.col("method") != "none").select(
        pl.col(col).alias("scale"), pl.col("opt"),
        pl.when(pl.col("method") == "quadratic").then(pl.col("loss_opt")).otherwise(pl.col("argmin_loss"))
        .alias("loss"),
        pl.col("ci95_lo").fill_nan(None).alias("lo"), pl.col("ci95_hi").fill_nan(None).alias("hi"),
        pl.col("method"), pl.col("flags").list.join(", ").alias("flags"))
    excluded = result.excluded
    scale_rows = rows.filter(pl.col("method") != "none").select(
        pl.col(col).alias("scale"), pl.col("opt"), pl.col("ci95_lo").fill_nan(None).alias("lo"),
        pl.col("ci95_hi").fill_nan(None).alias("hi")).with_columns(
        (~pl.col("scale").is_in(list(excluded))).alias("used"),
        pl.col("scale").replace_strict(excluded, default="", return_dtype=pl.Utf8).alias("why"))
    law = law_frame(result)
    return GroupView(result, rows, curves, points, optima, diverged, scale_rows, law)


def law_frame(result: AxisTransfer, n: int = 40) -> pl.DataFrame:
    """The fitted power law and its 95 % prediction interval (PowerLawFit.predict) across the tested scales."""
    schema = {"scale": pl.Float64, "fit": pl.Float64, "lo": pl.Float64, "hi": pl.Float64}
    if result.fit is None or not result.scales:
        return pl.DataFrame(schema=schema)
    grid = np.geomspace(min(result.scales), max(result.scales), n)
    preds = [result.fit.predict(float(s), 0.95) for s in grid]
    return pl.DataFrame({"scale": grid, "fit": [p[0] for p in preds], "lo": [p[1] for p in preds],
                         "hi": [p[2] for p in preds]}, schema=schema)


def verdict_text(result: AxisTransfer) -> str:
    """The verdict in words and numbers, e.g. ``holds: drift +0.03 ± 0.05 per doubling, worst penalty 0.2 %``."""
    fit = result.fit
    pen = result.max_penalty
    pen_txt = ("the transferred value diverges at a larger scale" if math.isinf(pen) else
               f"worst penalty {pen:.2%}" if math.isfinite(pen) else "no realised penalty measurable")
    if fit is None:
        return f"{result.verdict}: no slope could be fitted; {pen_txt}"
    lo, hi = fit.slope_ci90
    eps = f", margin ±{result.tost_eps:.3f}" if math.isfinite(result.tost_eps) else ""
    return (f"{result.verdict}: drift {fit.slope:+.3f} ± {fit.slope_se:.3f} per doubling of {result.axis} "
            f"(log2 of the optimal {result.hp}; 90 % CI [{lo:+.3f}, {hi:+.3f}]{eps}), {pen_txt}")


def warnings(view: GroupView) -> list[str]:
    """Flags of the per-scale optima in words, with the grid extension the analysis suggests."""
    axis, hp = view.result.axis, view.result.hp
    out = []
    for r in view.rows.iter_rows(named=True):
        at = f"{axis} {r[f'scale.{axis}']:g}"
        flags = set(r["flags"] or [])
        sugg = [s for s in (r["suggested"] or []) if s and math.isfinite(s)]
        argmin = r["argmin"] if r["argmin"] is not None and math.isfinite(r["argmin"]) else None
        if "edge_high" in flags:
            above = [s for s in sugg if argmin is None or s > argmin]
            out.append(f"optimum on grid edge (high) at {at}: extend the {hp} grid to ≥ {pow2(min(above))}"
                       if above else f"optimum on grid edge (high) at {at}")
        if "edge_low" in flags:
            below = [s for s in sugg if argmin is None or s < argmin]
            out.append(f"optimum on grid edge (low) at {at}: extend the {hp} grid to ≤ {pow2(max(below))}"
                       if below else f"optimum on grid edge (low) at {at}")
        if "near_stability_edge" in flags:
            out.append(f"optimum next to divergence at {at}: the next {hp} above it diverged")
        for flag, words in (("ill_conditioned", "no curvature (flat or concave loss)"),
                            ("too_few_points", "fewer than 3 usable grid values"),
                            ("no_data", "no run finished ok")):
            if flag in flags:
                out.append(f"{words} at {at}: no optimum estimate")
    return out


def scale_table(view: GroupView) -> pl.DataFrame:
    """Per-scale numbers for the table under the charts (all from the optimum table and AxisTransfer)."""
    res = view.result
    col = f"scale.{res.axis}"
    out = []
    for r in view.rows.iter_rows(named=True):
        s = r[col]
        pen = res.penalties.get(s)
        out.append({
            res.axis: s, "optimum": pow2(r["opt"]) if r["method"] != "none" else "–",
            "value": r["opt"], "95% CI": f"[{r['ci95_lo']:.3g}, {r['ci95_hi']:.3g}]"
            if r["ci95_lo"] is not None and math.isfinite(r["ci95_lo"]) else "–",
            "method": r["method"], "runs ok": r["n_runs"], "diverged": r["n_diverged"],
            "flags": ", ".join(r["flags"] or []), "in fit": s not in res.excluded,
            "penalty of base optimum": ("diverges" if pen is not None and math.isinf(pen) else
                                        f"{pen:.2%}" if pen is not None and math.isfinite(pen) else ""),
        })
    return pl.DataFrame(out)


def differing_keys(results: list[AxisTransfer]) -> list[str]:
    """Group columns whose value differs between the groups (the rest is constant and not worth a label)."""
    keys = sorted({k for r in results for k in r.group})
    return [k for k in keys if len({str(r.group.get(k)) for r in results}) > 1]
