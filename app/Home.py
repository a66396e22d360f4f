"""Dashboard entry point: the page router (st.navigation) and the frame shared by every page.

Run with ``./scripts/dashboard.sh`` (= ``streamlit run app/Home.py … -- [--tracking-uri URI]``). The tracking
store is ``--tracking-uri`` after ``--``, else $MLFLOW_TRACKING_URI, else the shipped ``mlruns/`` store. Pages live
in app/views/ (not app/pages/, which Streamlit would also turn into pages on its own).
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:  # `streamlit run app/Home.py` puts app/ on the path, not the repo root
    sys.path.insert(0, str(_ROOT))

from app import data  # noqa: E402

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
st.sidebar.code(data.tracking_uri(), language=None, wrap_lines=True)
st.sidebar.caption("Widget choices are kept in the URL: copy the address to share this view.")
if st.sidebar.button("Reload the store", help="clear the dashboard's caches (they also refresh on any new run)"):
    st.cache_resource.clear()
page.run()
