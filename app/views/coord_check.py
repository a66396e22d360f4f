"""Coord check: activation size (or its change since step 0) against width or depth, per module and step, from
the runs ``python -m trainer coord-check --experiment NAME`` logs (run.kind=coord_check). Flat lines mean the
parameterization keeps activations stable as the model grows; SP's grow with width."""

from __future__ import annotations

import math

import polars as pl
import streamlit as st

from app import charts, common, data, state
from trainer import coord_stats as cc
from trainer import schema as S

uri = data.tracking_uri()
st.title("Coordinate check")
everything = common.guarded("load the store", data.runs, uri, None) if data.experiments(uri) else pl.DataFrame()
coord = everything.filter(data.is_coord(everything)) if everything.height else everything
if coord.is_empty():
    common.stop("No coordinate-check runs in this store. Make some with `python -m trainer coord-check "
                "--values 64,128,256 --param sp,mup --experiment coord`.")
exps = sorted(coord["experiment"].unique().to_list())
c_exp, c_axis, c_q = st.columns([3, 2, 2])
exp = common.pick_experiment(uri, container=c_exp, only=exps)
runs = coord.filter(pl.col("experiment") == exp)
axis_values = sorted(runs["coord.axis"].drop_nulls().unique().to_list()) if "coord.axis" in runs.columns else []
if not axis_values:
    common.stop(common.md(f"The coordinate-check runs of {exp!r} do not say which axis they vary (param coord.axis)."))
axis, _ = state.url_select("Axis", axis_values, "axis", container=c_axis)
quantity, _ = state.url_select("Quantity", ["delta", "act"], "quantity", container=c_q,
                               format_func=lambda q: {"delta": "|x_t − x_0| (change)", "act": "|x_t| (size)"}[q])
runs = runs.filter(pl.col("coord.axis") == axis)
col = S.AXES[axis]
present = [m for m in cc.MODULES if f"{S.COORD_PREFIX}{m}.{quantity}" in runs.columns]
if not present or col not in runs.columns:
    common.stop(common.md(f"These runs logged no {S.COORD_PREFIX}<module>.{quantity} metric or no {col} param."))
modules = state.url_multiselect("Modules", present, "module", default=present)
if not modules:
    common.stop("Pick at least one module.")
hist = data.history(uri, runs["run_id"].to_list(), [f"{S.COORD_PREFIX}{m}.{quantity}" for m in modules])
if hist.is_empty():
    common.stop("The coordinate-check runs have no metric history.")
steps = sorted(hist["step"].unique().to_list())
step = state.url_slider("Step", steps, "step", default=steps[-1])
meta = runs.select("run_id", pl.col(S.P_PARAMETERIZATION).cast(pl.Utf8).alias("param"),
                   pl.col(col).cast(pl.Float64).alias("axis_value"))
frame = hist.filter(pl.col("step") == step).join(meta, on="run_id").select(
    "param", pl.col("axis_value").alias("value"),
    pl.col("key").str.slice(len(S.COORD_PREFIX)).str.replace(rf"\.{quantity}$", "").alias("module"),
    pl.col("value").alias("size"))
common.chart(charts.coord_chart(frame, axis=axis, quantity=quantity))
rows = [{"param": r["param"], "axis": axis, "value": r["value"], "module": r["module"], "step": step,
         quantity: r["size"]} for r in frame.iter_rows(named=True)]
table = [{"module": m, **{p: cc.growth_exponent(rows, p, m, step, key=quantity)
                          for p in sorted(frame["param"].unique().to_list())}} for m in modules]
st.caption(f"Slope of log |{quantity}| against log {axis} at step {step} (trainer.coord_stats.growth_exponent): "
           "≈ 0 is flat, ≈ 1 grows linearly")
st.dataframe(pl.DataFrame(table).with_columns(pl.exclude("module").map_elements(
    lambda v: None if v is None or math.isnan(v) else round(v, 3), return_dtype=pl.Float64)), hide_index=True)
