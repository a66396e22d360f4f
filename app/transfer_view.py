"""Turning one axis group's analysis results (AxisTransfer + optimum-table rows + runs) into chart frames and
sentences; shared by the Transfer and Compare pages. Only unit changes (ln hp → hp), formatting and the choice of
which runs to draw happen here; the seed band comes from analysis.optimum.loss_band.

``transfer_panel`` and ``compare_panel`` build everything a page draws for its groups (frames, Vega-Lite specs,
table, sentences) once per set of cached analysis objects, so a rerun that changes nothing about the groups (a
new tab, a click on a run, a widget elsewhere) costs no chart building at all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import altair as alt
import numpy as np
import polars as pl
import streamlit as st

from analysis.optimum import loss_band
from analysis.transfer import AxisTransfer, differing_keys
from app import charts, data
from trainer import schema as S


@dataclass
class GroupView:
    """What the pages draw for one (axis, hp, group)."""

    result: AxisTransfer
    rows: pl.DataFrame  # optimum-table rows of the group, by scale
    curves: pl.DataFrame
    band: pl.DataFrame  # one row per (scale, hp) cell: min and max loss over its ok runs
    points: pl.DataFrame  # every ok run, or one per cell (``every_run=False``)
    optima: pl.DataFrame
    diverged: pl.DataFrame  # one diverged run per (scale, hp) cell
    scale_rows: pl.DataFrame
    law: pl.DataFrame
    every_run: bool


EVERY_RUN_MAX = 500  # ok runs up to which a chart draws every run by default (Vega draws that many quickly)


def replicated(rows: pl.DataFrame) -> int:
    """The largest number of ok runs behind one grid value of the group's optimum-table rows (``grid_n``): above 1,
    cells hold several seeds and one dot per cell draws fewer dots than runs."""
    counts = rows["grid_n"].explode().drop_nulls() if "grid_n" in rows.columns and rows.height else []
    return int(counts.max()) if len(counts) else 0


def dot_counts(rows: Sequence[pl.DataFrame]) -> tuple[int, int]:
    """(the most ok runs behind one grid value, ok runs in all) of the groups whose optimum-table ``rows`` a chart
    draws (``grid_n``, ``n_runs``)."""
    return max((replicated(r) for r in rows), default=0), sum(int(r["n_runs"].sum()) for r in rows)


def every_run_default(rows: Sequence[pl.DataFrame]) -> bool:
    """Whether charts of groups with these optimum-table ``rows`` draw every run by default: yes where no grid
    value holds several runs (one dot per point is then every run) or up to EVERY_RUN_MAX ok runs in all."""
    seeds, n_ok = dot_counts(rows)
    return seeds <= 1 or n_ok <= EVERY_RUN_MAX


def parameterizations(results: list[AxisTransfer]) -> list[str]:
    """The parameterizations (param.name) among axis groups, in the order the Transfer page offers them."""
    return sorted({str(r.group.get(S.P_PARAMETERIZATION)) for r in results})


def param_groups(results: list[AxisTransfer], param: str) -> tuple[list[AxisTransfer], list[str]]:
    """The axis groups of one parameterization ordered by the settings that tell them apart (by value: depth=2
    before depth=16), and those settings; the first group is what the Transfer page shows by default."""
    mine = [r for r in results if str(r.group.get(S.P_PARAMETERIZATION)) == param]
    keys = differing_keys(mine)
    return sorted(mine, key=lambda r: data.group_order(r.group, keys)), keys


def pow2(value: float | None) -> str:
    """A hyperparameter as a power of two (``2^-7``, ``2^-7.5``), the unit sweeps are written in."""
    if value is None or not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
        return "–"
    k = math.log2(value)
    return f"2^{round(k)}" if abs(k - round(k)) < 0.05 else f"2^{k:.1f}"


def build(result: AxisTransfer, opt: pl.DataFrame, prep: pl.DataFrame, *, every_run: bool = True) -> GroupView:
    """Chart frames for one axis group: mean curves and optima from the optimum table, the seed band
    (analysis.optimum.loss_band: lowest to highest loss per grid value and scale), run points and diverged markers
    from the classified runs, per-scale optima and the fitted law's prediction band.

    With ``every_run=False`` the dots are one run per (scale, hp) cell, the one with the median loss (the lower
    middle for an even count): a choice of which runs to draw, not a new number. Why: at 10k runs a group has ~1000
    ok runs whose dots stack on ~100 cells, and Vega's per-dot work is a sizeable part of the page's draw time.
    Diverged runs are always one triangle per cell: they sit at the same spot on the top edge, so only the top one
    was ever visible or hoverable."""
    axis, hp = result.axis, result.hp
    col = f"scale.{axis}"
    rows = data.group_rows(opt, result.group, axis)
    runs = data.group_runs(prep, result.group, axis)
    curves = (rows.select(pl.col(col).alias("scale"), pl.col("grid_log_hp").alias("x"),
                          pl.col("grid_loss").alias("loss"))
              .explode("x", "loss").drop_nulls("x").with_columns(pl.col("x").exp().alias("hp")).drop("x"))
    cell = ["scale", "hp"]
    points = runs.filter(pl.col("status") == "ok").select(
        pl.col(col).alias("scale"), pl.col(hp).cast(pl.Float64).alias("hp"), pl.col("loss"), pl.col("run_id"),
        pl.col("run_name").fill_null(""), data.as_text(runs, S.P_SEED).alias("seed"))
    band = loss_band(runs, hp, [col]).select(pl.col(col).alias("scale"), pl.col("grid_log_hp").exp().alias("hp"),
                                             pl.col("loss_lo").alias("lo"), pl.col("loss_hi").alias("hi"))
    if not every_run:
        points = (points.sort("loss", "run_id").group_by(cell, maintain_order=True)
                  .agg(pl.all().get((pl.len() - 1) // 2)))
    points = points.sort(cell)
    diverged = (runs.filter(pl.col("status") == "diverged").select(
        pl.col(col).alias("scale"), pl.col(hp).cast(pl.Float64).alias("hp"), pl.col("run_id"),
        pl.col("run_name").fill_null(""), pl.col("reason").fill_null(""))
        .sort("run_name", "run_id").group_by(cell, maintain_order=True).agg(pl.all().first()).sort(cell))
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
    return GroupView(result, rows, curves, band, points, optima, diverged, scale_rows, law, every_run)


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


def loss_chart(view: GroupView, **kw: Any) -> alt.LayerChart:
    """charts.transfer_chart of a view (keyword arguments pass through: title, pick, height …)."""
    res = view.result
    return charts.transfer_chart(view.curves, view.band, view.points, view.optima, view.diverged, hp=res.hp,
                                 axis=res.axis, **kw)


@dataclass
class Panel:
    """What the Transfer page draws for one group: the view, both chart specs, the table and the sentences.
    ``sources`` holds the analysis objects it was built from (see ``transfer_panel``)."""

    view: GroupView
    transfer_spec: dict[str, Any]
    optimum_spec: dict[str, Any]
    table: pl.DataFrame
    verdict: str
    warnings: list[str]
    sources: tuple[Any, ...]


def transfer_panel(result: AxisTransfer, opt: pl.DataFrame, prep: pl.DataFrame, *, every_run: bool) -> Panel:
    """The Transfer page's charts, table and sentences for one group, built once per (result, opt, prep,
    every_run).

    The three are cached analysis objects (app.data), so their identities stand for the store state and the
    group: the cache is keyed by ``id()`` of each, and the entry holds the objects themselves, so no other object
    can take one of those ids while the entry lives. A new run gives new objects and so a new entry."""
    return _transfer_panel((id(result), id(opt), id(prep), every_run), result, opt, prep)


@st.cache_resource(max_entries=32, show_spinner=False)
def _transfer_panel(key: tuple[Any, ...], _result: AxisTransfer, _opt: pl.DataFrame, _prep: pl.DataFrame) -> Panel:
    view = build(_result, _opt, _prep, every_run=key[-1])
    right = charts.optimum_scale_chart(view.scale_rows, view.law, hp=_result.hp, axis=_result.axis)
    return Panel(view, charts.vega_spec(loss_chart(view)), charts.vega_spec(right), scale_table(view),
                 verdict_text(_result), warnings(view), (_result, _opt, _prep))


@dataclass
class ComparePanel:
    """What the Compare page draws for its groups (one per parameterization), built once like ``Panel``."""

    views: list[GroupView]
    picks: list[str]
    transfer_spec: dict[str, Any]
    optimum_spec: dict[str, Any]
    sources: tuple[Any, ...]


def compare_panel(results: list[AxisTransfer], opt: pl.DataFrame, prep: pl.DataFrame, *,
                  every_run: bool) -> ComparePanel:
    """The Compare page's side-by-side transfer plots (one selection ``pick<i>`` per panel) and the joint
    optimum-against-scale plot, cached by the identities of ``results``, ``opt`` and ``prep`` as in
    ``transfer_panel``."""
    return _compare_panel(tuple(id(r) for r in results) + (id(opt), id(prep), every_run), results, opt, prep)


@st.cache_resource(max_entries=16, show_spinner=False)
def _compare_panel(key: tuple[Any, ...], _results: list[AxisTransfer], _opt: pl.DataFrame,
                   _prep: pl.DataFrame) -> ComparePanel:
    views = [build(r, _opt, _prep, every_run=key[-1]) for r in _results]
    picks = [f"{charts.PICK}{i}" for i in range(len(views))]  # one selection per panel: click a dot in any of them
    names = [str(v.result.group.get(S.P_PARAMETERIZATION)) for v in views]
    panels = [loss_chart(v, pick=pick, title=name, height=320) for v, pick, name in zip(views, picks, names,
                                                                                        strict=True)]
    left = alt.hconcat(*panels).resolve_scale(x="shared", y="shared", color="shared")
    scale_rows = pl.concat([v.scale_rows.with_columns(pl.lit(n).alias("param")) for v, n in zip(views, names,
                                                                                                 strict=True)],
                           how="vertical_relaxed")
    laws = pl.concat([v.law.with_columns(pl.lit(n).alias("param")) for v, n in zip(views, names, strict=True)],
                     how="vertical_relaxed")
    right = charts.optimum_scale_chart(scale_rows, laws, hp=_results[0].hp, axis=_results[0].axis,
                                       color_field="param")
    return ComparePanel(views, picks, charts.vega_spec(left), charts.vega_spec(right), (tuple(_results), _opt, _prep))
