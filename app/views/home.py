"""Overview: which store is open, what it holds, and where to go next."""

from __future__ import annotations

import streamlit as st

from app import common, data

uri = data.tracking_uri()
st.title("Hyperparameter transfer")
st.caption("Tune a small proxy, check that the optimum transfers, hand the big run its settings.")
names = common.guarded("open the tracking store", data.experiments, uri)
if not names:
    common.stop(f"No experiments in the store {common.md(uri)} yet. Run `python -m trainer sweep "
                "examples/tiny_sweep.yaml`, or import an external sweep with `python -m analysis import`, then "
                "press *Reload the store* in the sidebar.")
summary = common.guarded("summarise the sweeps", data.sweep_summary, uri)
c1, c2, c3 = st.columns(3)
c1.metric("Experiments", len(names))
c2.metric("Runs", int(summary["runs"].sum()))
c3.metric("Diverged", int(summary["diverged"].sum()))
st.markdown(
    "- **Sweeps**: every experiment and sweep with run counts and coverage.\n"
    "- **Transfer**: loss against a hyperparameter per scale, the optimum against scale and the verdict.\n"
    "- **Compare**: SP / μP / CompleteP side by side.\n"
    "- **Runs**: filter runs, open one for its curves and per-group settings.\n"
    "- **Coord check**: activation size against width or depth.\n"
    "- **Export**: the recommendation JSON for a target scale (same as `python -m analysis recommend`).")
st.page_link("views/sweeps.py", label="Open the sweeps table", icon=":material/table_rows:")
