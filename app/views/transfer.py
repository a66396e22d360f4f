"""Transfer: does the optimum of one hyperparameter stay put along one scale axis?

Left: loss against the hyperparameter, one line per scale, seed band, optimum with its 95 % interval, diverged
runs on top. Right: the optimum against scale with the fitted power law and its prediction band. Above: the
verdict (analysis.transfer.axis_transfer) in words and numbers; below: per-scale numbers and the clicked run.
"""

from __future__ import annotations

import streamlit as st

from analysis.summary import swept_hps, varied_axes
from app import common, data, state
from app import transfer_view as tv
from trainer import schema as S

uri = data.tracking_uri()
st.title("Transfer")
c_exp, c_axis, c_hp, c_param, c_obj, c_tau = st.columns([3, 2, 2, 2, 3, 2])
exp = common.pick_experiment(uri, container=c_exp)
objective, prep = common.prepared_or_stop(uri, exp, container=c_obj)
axes = varied_axes(prep)
if not axes:
    common.stop(common.md(f"No scale axis varies in {exp!r} (each of {', '.join(S.AXES)} has at most one value), "
                          "so there is nothing to transfer along."))
axis, _ = state.url_select("Scale axis", axes, "axis", container=c_axis)
hps = swept_hps(prep)
if not hps:
    common.stop(common.md(f"{exp!r} sweeps no hyperparameter (hp.lr or a mult.* multiplier)."))
hp, _ = state.url_select("Hyperparameter", hps, "hp", container=c_hp)
tau = common.pick_tau(c_tau)
results = common.guarded(f"fit the optimum of {hp} along {axis}", data.transfers, uri, exp, objective, hp, axis,
                         tau)
if not results:
    common.stop(common.md(f"No group of runs has two or more {axis} values for {hp}."))
param, _ = state.url_select("Parameterization", tv.parameterizations(results), "param", container=c_param)
mine, keys = tv.param_groups(results, param)
if len(mine) > 1:
    labels = [data.group_label({k: r.group.get(k) for k in keys}) for r in mine]
    label, _ = state.url_select("Fixed settings", labels, "group")
    result = mine[labels.index(label)]
else:
    result = mine[0]

opt = data.optima(uri, exp, objective, hp)
head = st.container()  # verdict and warnings, written once the panel is built
left, right = st.columns([3, 2])
every, dots = common.every_run([data.group_rows(opt, result.group, axis)], left)
panel = common.guarded("prepare the charts", tv.transfer_panel, result, opt, prep, every_run=every)
with head:
    {"holds": st.success, "fails": st.error}.get(result.verdict, st.warning)(common.md(panel.verdict))
    if result.reasons:
        st.caption(common.md("; ".join(result.reasons)))
    for line in panel.warnings:
        st.warning(common.md(line))
with left:
    st.caption(f"Loss against {common.md(hp)}; {dots} (click a dot for its curves); ▲ diverged")
    event = common.chart(panel.transfer_spec, key="transfer_chart")
with right:
    st.caption(f"Optimum against {axis}: hollow = not in the fit; dashed = fitted law, band = 95 % prediction")
    common.chart(panel.optimum_spec)
st.markdown(common.table_md(panel.table))

picked = common.selected_run_id(event)
if picked:
    state.set_url("run", picked)
run = common.lookup_run(prep, picked or st.query_params.get("run"))
if run is not None:
    common.show_run(uri, run)
