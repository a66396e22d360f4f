"""Export: hyperparameters for a target scale (analysis.recommend), previewed and downloadable as the same
schema-validated JSON that ``python -m analysis recommend … --out rec.json`` writes."""

from __future__ import annotations

import json

import polars as pl
import streamlit as st

from analysis.recommend import RecommendationError
from analysis.summary import varied_axes
from app import common, data, state
from app import transfer_view as tv
from trainer import schema as S

uri = data.tracking_uri()
st.title("Export a recommendation")
c_exp, c_param, c_obj = st.columns([3, 2, 3])
exp = common.pick_experiment(uri, container=c_exp)
objective, prep = common.prepared_or_stop(uri, exp, container=c_obj)
params = sorted(str(p) for p in prep[S.P_PARAMETERIZATION].drop_nulls().unique()) \
    if S.P_PARAMETERIZATION in prep.columns else []
param = state.url_select("Parameterization", params, "param", container=c_param)[0] if params else None
axes = varied_axes(prep)
if not axes:
    common.stop(common.md(f"No scale axis varies in {exp!r}: a recommendation would only repeat the best run."))
st.subheader("Target scale")
target = {}
for col, axis in zip(st.columns(len(axes)), axes, strict=True):
    tested = prep[f"scale.{axis}"].drop_nulls()
    target[axis] = state.url_number(f"{axis} (tested {tested.min():g}–{tested.max():g})", f"target_{axis}",
                                    default=float(tested.max()), min_value=1e-12, container=col)
tau = common.pick_tau()
try:
    doc = data.recommendation(uri, exp, objective, param, target, tau)
except RecommendationError as exc:
    common.stop(common.md(f"No recommendation: {exc}"), "warning")
except Exception as exc:  # bad data must read as a message, not a traceback
    common.stop(common.md(f"Could not compute the recommendation: {type(exc).__name__}: {exc}"), "warning")

text = json.dumps(doc, indent=2, allow_nan=False) + "\n"  # exactly what analysis.recommend.write_recommendation writes
ref = doc.get("reference") or {}
st.markdown(common.md(f"Reference: {', '.join(f'{k}={v:g}' for k, v in (ref.get('scale') or {}).items())}, best run "
                      f"{ref.get('run_id')} (loss {ref.get('loss')}); expected penalty "
                      f"{doc['expected_penalty']:.3%}" if doc.get("expected_penalty") is not None else
                      f"Reference run {ref.get('run_id')}"))
hps = pl.DataFrame([{
    "name": h["name"], "value": h["value"], "as 2^k": tv.pow2(h["value"]),
    "68% interval": f"[{h['interval68'][0]:.3g}, {h['interval68'][1]:.3g}]",
    "95% interval": f"[{h['interval95'][0]:.3g}, {h['interval95'][1]:.3g}]",
    "route": h["route"], "conservative": h["conservative"], "expected penalty": h["expected_penalty"],
    "flags": ", ".join(h["flags"])} for h in doc["hyperparameters"]])
st.dataframe(hps, hide_index=True)
for note in doc.get("notes") or []:
    st.info(common.md(note))
st.download_button("Download recommendation JSON", text, file_name=f"recommendation-{exp}-{param or 'all'}.json",
                   mime="application/json", key="download", on_click="ignore", type="primary")
with st.expander("config_overrides (for `python -m trainer train --hparams rec.json`)"):
    st.json(doc["config_overrides"])
if doc.get("effective_groups"):
    with st.expander("Effective per-group settings at the target"):
        st.dataframe(pl.DataFrame(doc["effective_groups"]), hide_index=True)
with st.expander("Full JSON"):
    st.code(text, language="json")
