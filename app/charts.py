"""Altair chart builders. They draw numbers the analysis computed (curves, seed bands, optima, intervals, fits) and
raw run losses, so no chart transforms its data in the browser.

Conventions: hyperparameters and scales on log2 axes, labelled ``2^k`` for hyperparameters; loss axes never start
at zero (a transfer plot is about differences of a few per cent); one colour per scale on an ordered (viridis)
scale; diverged runs are triangles pinned to the top edge, since their loss is censored, not a number.

``vega_spec`` turns a chart into the Vega-Lite spec ``st.vega_lite_chart`` draws, once, so that a page can cache it
(see its docstring for why).
"""

from __future__ import annotations

from typing import Any

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


def transfer_chart(curves: pl.DataFrame, band: pl.DataFrame, points: pl.DataFrame, optima: pl.DataFrame,
                   diverged: pl.DataFrame, *, hp: str, axis: str, title: str = "", selectable: bool = True,
                   pick: str = PICK, height: int = 360, legend: bool = True) -> alt.LayerChart:
    """Loss against the hyperparameter, one line per scale.

    ``curves``: scale, hp, loss (the analysis' mean per grid value); ``band``: scale, hp, lo, hi (lowest and
    highest loss over the seeds of each cell, analysis.optimum.loss_band); ``points``: scale, hp, loss, run_id,
    run_name, seed (ok runs: every one, or one per cell); ``optima``: scale, opt, loss, lo, hi, method (markers
    with 95 % interval whiskers); ``diverged``: scale, hp, run_id, run_name, reason."""
    scales = sorted(set(curves["scale"].to_list()) | set(diverged["scale"].to_list())) if curves.height or \
        diverged.height else []
    color = _scale_color(axis, scales, legend)
    x = _hp_axis(hp)
    y = alt.Y("loss:Q", title="loss", scale=alt.Scale(zero=False))
    base = alt.Chart(curves)
    line = base.mark_line(strokeWidth=2).encode(x=x, y=y, color=color, tooltip=[
        alt.Tooltip("scale:Q", title=axis), alt.Tooltip("hp:Q", title=hp, format=".4g"),
        alt.Tooltip("loss:Q", title="mean loss", format=".5g")])
    spread = alt.Chart(band).mark_area(opacity=0.18).encode(
        x=x, y=alt.Y("lo:Q", scale=alt.Scale(zero=False)), y2="hi:Q", color=color)
    run_tips = [alt.Tooltip("run_name:N", title="run"), alt.Tooltip("scale:Q", title=axis),
                alt.Tooltip("hp:Q", title=hp, format=".4g"), alt.Tooltip("loss:Q", format=".5g"),
                alt.Tooltip("seed:N"), alt.Tooltip("run_id:N")]
    # aria=False on the per-run layers: Vega-Lite would otherwise format a screen-reader sentence for each of
    # thousands of runs on every draw (the tooltip carries the same values on demand)
    dots = alt.Chart(points).mark_circle(size=40, opacity=0.8, aria=False).encode(
        x=x, y=y, color=color, tooltip=run_tips)
    opt = alt.Chart(optima)
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
    div = alt.Chart(diverged).mark_point(shape="triangle-up", size=60, filled=True, opacity=0.9).encode(
        x=x, y=alt.value(5), yOffset=stack, color=color, tooltip=[alt.Tooltip("run_name:N", title="run (diverged)"),
                                                   alt.Tooltip("scale:Q", title=axis),
                                                   alt.Tooltip("hp:Q", title=hp, format=".4g"),
                                                   alt.Tooltip("reason:N"), alt.Tooltip("run_id:N")])
    if selectable:  # ``pick`` names the selection; panels drawn side by side need distinct names
        dots = dots.add_params(alt.selection_point(name=pick, fields=["run_id"], on="click"))
    chart = alt.layer(spread, line, dots, whisk, marks, div).properties(height=height)
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
    lw = alt.Chart(law)
    band = lw.mark_area(opacity=0.2).encode(x=x, y=alt.Y("lo:Q", scale=alt.Scale(type="log", base=2)), y2="hi:Q",
                                            color=color)
    fit = lw.mark_line(strokeDash=[6, 3]).encode(x=x, y=alt.Y("fit:Q", scale=alt.Scale(type="log", base=2)),
                                                 color=color)
    rw = alt.Chart(rows)
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
    return alt.Chart(df).mark_line(point=True).encode(
        x=alt.X("step:Q"), y=alt.Y("value:Q", title="loss", scale=alt.Scale(zero=False)),
        color=alt.Color("key:N", title="metric"),
        tooltip=["key:N", "step:Q", alt.Tooltip("value:Q", format=".5g")]).properties(height=280)


def coord_chart(df: pl.DataFrame, *, axis: str, quantity: str) -> alt.FacetChart:
    """Activation size against width or depth, one line per module, one panel per parameterization.
    ``df``: param, value (the axis value), module, size."""
    base = alt.Chart(df).encode(
        x=alt.X("value:Q", title=f"{axis} (log2)", scale=alt.Scale(type="log", base=2, nice=False)),
        y=alt.Y("size:Q", title=f"mean |{quantity}| (log)", scale=alt.Scale(type="log")),
        color=alt.Color("module:N"),
        tooltip=["param:N", alt.Tooltip("value:Q", title=axis), "module:N", alt.Tooltip("size:Q", format=".4g")])
    return alt.layer(base.mark_line(), base.mark_point(filled=True)).properties(width=320, height=300).facet(
        column=alt.Column("param:N", title="parameterization"))


def vega_spec(chart: alt.TopLevelMixin) -> dict[str, Any]:
    """``chart`` as a Vega-Lite spec for ``st.vega_lite_chart``, each named dataset a polars frame.

    Why: ``st.altair_chart`` rebuilds and re-validates the whole spec and converts every data frame to Arrow through
    pandas on each rerun, which was most of the Transfer page's rerun at 10k runs. A page that caches this spec pays
    that once; Streamlit then only copies the polars frames to Arrow. Altair's own theme (a 300 px default view) is
    left out, as ``st.altair_chart`` leaves it out, so both draw the same chart."""
    spec = chart.to_dict()
    config = spec.get("config", {})
    view = config.get("view", {})
    for key, value in alt.theme.get()().get("config", {}).get("view", {}).items():
        if view.get(key) == value:
            del view[key]
    if "view" in config and not view:
        del config["view"]
    if "config" in spec and not config:
        del spec["config"]
    spec["datasets"] = {name: pl.DataFrame(rows, infer_schema_length=None)
                        for name, rows in spec.get("datasets", {}).items()}
    return spec
