"""Sweeps: every experiment and sweep in the store with run counts by class (analysis.classify), the
parameterizations, axes and hyperparameters it covers, and when it last changed; filter and search."""

from __future__ import annotations

import polars as pl
import streamlit as st

from app import common, data, state

uri = data.tracking_uri()
st.title("Sweeps")
names = common.guarded("open the tracking store", data.experiments, uri)
if not names:
    common.stop(f"No experiments in the store {common.md(uri)}. Make one with `python -m trainer sweep "
                "examples/tiny_sweep.yaml`, or import one with `python -m analysis import`.")
table = common.guarded("summarise the sweeps", data.sweep_summary, uri)
c1, c2, c3 = st.columns([3, 2, 2])
query = state.url_text("Search experiment or sweep", "q", container=c1, placeholder="name contains …")
params = sorted({p.strip() for v in table["params"].drop_nulls().to_list() for p in v.split(",") if p.strip()})
chosen = state.url_multiselect("Parameterization", params, "param", container=c2, help="empty = all")
problems = state.url_checkbox("Only sweeps with failed or running runs", "problems", container=c3)
view = table
if query:
    q = query.lower()
    view = view.filter(pl.col("experiment").str.to_lowercase().str.contains(q, literal=True)
                       | pl.col("sweep").str.to_lowercase().str.contains(q, literal=True))
if chosen:
    view = view.filter(pl.any_horizontal([pl.col("params").fill_null("").str.contains(p, literal=True)
                                          for p in chosen]))
if problems:
    view = view.filter((pl.col("failed") + pl.col("running")) > 0)
st.caption(f"{view.height} of {table.height} sweeps · counts are analysis classes (other = truncated, duplicate, "
           "invalid); imported sweeps show their source as import:<name>")
if view.is_empty():
    st.info("No sweep matches these filters.")
else:
    st.dataframe(view, hide_index=True, column_config={
        "last update": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
        "ok": st.column_config.NumberColumn(help="finished, loss usable"),
        "diverged": st.column_config.NumberColumn(help="NaN/inf, blow-up or no progress (censored)"),
    })
