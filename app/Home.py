"""Dashboard entry page: which store is open and which experiments it holds.

The full dashboard (Sweeps, Transfer, Compare, Runs, Coord check, Export) is built on analysis/; this page only shows
what the loader returns. Tracking URI: ``-- --tracking-uri URI`` after ``streamlit run``, else $MLFLOW_TRACKING_URI,
else the shipped ``mlruns/`` store.
"""

from __future__ import annotations

import argparse
import os
import sys

import streamlit as st

from analysis.load import default_tracking_uri, list_experiments, load_runs


def tracking_uri() -> str:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--tracking-uri", default=None)
    args, _ = parser.parse_known_args(sys.argv[1:])
    return args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


st.set_page_config(page_title="Hyperparameter transfer", layout="wide")
st.title("Hyperparameter transfer")
uri = tracking_uri()
st.caption(f"Tracking store: `{uri}`")
try:
    experiments = list_experiments(uri)
except Exception as exc:  # an unreadable store is a message, not a traceback
    st.error(f"Could not open the tracking store {uri}: {exc}")
    st.stop()
if not experiments:
    st.info("This store has no experiments yet. Run `python -m trainer sweep examples/tiny_sweep.yaml` to make one.")
    st.stop()
rows = []
for name in experiments:
    runs = load_runs(uri, name)
    rows.append({"experiment": name, "runs": runs.height})
st.dataframe(rows, hide_index=True)
