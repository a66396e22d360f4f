"""Runs: a filterable table of classified runs; selecting a row shows its curves and per-group settings."""

from __future__ import annotations

import polars as pl
import streamlit as st

from analysis.classify import STATUSES
from analysis.summary import swept_hps, varied_axes
from app import common, data, state
from trainer import schema as S

uri = data.tracking_uri()
st.title("Runs")
c_exp, c_obj = st.columns([3, 2])
exp = common.pick_experiment(uri, container=c_exp)
raw = common.guarded(f"load experiment {exp!r}", data.runs, uri, exp)
if raw.is_empty():
    common.stop(common.md(f"Experiment {exp!r} has no runs yet."))
objective, _ = state.url_select("Objective", data.objectives(uri, exp), "objective", container=c_obj)
prep = common.guarded("classify the runs", data.prepared, uri, exp, objective)
if prep.is_empty():
    common.stop(common.md(f"{exp!r} holds only sweep parents or coordinate checks (see the Coord check page)."))

f1, f2, f3 = st.columns([2, 2, 3])
statuses = [s for s in STATUSES if s in set(prep["status"].to_list())]
chosen_status = state.url_multiselect("Status", statuses, "status", container=f1, help="empty = all")
params = sorted(str(p) for p in prep[S.P_PARAMETERIZATION].drop_nulls().unique()) \
    if S.P_PARAMETERIZATION in prep.columns else []
chosen_params = state.url_multiselect("Parameterization", params, "param", container=f2, help="empty = all")
query = state.url_text("Search run name or id", "q", container=f3, placeholder="e.g. width=128")

view = prep
if chosen_status:
    view = view.filter(pl.col("status").is_in(chosen_status))
if chosen_params:
    view = view.filter(pl.col(S.P_PARAMETERIZATION).cast(pl.Utf8).is_in(chosen_params))
if query:
    view = view.filter(pl.col("run_name").fill_null("").str.contains(query, literal=True)
                       | pl.col("run_id").str.contains(query, literal=True))
scale_cols = [f"scale.{a}" for a in varied_axes(prep)]
hp_cols = swept_hps(prep)
cols = ["run_name", "status", "loss", objective, *[c for c in (S.P_PARAMETERIZATION,) if c in view.columns],
        *scale_cols, *hp_cols, S.P_SEED, "reason", S.T_SOURCE, "run_id"]
cols = list(dict.fromkeys(c for c in cols if c in view.columns))
st.caption(f"{view.height} of {prep.height} runs · loss = {objective} for ok runs (censored otherwise)")
if view.is_empty():
    common.stop("No run matches these filters.")
event = st.dataframe(view.select(cols), hide_index=True, key="runs_table", on_select="rerun",
                     selection_mode="single-row", height=380)
rows = event.selection.rows if event is not None else []
if rows:
    picked = view["run_id"][rows[0]]
    state.set_url("run", picked)
else:
    picked = st.query_params.get("run")
run = common.lookup_run(prep, picked)
if run is not None:
    common.show_run(uri, run)
else:
    st.caption("Select a row to see the run's training curves and effective per-group settings.")
