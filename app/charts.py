"""Altair chart builders. They draw numbers the analysis computed (curves, optima, intervals, fits); the only
transform done in a chart is the min–max band over seed replicates of the raw run losses.

Conventions: hyperparameters and scales on log2 axes, labelled ``2^k`` for hyperparameters; loss axes never start
at zero (a transfer plot is about differences of a few per cent); one colour per scale on an ordered (viridis)
scale; diverged runs are triangles pinned to the top edge, since their loss is censored, not a number.
"""

from __future__ import annotations

import altair as alt
import polars as pl

PICK = "pick"  # name of the point-selection parameter that st.altair_chart reports back
POW2 = "'2^' + format(log(datum.value) / LN2, '.2~f')"
SCALE_COLORS = alt.Scale(scheme="viridis")


def _hp_axis(title: str) -> alt.X:
    return alt.X("hp:Q", title=f"{title} (log2)", scale=alt.Scale(type="log", base=2, nice=False),
                 axis=alt.Axis(labelExpr=POW2, tickCount=8))


def _scale_color(axis: str, scales: list[float], legend: bool = True) -> alt.Color:
    return alt.Color("scale:O", title=axis, scale=SCALE_COLORS, sort=sorted(scales),
                     legend=alt.Legend() if legend else None)


def transfer_chart(curves: pl.DataFrame, points: pl.DataFrame, optima: pl.DataFrame, diverged: pl.DataFrame,
                   *, hp: str, axis: str, title: str = "", selectable: bool = True, pick: str = PICK,
                   height: int = 360,
                   legend: bool = True) -> alt.LayerChart:
    """Loss against the hyperparameter, one line per scale.

    ``curves``: scale, hp, loss (the analysis' mean per grid value); ``points``: scale, hp, loss, run_id,
    run_name, seed (ok runs; drawn as dots and as the min–max seed band); ``optima``: scale, opt, loss, lo, hi,
    method (markers with 95 % interval whiskers); ``diverged``: scale, hp, run_id, run_name, reason."""
    scales = sorted(set(curves["scale"].to_list()) | set(diverged["scale"].to_list())) if curves.height or \
        diverged.height else []
    color = _scale_color(axis, scales, legend)
    x = _hp_axis(hp)
    y = alt.Y("loss:Q", title="loss", scale=alt.Scale(zero=False))
    base = alt.Chart(curves.to_pandas())
    line = base.mark_line(strokeWidth=2).encode(x=x, y=y, color=color, tooltip=[
        alt.Tooltip("scale:Q", title=axis), alt.Tooltip("hp:Q", title=hp, format=".4g"),
        alt.Tooltip("loss:Q", title="mean loss", format=".5g")])
    pts = alt.Chart(points.to_pandas())
    band = pts.transform_aggregate(lo="min(loss)", hi="max(loss)", groupby=["scale", "hp"]).mark_area(
        opacity=0.18).encode(x=x, y=alt.Y("lo:Q", scale=alt.Scale(zero=False)), y2="hi:Q", color=color)
    run_tips = [alt.Tooltip("run_name:N", title="run"), alt.Tooltip("scale:Q", title=axis),
                alt.Tooltip("hp:Q", title=hp, format=".4g"), alt.Tooltip("loss:Q", format=".5g"),
                alt.Tooltip("seed:N"), alt.Tooltip("run_id:N")]
    dots = pts.mark_circle(size=40, opacity=0.8).encode(x=x, y=y, color=color, tooltip=run_tips)
    opt = alt.Chart(optima.to_pandas())
    opt_tips = [alt.Tooltip("scale:Q", title=axis), alt.Tooltip("opt:Q", title=f"optimum {hp}", format=".4g"),
                alt.Tooltip("lo:Q", title="95% lo", format=".4g"), alt.Tooltip("hi:Q", title="95% hi", format=".4g"),
                alt.Tooltip("loss:Q", format=".5g"), alt.Tooltip("method:N"), alt.Tooltip("flags:N")]
    whisk = opt.mark_rule(strokeWidth=2).encode(
        x=alt.X("lo:Q", scale=alt.Scale(type="log", base=2, nice=False)), x2="hi:Q", y=y, color=color,
        tooltip=opt_tips)
    marks = opt.mark_point(shape="diamond", size=140, filled=True, stroke="black", strokeWidth=1).encode(
        x=alt.X("opt:Q", scale=alt.Scale(type="log", base=2, nice=False)), y=y, color=color, tooltip=opt_tips)
    # one row of triangles per scale along the top edge, so diverged runs of different scales never hide each other
    stack = alt.YOffset("scale:O", sort=sorted(scales), scale=alt.Scale(range=[0, 9 * max(len(scales) - 1, 0)]))
    div = alt.Chart(diverged.to_pandas()).mark_point(shape="triangle-up", size=60, filled=True, opacity=0.9).encode(
        x=x, y=alt.value(5), yOffset=stack, color=color, tooltip=[alt.Tooltip("run_name:N", title="run (diverged)"),
                                                   alt.Tooltip("scale:Q", title=axis),
                                                   alt.Tooltip("hp:Q", title=hp, format=".4g"),
                                                   alt.Tooltip("reason:N"), alt.Tooltip("run_id:N")])
    if selectable:  # ``pick`` names the selection; panels drawn side by side need distinct names
        dots = dots.add_params(alt.selection_point(name=pick, fields=["run_id"], on="click"))
    chart = alt.layer(band, line, dots, whisk, marks, div).properties(height=height)
    return chart.properties(title=title) if title else chart


def optimum_scale_chart(rows: pl.DataFrame, law: pl.DataFrame, *, hp: str, axis: str,
                        color_field: str | None = None, height: int = 360) -> alt.LayerChart:
    """Optimum against scale with 95 % intervals (hollow: not used in the fit, tooltip says why), and the fitted
    power law with its 95 % prediction band. ``rows``: scale, opt, lo, hi, used, why[, param];
    ``law``: scale, fit, lo, hi[, param]."""
    x = alt.X("scale:Q", title=f"{axis} (log2)", scale=alt.Scale(type="log", base=2, nice=False))
    y = alt.Y("opt:Q", title=f"optimum {hp} (log2)", scale=alt.Scale(type="log", base=2, nice=False),
              axis=alt.Axis(labelExpr=POW2))
    color = (alt.Color(f"{color_field}:N", title=color_field, scale=alt.Scale(scheme="tableau10")) if color_field
             else alt.value("#3b528b"))
    lw = alt.Chart(law.to_pandas())
    band = lw.mark_area(opacity=0.2).encode(x=x, y=alt.Y("lo:Q", scale=alt.Scale(type="log", base=2)), y2="hi:Q",
                                            color=color)
    fit = lw.mark_line(strokeDash=[6, 3]).encode(x=x, y=alt.Y("fit:Q", scale=alt.Scale(type="log", base=2)),
                                                 color=color)
    rw = alt.Chart(rows.to_pandas())
    tips = [alt.Tooltip("scale:Q", title=axis), alt.Tooltip("opt:Q", title="optimum", format=".4g"),
            alt.Tooltip("lo:Q", title="95% lo", format=".4g"), alt.Tooltip("hi:Q", title="95% hi", format=".4g"),
            alt.Tooltip("used:N", title="in fit"), alt.Tooltip("why:N", title="excluded because")]
    if color_field:
        tips.insert(0, alt.Tooltip(f"{color_field}:N"))
    err = rw.mark_rule(strokeWidth=2).encode(x=x, y=alt.Y("lo:Q", scale=alt.Scale(type="log", base=2)), y2="hi:Q",
                                             color=color, tooltip=tips)
    pts = rw.mark_point(size=90, strokeWidth=2).encode(
        x=x, y=y, color=color, tooltip=tips,
        fill=alt.condition("datum.used", color if color_field else alt.value("#3b528b"), alt.value("white")))
    return alt.layer(band, fit, err, pts).properties(height=height)


def history_chart(hist: pl.DataFrame) -> alt.Chart:
    """Training curves of one run: loss against step, one line per metric (NaN/inf steps are dropped by Vega)."""
    df = hist.filter(pl.col("value").is_finite())
    return alt.Chart(df.to_pandas()).mark_line(point=True).encode(
        x=alt.X("step:Q"), y=alt.Y("value:Q", title="loss", scale=alt.Scale(zero=False)),
        color=alt.Color("key:N", title="metric"),
        tooltip=["key:N", "step:Q", alt.Tooltip("value:Q", format=".5g")]).properties(height=280)


def coord_chart(df: pl.DataFrame, *, axis: str, quantity: str) -> alt.FacetChart:
    """Activation size against width or depth, one line per module, one panel per parameterization.
    ``df``: param, value (the axis value), module, size."""
    base = alt.Chart(df.to_pandas()).encode(
        x=alt.X("value:Q", title=f"{axis} (log2)", scale=alt.Scale(type="log", base=2, nice=False)),
        y=alt.Y("size:Q", title=f"mean |{quantity}| (log)", scale=alt.Scale(type="log")),
        color=alt.Color("module:N"),
        tooltip=["param:N", alt.Tooltip("value:Q", title=axis), "module:N", alt.Tooltip("size:Q", format=".4g")])
    return alt.layer(base.mark_line(), base.mark_point(filled=True)).properties(width=320, height=300).facet(
        column=alt.Column("param:N", title="parameterization"))
