"""Compare: parameterizations (SP / μP / CompleteP …) side by side on shared axes, and their numbers in one table:
slope of the optimum, worst realised penalty, best loss at the largest scale, asymptotic penalty R(∞) vs μP."""

from __future__ import annotations

import math

import polars as pl
import streamlit as st

from analysis.summary import swept_hps, varied_axes
from analysis.transfer import DEFAULT_TAU, best_loss, differing_keys
from app import common, data, state
from app import transfer_view as tv
from trainer import schema as S

uri = data.tracking_uri()
st.title("Compare parameterizations")
c_exp, c_axis, c_hp, c_obj = st.columns([3, 2, 2, 3])
exp = common.pick_experiment(uri, container=c_exp)
objective, prep = common.prepared_or_stop(uri, exp, container=c_obj)
axes = varied_axes(prep)
if not axes:
    common.stop(common.md(f"No scale axis varies in {exp!r}; nothing to compare along."))
axis, _ = state.url_select("Scale axis", axes, "axis", container=c_axis)
hps = swept_hps(prep)
if not hps:
    common.stop(common.md(f"{exp!r} sweeps no hyperparameter."))
hp, _ = state.url_select("Hyperparameter", hps, "hp", container=c_hp)
tau = DEFAULT_TAU
results = common.guarded(f"fit the optimum of {hp} along {axis}", data.transfers, uri, exp, objective, hp, axis,
                         tau)
if not results:
    common.stop(common.md(f"No group of runs has two or more {axis} values for {hp}."))
others = [k for k in differing_keys(results) if k != S.P_PARAMETERIZATION]
order = {data.group_label({k: r.group.get(k) for k in others}): data.group_order(r.group, others) for r in results}
labels = sorted(order, key=order.__getitem__)
if len(labels) > 1:
    label, _ = state.url_select("Fixed settings", labels, "group")
else:
    label = labels[0]
chosen = [r for r in results if data.group_label({k: r.group.get(k) for k in others}) == label]
chosen.sort(key=lambda r: str(r.group.get(S.P_PARAMETERIZATION)))
if len(chosen) < 2:
    st.info(common.md(f"Only one parameterization ({chosen[0].group.get(S.P_PARAMETERIZATION)}) has runs along "
                      f"{axis} here; the comparison below has one column."))

opt = data.optima(uri, exp, objective, hp)
every, dots = common.every_run([data.group_rows(opt, r.group, axis) for r in chosen], st.container())
panel = common.guarded("prepare the charts", tv.compare_panel, chosen, opt, prep, every_run=every)
views = panel.views
st.caption(f"Loss against {common.md(hp)} per parameterization (shared axes); {dots} (click a dot for that run)")
event = common.chart(panel.transfer_spec, key="compare_chart", picks=panel.picks)
st.caption(f"Optimum against {axis} with each fitted law (hollow = not in the fit)")
common.chart(panel.optimum_spec)


def _pct(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return "diverges" if math.isinf(v) else f"{v:.2%}"


table = []
for v in views:
    res = v.result
    param = str(res.group.get(S.P_PARAMETERIZATION))
    top = v.rows.tail(1).to_dicts()
    rinf = (data.r_inf(uri, exp, objective, hp, axis, param) if param != "mup" and "mup" in
            {str(r.group.get(S.P_PARAMETERIZATION)) for r in chosen} else None)
    table.append({
        "param": param, "verdict": res.verdict,
        "slope": res.fit.slope if res.fit else None,
        "slope 90% CI": f"[{res.fit.slope_ci90[0]:+.3f}, {res.fit.slope_ci90[1]:+.3f}]" if res.fit else "",
        "worst penalty": _pct(res.max_penalty),
        f"best loss at largest {axis}": best_loss(top[0]) if top else None,
        f"largest {axis}": top[0][f"scale.{axis}"] if top else None,
        "R(∞) vs μP": ("reference" if param == "mup" else
                       "no μP runs" if rinf is None else
                       _pct(rinf["R_inf"]) if rinf.get("R_inf") is not None else rinf.get("reason") or ""),
    })
st.dataframe(pl.DataFrame(table), hide_index=True)
st.caption("slope: log2 change of the optimum per doubling (0 = transfers). R(∞): asymptotic relative loss gap to "
           "μP from analysis.transfer.asymptotic_penalty (needs ≥ 4 shared scales).")

picked = next((rid for pick in panel.picks if (rid := common.selected_run_id(event, pick))), None)
if picked:
    state.set_url("run", picked)
run = common.lookup_run(prep, picked or st.query_params.get("run"))
if run is not None:
    common.show_run(uri, run)
