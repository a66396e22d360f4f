"""Dashboard entry point: the page router (st.navigation) and the frame shared by every page.

Run with ``./scripts/dashboard.sh`` (= ``python -m app.launch [--tracking-uri URI]``, which warms the caches and
then runs ``streamlit run app/Home.py … -- --tracking-uri URI``). The tracking store is ``--tracking-uri`` after
``--``, else $MLFLOW_TRACKING_URI, else the shipped ``mlruns/`` store. Pages live
in app/views/ (not app/pages/, which Streamlit would also turn into pages on its own).
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import streamlit as st

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:  # `streamlit run app/Home.py` puts app/ on the path, not the repo root
    sys.path.insert(0, str(_ROOT))

from app import common, data, transfer_view  # noqa: E402, F401 - every module the pages use, imported before the freeze

# Streamlit runs gc.collect(2) after every script run, holding the GIL, so the server cannot send the finished page
# meanwhile; with the ~140k objects that importing altair, scipy, polars and streamlit leaves, that is ~0.12 s per
# run on 2 cores. Those objects live as long as the process, so they are moved out of the collector's view, once.
if not gc.get_freeze_count():
    gc.freeze()

VIEWS = Path(__file__).resolve().parent / "views"
PAGES = [
    st.Page(VIEWS / "home.py", title="Overview", icon=":material/home:", default=True),
    st.Page(VIEWS / "sweeps.py", title="Sweeps", icon=":material/table_rows:", url_path="sweeps"),
    st.Page(VIEWS / "transfer.py", title="Transfer", icon=":material/trending_flat:", url_path="transfer"),
    st.Page(VIEWS / "compare.py", title="Compare", icon=":material/compare_arrows:", url_path="compare"),
    st.Page(VIEWS / "runs.py", title="Runs", icon=":material/list:", url_path="runs"),
    st.Page(VIEWS / "coord_check.py", title="Coord check", icon=":material/straighten:", url_path="coord-check"),
    st.Page(VIEWS / "export.py", title="Export", icon=":material/download:", url_path="export"),
]

st.set_page_config(page_title="Hyperparameter transfer", layout="wide")
page = st.navigation(PAGES)
st.sidebar.caption("Tracking store")
# st.text, not st.code: a code block loads Streamlit's syntax highlighter, ~0.5 s of browser time on every page open
st.sidebar.text(data.tracking_uri())
st.sidebar.caption("Widget choices are kept in the URL: copy the address to share this view.")
if st.sidebar.button("Reload the store", help="clear the dashboard's caches (they also refresh on any new run)"):
    st.cache_resource.clear()
page.run()
