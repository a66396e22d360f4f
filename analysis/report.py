"""The whole pipeline in one call (load → classify → optima → axis verdicts), and its text/JSON rendering.

``analyze`` is what the CLI and the dashboard call; it returns every intermediate table, so the dashboard can
show the curves and flags behind each verdict without recomputing anything.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from analysis.classify import STATUSES, default_objective, hp_columns, prepare_runs
from analysis.optimum import optimum_table
from analysis.recommend import _finite
from analysis.scaling_law import ScalingLaw, fit_lr_law
from analysis.transfer import (
    AXES,
    DEFAULT_TAU,
    AxisTransfer,
    asymptotic_penalty,
    axis_transfer,
    differing_keys,
    verdict_frame,
)
from trainer import schema as S


@dataclass
class Analysis:
    """``prepared``: classified runs; ``optima``: hp -> optimum table; ``transfers``: every AxisTransfer;
    ``verdicts``: their table; ``laws``: (hp, param) -> η*(N, D) fit; ``r_inf``: (axis, param) -> K&B R(∞)
    against μP; ``problems``: why parts could not be analysed (never an exception for bad data)."""

    objective: str
    prepared: pl.DataFrame
    optima: dict[str, pl.DataFrame] = field(default_factory=dict)
    transfers: list[AxisTransfer] = field(default_factory=list)
    verdicts: pl.DataFrame = field(default_factory=pl.DataFrame)
    laws: dict[tuple[str, str | None], ScalingLaw] = field(default_factory=dict)
    r_inf: dict[tuple[str, str], dict] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def status_counts(self) -> dict[str, int]:
        if "status" not in self.prepared.columns:
            return {}
        counts = dict(self.prepared["status"].value_counts().iter_rows())
        return {s: int(counts.get(s, 0)) for s in STATUSES}


def analyze(runs: pl.DataFrame, *, objective: str | None = None, hps: Sequence[str] | None = None,
            tau: float = DEFAULT_TAU, history: pl.DataFrame | None = None, n_boot: int = 1000) -> Analysis:
    """Run the pipeline on a run table (load_runs or an importer). Bad or insufficient data never raises: it ends
    up in ``problems`` and in the verdict reasons."""
    objective = objective or default_objective(runs)
    if runs.is_empty():
        return Analysis(objective, runs, problems=["no runs"], verdicts=verdict_frame([]))
    prepared = prepare_runs(runs, objective, history=history)
    out = Analysis(objective, prepared)
    if objective not in runs.columns:
        out.problems.append(f"objective {objective} is not logged by any run")
    n_ok = int((prepared["status"] == "ok").sum()) if prepared.height else 0
    if n_ok == 0:
        out.problems.append("no run is ok: " + ", ".join(f"{k}={v}" for k, v in out.status_counts().items() if v))
        out.verdicts = verdict_frame([])
        return out
    hps = list(hps) if hps else (hp_columns(prepared) or ([S.P_LR] if S.P_LR in prepared.columns else []))
    if not hps:
        out.problems.append("no swept hyperparameter (hp.lr or mult.*) found")
    params = (prepared[S.P_PARAMETERIZATION].drop_nulls().unique().sort().to_list()
              if S.P_PARAMETERIZATION in prepared.columns else [None])
    for hp in hps:
        if hp not in prepared.columns:
            out.problems.append(f"{hp} is not a column of the runs")
            continue
        opt = optimum_table(prepared, hp, n_boot=n_boot)
        out.optima[hp] = opt
        for axis in AXES:
            out.transfers += axis_transfer(opt, axis, tau=tau)
        for p in params:
            sub = opt.filter(pl.col(S.P_PARAMETERIZATION) == p) if p is not None else opt
            out.laws[(hp, p)] = fit_lr_law(sub)
        if hp == S.P_LR and "mup" in params:
            for axis in AXES:
                for p in params:
                    if p != "mup":
                        out.r_inf[(axis, p)] = asymptotic_penalty(opt, axis, p, "mup")
    out.verdicts = verdict_frame(out.transfers)
    if out.verdicts.is_empty():
        out.problems.append("no scale axis varies within any slice")
    return out


def _fmt(v: Any, spec: str = ".3f") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return format(v, spec)


def format_report(a: Analysis) -> str:
    """Plain-text verdict table for every axis, with the run classification and problems on top."""
    lines = [f"objective: {a.objective}",
             "runs: " + ", ".join(f"{k} {v}" for k, v in a.status_counts().items() if v)]
    lines += [f"problem: {p}" for p in a.problems]
    fixed = {ax: a.prepared[f"scale.{ax}"].drop_nulls().unique().to_list() for ax in AXES
             if f"scale.{ax}" in a.prepared.columns}
    single = [f"{ax}={v[0]:g}" for ax, v in fixed.items() if len(v) == 1]
    if single:
        lines.append("not varied (no verdict): " + ", ".join(single))
    if not a.verdicts.is_empty():
        head = (f"{'axis':<8} {'hp':<22} {'param':<10} {'scales':>6} {'used':>4} {'slope':>7} "
                f"{'90% CI':>17} {'±eps':>6} {'max Δ':>7} {'verdict':<12} {'slice':<18} reasons")
        lines += ["", head, "-" * len(head)]
        slices = _slice_labels(a.transfers)
        for r, where in zip(a.verdicts.iter_rows(named=True), slices, strict=True):
            ci = (f"[{_fmt(r['slope_ci90_lo'], '+.3f')}, {_fmt(r['slope_ci90_hi'], '+.3f')}]"
                  if r["slope"] is not None else "-")
            lines.append(f"{r['axis']:<8} {r['hp']:<22} {str(r['param']):<10} {r['n_scales']:>6} {r['n_used']:>4} "
                         f"{_fmt(r['slope'], '+.3f'):>7} {ci:>17} {_fmt(r['tost_eps']):>6} "
                         f"{_fmt(r['max_penalty'], '.2%'):>7} {r['verdict']:<12} {where:<18} {r['reasons']}")
    for hp, opt in a.optima.items():
        flagged = opt.filter(pl.col("flags").list.len() > 0)
        for r in flagged.iter_rows(named=True):
            scale = ", ".join(f"{c[6:]}={r[c]:g}" for c in opt.columns if c.startswith("scale.") and r[c] is not None)
            sugg = ", ".join(f"{v:.3g}" for v in r["suggested"])
            lines.append(f"flag: {hp} [{r.get(S.P_PARAMETERIZATION, '')} {scale}] {', '.join(r['flags'])}"
                         + (f"; try {sugg}" if sugg else ""))
    return "\n".join(lines)


def _slice_labels(transfers: Sequence[AxisTransfer]) -> list[str]:
    """Per transfer, the fixed settings that tell its slice apart from the others of the same axis and hp
    (e.g. ``tokens=153600``); settings shared by all of them are left out, the parameterization has its column."""
    labels = []
    for t in transfers:
        peers = [o for o in transfers if o.axis == t.axis and o.hp == t.hp]
        keys = [k for k in differing_keys(peers) if k != S.P_PARAMETERIZATION]
        labels.append(", ".join(f"{k.removeprefix('scale.')}={t.group.get(k)!s:.10}" for k in keys) or "-")
    return labels


def report_dict(a: Analysis) -> dict[str, Any]:
    """JSON-safe summary (``--json``): counts, verdict rows, per-slice optima (without the curves) and laws."""
    optima = {hp: opt.drop([c for c in ("grid_log_hp", "grid_loss", "grid_n", "diverged_log_hp", "run_ids")
                            if c in opt.columns]).to_dicts() for hp, opt in a.optima.items()}
    laws = [{"hp": hp, "param": p, "form": law.form, "coef": law.coef, "ci95": law.ci95, "n": law.n,
             "refused": law.refused} for (hp, p), law in a.laws.items()]
    r_inf = [{"axis": ax, "param": p, **v} for (ax, p), v in a.r_inf.items()]
    return _finite({"objective": a.objective, "runs": a.status_counts(), "problems": a.problems,
                    "verdicts": a.verdicts.to_dicts(), "optima": optima, "laws": laws, "r_inf_vs_mup": r_inf})
