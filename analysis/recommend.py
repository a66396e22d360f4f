"""Hyperparameters for a target scale (spec §6.6), exported as schema-validated JSON.

Route: start from the *reference slice*, the usable optimum nearest the target in log scale, then, along each
axis where the target lies elsewhere, either keep the value (the axis verdict is ``holds``: transfer paradigm)
or shift it by the fitted slope (``axis_law``: the fitting paradigm per axis), adding the slope's variance times
the squared log-span. Every swept hyperparameter (hp.lr and each swept ``mult.<kind>.<module>``) gets the same
treatment. When the reference optimum is at the stability edge, or its interval is wide, the value is moved down
by half a standard deviation (the high side of the basin ends in divergence; §6.6) and capped below the lowest
diverged value. Expected penalty ≈ c_t·(bias² + var + E_extrap²), with the curvature c_t extrapolated by κ.

``config_overrides`` is a flat dict of dotted config keys (hyperparameters, multipliers, parameterization fields
of the reference run, and the target scale) that ``python -m trainer train --hparams rec.json`` applies.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import polars as pl

from analysis.classify import hp_columns
from analysis.optimum import optimum_table
from analysis.scaling_law import fit_lr_law
from analysis.transfer import DEFAULT_TAU, AxisTransfer, axis_transfer
from trainer import schema as S
from trainer.config import typed_flat

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).with_name("recommendation.schema.json")
_CONFIG_PREFIXES = ("model.", "param.", "hp.", "optim.", "train.", "data.", "mult.")
_NOT_OVERRIDDEN = ("train.device", "train.seed", "train.steps", "data.source")


class RecommendationError(ValueError):
    """No recommendation can be made from these runs; the message says what is missing."""


def _finite(v: Any) -> Any:
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python, recursively."""
    if isinstance(v, dict):
        return {str(k): _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    if isinstance(v, (np.floating, float)):
        return float(v) if math.isfinite(float(v)) else None
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def recommend(prepared: pl.DataFrame, target: Mapping[str, float], param: str | None = None, *,
              hps: Sequence[str] | None = None, tau: float = DEFAULT_TAU, objective: str | None = None,
              wide_log_sd: float = math.log(2) / 2, n_boot: int = 500, source: Mapping[str, Any] | None = None
              ) -> dict[str, Any]:
    """The recommendation document (validated against the JSON Schema) for ``target`` = {axis: value}.

    ``prepared``: output of classify.prepare_runs. ``param``: the parameterization (param.name); required when the
    runs hold more than one. ``hps``: which hyperparameters (default: every swept one). ``wide_log_sd``: an
    interval wider than this (in ln units, default a factor √2 either way) triggers the conservative choice."""
    unknown = [a for a in target if a not in S.AXES]
    if unknown:
        raise RecommendationError(f"unknown axis {unknown}; axes are {list(S.AXES)}")
    if any(not (isinstance(v, (int, float)) and v > 0) for v in target.values()):
        raise RecommendationError(f"target values must be positive numbers, got {dict(target)}")
    df = prepared
    if S.P_PARAMETERIZATION in df.columns:
        present = sorted(df[S.P_PARAMETERIZATION].drop_nulls().unique().to_list())
        if param is None and len(present) > 1:
            raise RecommendationError(f"the runs hold parameterizations {present}; choose one")
        param = param or (present[0] if present else None)
        if param not in present:
            raise RecommendationError(f"no runs with {S.P_PARAMETERIZATION}={param!r}; present: {present}")
        df = df.filter(pl.col(S.P_PARAMETERIZATION) == param)
    hps = list(hps) if hps else (hp_columns(df) or [S.P_LR])
    entries, notes, laws = [], [], []
    reference: dict[str, Any] | None = None
    ref_row_params: dict[str, Any] = {}
    for hp in hps:
        opt = optimum_table(df, hp, n_boot=n_boot)
        usable = opt.filter(pl.col("usable"))
        if usable.is_empty():
            reasons = "; ".join(f"{r['flags']}" for r in opt.select("flags").to_dicts()) or "no slices"
            raise RecommendationError(f"{hp}: no usable optimum in any slice ({reasons}); widen the sweep")
        ref = _reference_row(usable, target)
        entry, axis_notes = _one_hp(hp, ref, opt, target, tau, wide_log_sd)
        entries.append(entry)
        notes += axis_notes
        law = fit_lr_law(opt)
        laws.append(_finite({"target": law.target, "form": law.form, "coef": law.coef, "ci95": law.ci95,
                             "n": law.n, "refused": law.refused}))
        if reference is None:
            reference, ref_row_params = _reference_info(df, ref, objective)
    overrides = _config_overrides(ref_row_params, entries, target)
    groups, group_note = _effective_groups(ref_row_params, overrides)
    if group_note:
        notes.append(group_note)
    total = [e["expected_penalty"] for e in entries if e["expected_penalty"] is not None]
    doc = _finite({
        "schema_version": SCHEMA_VERSION, "kind": "hparam_recommendation",
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "source": dict(source or {}), "objective": objective or "unknown", "target": dict(target),
        "param_scheme": param or "unknown", "reference": reference, "hyperparameters": entries,
        "expected_penalty": float(sum(total)) if total else None, "laws": laws,
        "config_overrides": overrides, "effective_groups": groups, "notes": notes,
    })
    validate_recommendation(doc)
    return doc


def _scale_cols(opt: pl.DataFrame) -> list[str]:
    return [c for c in opt.columns if c.startswith("scale.") and opt[c].drop_nulls().len() > 0]


def _reference_row(usable: pl.DataFrame, target: Mapping[str, float]) -> dict:
    """The usable optimum nearest the target in summed |ln(scale/target)| over the target's axes (ties: the
    lower loss). Why: the shortest extrapolation carries the least slope uncertainty."""
    def dist(row: dict) -> float:
        d = 0.0
        for axis, t in target.items():
            v = row.get(f"scale.{axis}")
            if v is not None and v > 0:
                d += abs(math.log(t / v))
        return d

    rows = usable.to_dicts()
    return min(rows, key=lambda r: (dist(r), r["argmin_loss"]))


def _one_hp(hp: str, ref: dict, opt: pl.DataFrame, target: Mapping[str, float], tau: float,
            wide_log_sd: float) -> tuple[dict, list[str]]:
    mu, var = ref["log_opt"], ref["se_log"] ** 2
    notes, corrections, fits, bias2 = [], [], [], 0.0
    route = "transfer"
    curvature = ref["curvature"] if ref["curvature"] and math.isfinite(ref["curvature"]) else math.nan
    c_t = curvature
    cap = ref["lowest_diverged"] if ref["lowest_diverged"] and math.isfinite(ref["lowest_diverged"]) else math.nan
    for axis, t in target.items():
        col = f"scale.{axis}"
        s = ref.get(col)
        if s is None or not s > 0 or math.isclose(s, t, rel_tol=1e-9):
            if s is None:
                notes.append(f"{hp}: no {axis} in the data; assumed the parameterization transfers it")
            continue
        r = math.log(t / s)
        res = _matching_group(axis_transfer(opt, axis, tau=tau, target=t), ref)
        if res is None or res.fit is None:
            why = "; ".join(res.reasons) if res else "no group along this axis"
            notes.append(f"{hp}: no slope along {axis} ({why}); assumed it transfers")
            corrections.append({"axis": axis, "from": s, "to": t, "shift_log": 0.0, "verdict": "unknown"})
            continue
        shift = 0.0 if res.verdict == "holds" else res.fit.slope * r
        if res.verdict != "holds":
            route = "axis_law"
            var += (r * res.fit.slope_se) ** 2 + (res.fit.tau2 if math.isfinite(res.fit.tau2) else 0.0)
        mu += shift
        if math.isfinite(cap):
            cap *= math.exp(shift)
        if math.isfinite(res.fit.loo_error):
            bias2 += res.fit.loo_error ** 2
        if math.isfinite(res.kappa) and math.isfinite(c_t):
            c_t *= math.exp(res.kappa * r)
        corrections.append({"axis": axis, "from": s, "to": t, "shift_log": shift, "slope": res.fit.slope,
                            "slope_ci95": list(res.fit.slope_ci95), "verdict": res.verdict, "kappa": res.kappa})
        fits.append({"axis": axis, "slope": res.fit.slope, "n_scales": res.fit.n, "E_factor": res.fit.E_factor,
                     "loo_error": res.fit.loo_error, "scales": res.scales, "verdict": res.verdict})
    sd = math.sqrt(var)
    conservative = "near_stability_edge" in ref["flags"] or sd > wide_log_sd
    value = mu - 0.5 * sd if conservative else mu  # §6.6: the high side ends in divergence
    if conservative:
        bias2 += (0.5 * sd) ** 2
    if math.isfinite(cap) and math.exp(value) >= cap:
        value = math.log(cap) - 0.5 * max(sd, 0.1)
        notes.append(f"{hp}: capped below the lowest diverged value {cap:.4g} (scaled along the fitted axes)")
    penalty = c_t * (bias2 + var) if math.isfinite(c_t) else math.nan
    entry = {
        "name": hp, "value": math.exp(value),
        "interval68": [math.exp(mu - sd), math.exp(mu + sd)],
        "interval95": [math.exp(mu - 1.96 * sd), math.exp(mu + 1.96 * sd)],
        "route": route if corrections else "reference_only", "conservative": bool(conservative),
        "expected_penalty": penalty,
        "base_optimum": {k: ref[k] for k in ("opt", "se_log", "argmin", "method", "curvature", "n_points",
                                             "n_diverged", "lowest_diverged")}
        | {"scale": {c: ref[c] for c in ref if c.startswith("scale.")}},
        "axis_corrections": corrections, "flags": list(ref["flags"]),
        "sources": {"run_ids": list(ref["run_ids"]), "fits": fits},
    }
    return entry, notes


def _matching_group(results: list[AxisTransfer], ref: dict) -> AxisTransfer | None:
    """The axis group whose fixed columns equal the reference slice's."""
    for r in results:
        if all(ref.get(k) == v for k, v in r.group.items()):
            return r
    return None


def _reference_info(df: pl.DataFrame, ref: dict, objective: str | None) -> tuple[dict, dict]:
    """The best ok run of the reference slice: its id, loss and config params (base of config_overrides)."""
    runs = df.filter(pl.col("run_id").is_in(list(ref["run_ids"]))).sort("loss")
    best = runs.row(0, named=True) if runs.height else {}
    params = {k: v for k, v in best.items() if k.startswith(_CONFIG_PREFIXES) and k not in S.HISTORY_METRICS
              and v is not None}
    info = {"scale": {c[len("scale."):]: ref[c] for c in ref if c.startswith("scale.")},
            "run_id": best.get("run_id"), "loss": best.get("loss"), "objective": objective}
    return info, params


def _plain(v: Any) -> Any:
    if isinstance(v, float) and math.isfinite(v) and v.is_integer():
        return int(v)
    return v


def _config_overrides(params: dict, entries: list[dict], target: Mapping[str, float]) -> dict[str, Any]:
    """Reference run's hp/mult/param fields, the recommended values, and the target scale, as dotted keys."""
    out = {k: _plain(v) for k, v in params.items()
           if k.startswith(("hp.", "mult.", "param.")) and k not in _NOT_OVERRIDDEN}
    for e in entries:
        out[e["name"]] = float(e["value"])
    for axis, value in target.items():
        out[S.AXES[axis]] = _plain(float(value))
    return typed_flat(out)  # the trainer's own field types, not MLflow's strings ('True', '0.5')


def _effective_groups(params: dict, overrides: dict) -> tuple[list[dict] | None, str | None]:
    """Per-(module, layer) settings the recommendation expands to, via trainer.parameterization.explain_rows
    (imported lazily: it is pure Python but may not exist in older checkouts)."""
    try:
        from trainer.config import ConfigError, RunConfig
        from trainer.parameterization import explain_rows
    except ImportError as exc:
        return None, f"effective per-group settings unavailable: {exc}"
    flat = {k: _plain(v) for k, v in params.items() if k not in _NOT_OVERRIDDEN}
    flat.update(overrides)
    try:
        cfg = RunConfig.from_flat(flat)
    except ConfigError as exc:
        return None, f"effective per-group settings unavailable: the config does not validate ({exc})"
    return [_finite(dict(r)) for r in explain_rows(cfg)], None


def validate_recommendation(doc: Mapping[str, Any]) -> None:
    """Raise jsonschema.ValidationError (with the failing path) when ``doc`` breaks the schema."""
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.validate(doc, schema)


def write_recommendation(doc: Mapping[str, Any], path: str | Path) -> Path:
    """Validate, then write (validating first means a broken file is never left behind)."""
    validate_recommendation(doc)
    path = Path(path)
    path.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n")
    return path


def read_recommendation(path: str | Path) -> dict[str, Any]:
    """Read and validate; a wrong schema_version or a missing field raises with the path of the problem."""
    doc = json.loads(Path(path).read_text())
    validate_recommendation(doc)
    return doc
