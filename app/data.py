"""Everything the pages show comes through here: analysis/ calls, cached per store state.

Why a layer at all: the pages must stay fast on 10k-run sweeps, so every analysis result is cached, keyed by the
tracking URI *and* ``analysis.load.store_signature`` (size and mtime of the SQLite file and its WAL): a new run in
the store changes the signature, so nothing stale is ever shown and nothing is recomputed while the store is
unchanged. The signature is a plain (hashed) argument of every cached function: Streamlit leaves arguments whose
name starts with ``_`` out of the cache key, which would serve a stale result after a new run.
``st.cache_resource`` (not ``cache_data``) because the results are large polars frames and dataclasses that the
pages only read: cache_data would pickle and copy a 10k-row table on every rerun.

The app computes no science: optima, fits, verdicts, penalties, laws and recommendations are analysis/ functions;
this module only selects rows and reshapes them for the charts.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from typing import Any

import polars as pl
import streamlit as st

from analysis.classify import default_objective, prepare_runs
from analysis.load import (
    latest_experiment,
    list_experiments,
    load_history,
    load_runs,
    store_signature,
)
from analysis.optimum import optimum_table
from analysis.recommend import recommend
from analysis.summary import SUMMARY_SCHEMA, sweep_table
from analysis.transfer import AxisTransfer, asymptotic_penalty, axis_transfer
from trainer import schema as S
from trainer.tracking import resolve_tracking_uri

OBJECTIVES = (S.S_FINAL_VAL_LOSS, S.S_FINAL_TRAIN_LOSS, S.S_BEST_VAL_LOSS)
CONFIG_PREFIXES = ("model.", "param.", "hp.", "optim.", "train.", "data.", "mult.")


def tracking_uri() -> str:
    """``-- --tracking-uri URI`` after ``streamlit run``, else $MLFLOW_TRACKING_URI, else the shipped mlruns/."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--tracking-uri", default=None)
    args, _ = parser.parse_known_args(sys.argv[1:])
    return resolve_tracking_uri(args.tracking_uri)


def signature(uri: str) -> str:
    """Cache key part that changes when the store changes (a missing file is its own state)."""
    try:
        return store_signature(uri)
    except OSError as exc:
        return f"unreadable: {exc}"


def experiments(uri: str) -> list[str]:
    """Active experiment names, or an empty list for a store that does not exist yet."""
    return _experiments(uri, signature(uri))


@st.cache_resource(max_entries=8, show_spinner=False)
def _experiments(uri: str, sig: str) -> list[str]:
    try:
        return sorted(list_experiments(uri))
    except Exception as exc:  # sqlite3.OperationalError for a missing file, MlflowException for a bad server
        if "no such table" in str(exc) or "unable to open" in str(exc):
            return []
        raise


def default_experiment(uri: str) -> str | None:
    """The experiment whose training runs started last (analysis.load.latest_experiment: one query on a SQLite
    store): what someone opening the dashboard most likely wants; None when the store cannot say."""
    try:
        return _default_experiment(uri, signature(uri))
    except Exception:  # the picker still works without a default; its own call reports the error
        return None


@st.cache_resource(max_entries=8, show_spinner=False)
def _default_experiment(uri: str, sig: str) -> str | None:
    return latest_experiment(uri)


def runs(uri: str, experiment: str | None = None) -> pl.DataFrame:
    """The raw run table (analysis.load layout); all experiments when ``experiment`` is None."""
    return _runs(uri, signature(uri), experiment)


@st.cache_resource(max_entries=16, show_spinner="Loading runs …")
def _runs(uri: str, sig: str, experiment: str | None) -> pl.DataFrame:
    return load_runs(uri, experiment)


def is_coord(df: pl.DataFrame) -> pl.Expr:
    """Coordinate-check runs (run.kind=coord_check): plotted on their own page, never part of a sweep analysis."""
    if S.T_RUN_KIND not in df.columns:
        return pl.lit(False)
    return pl.col(S.T_RUN_KIND).fill_null("") == S.RUN_KIND_COORD


def objectives(uri: str, experiment: str) -> list[str]:
    """Objective metrics the runs logged, the analysis default first."""
    df = runs(uri, experiment)
    first = default_objective(df)
    present = [o for o in OBJECTIVES if o in df.columns and df[o].dtype.is_numeric() and df[o].is_not_null().any()]
    return [first] + [o for o in present if o != first]


def prepared(uri: str, experiment: str, objective: str) -> pl.DataFrame:
    """classify.prepare_runs of the experiment's training runs (status, reason, loss, scale.* columns)."""
    return _prepared(uri, signature(uri), experiment, objective)


@st.cache_resource(max_entries=16, show_spinner="Classifying runs …")
def _prepared(uri: str, sig: str, experiment: str, objective: str) -> pl.DataFrame:
    df = runs(uri, experiment)
    return prepare_runs(df.filter(~is_coord(df)), objective)


def optima(uri: str, experiment: str, objective: str, hp: str) -> pl.DataFrame:
    """analysis.optimum.optimum_table: one row per slice with optimum, interval, flags and the mean curve."""
    return _optima(uri, signature(uri), experiment, objective, hp)


@st.cache_resource(max_entries=32, show_spinner="Fitting optima …")
def _optima(uri: str, sig: str, experiment: str, objective: str, hp: str) -> pl.DataFrame:
    return optimum_table(prepared(uri, experiment, objective), hp)


def transfers(uri: str, experiment: str, objective: str, hp: str, axis: str, tau: float) -> list[AxisTransfer]:
    """analysis.transfer.axis_transfer for every group (param.name and other fixed columns) along ``axis``."""
    return _transfers(uri, signature(uri), experiment, objective, hp, axis, tau)


@st.cache_resource(max_entries=64, show_spinner="Fitting the optimum against scale …")
def _transfers(uri: str, sig: str, experiment: str, objective: str, hp: str, axis: str,
               tau: float) -> list[AxisTransfer]:
    return axis_transfer(optima(uri, experiment, objective, hp), axis, tau=tau)


def r_inf(uri: str, experiment: str, objective: str, hp: str, axis: str, param: str) -> dict:
    """analysis.transfer.asymptotic_penalty of ``param`` against μP along ``axis``."""
    return _r_inf(uri, signature(uri), experiment, objective, hp, axis, param)


@st.cache_resource(max_entries=64, show_spinner=False)
def _r_inf(uri: str, sig: str, experiment: str, objective: str, hp: str, axis: str, param: str) -> dict:
    return asymptotic_penalty(optima(uri, experiment, objective, hp), axis, param, "mup")


def recommendation(uri: str, experiment: str, objective: str, param: str | None, target: dict[str, float],
                   tau: float) -> dict[str, Any]:
    """analysis.recommend.recommend, with the same ``source`` the CLI writes (so the JSON is the CLI's JSON)."""
    return _recommendation(uri, signature(uri), experiment, objective, param, tuple(sorted(target.items())), tau)


@st.cache_resource(max_entries=32, show_spinner="Computing the recommendation …")
def _recommendation(uri: str, sig: str, experiment: str, objective: str, param: str | None,
                    target: tuple[tuple[str, float], ...], tau: float) -> dict[str, Any]:
    return recommend(prepared(uri, experiment, objective), dict(target), param, tau=tau, objective=objective,
                     source={"experiment": [experiment], "tracking_uri": uri})


def history(uri: str, run_ids: Sequence[str], keys: Sequence[str]) -> pl.DataFrame:
    """Metric histories (run_id, key, step, value), fetched only when a page shows them."""
    return _history(uri, signature(uri), tuple(run_ids), tuple(keys))


@st.cache_resource(max_entries=64, show_spinner="Fetching histories …")
def _history(uri: str, sig: str, run_ids: tuple[str, ...], keys: tuple[str, ...]) -> pl.DataFrame:
    return load_history(run_ids, keys, uri)


def group_label(group: dict, *, without: Sequence[str] = ()) -> str:
    """A readable name for an axis group's fixed columns (e.g. ``depth=4, batch=64``)."""
    parts = []
    for key, value in group.items():
        if key in without:
            continue
        name = key.removeprefix("scale.")
        parts.append(f"{name}={_fmt_value(value)}")
    return ", ".join(parts) or "(all runs)"


def _fmt_value(value: Any) -> str:
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:g}"
    return str(value)


def group_order(group: dict, keys: Sequence[str]) -> tuple:
    """Sort key of an axis group by its values at ``keys``: numbers by value (depth=2 before depth=16, which the
    labels' text order reverses), then text, then missing values."""
    out: list[tuple[int, float | str]] = []
    for key in keys:
        value = group.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out.append((0, float(value)))
        else:
            out.append((1, str(value)) if value is not None else (2, ""))
    return tuple(out)


def as_text(df: pl.DataFrame, col: str) -> pl.Expr:
    """``col`` of ``df`` as text for tooltips, whole numbers without ``.0`` (load_runs reads numeric params as
    Float64, so seed 3 would read ``3.0``); an empty string where the column is absent, null where the value is."""
    if col not in df.columns:
        return pl.lit("")
    value = pl.col(col)
    if not df.schema[col].is_float():
        return value.cast(pl.Utf8)
    whole = value.is_finite() & (value.abs() < 2.0 ** 53) & (value == value.round(0))
    return pl.when(whole).then(value.cast(pl.Int64, strict=False).cast(pl.Utf8)).otherwise(value.cast(pl.Utf8))


def group_rows(opt: pl.DataFrame, group: dict, axis: str) -> pl.DataFrame:
    """The optimum-table rows of one axis group, ordered by scale (the same rows axis_transfer fitted)."""
    col = f"scale.{axis}"
    out = opt.filter(pl.col(col).is_not_null())
    for key, value in group.items():
        out = out.filter(pl.col(key).is_null() if value is None else pl.col(key) == value)
    return out.sort(col)


def group_runs(prep: pl.DataFrame, group: dict, axis: str) -> pl.DataFrame:
    """The classified runs (ok and diverged) behind one axis group, for the points and tooltips of a chart."""
    col = f"scale.{axis}"
    out = prep.filter(pl.col("status").is_in(["ok", "diverged"]) & pl.col(col).is_not_null())
    for key, value in group.items():
        if key not in out.columns:
            continue
        out = out.filter(pl.col(key).is_null() if value is None else pl.col(key) == value)
    return out


def run_config_params(row: dict[str, Any]) -> dict[str, Any]:
    """The config fields of one run (dotted keys), as RunConfig.from_flat wants them."""
    out = {}
    for key, value in row.items():
        if not key.startswith(CONFIG_PREFIXES) or key in S.HISTORY_METRICS or value is None:
            continue
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        out[key] = value
    return out


def effective_groups(row: dict[str, Any]) -> tuple[list[dict] | None, str | None]:
    """``trainer explain`` rows (per-module init std, forward multiplier, LR, eps, wd, betas) of one run, or why
    they cannot be shown. Only for runs our trainer made: an imported run's params do not describe our model."""
    source = str(row.get(S.T_SOURCE) or "")
    if source != "trainer":
        return None, (f"this run came from {source or 'an unknown source'}; per-group settings exist only for "
                      "runs made by our trainer")
    from trainer.config import ConfigError, RunConfig
    from trainer.parameterization import explain_rows

    try:
        cfg = RunConfig.from_flat(run_config_params(row))
    except (ConfigError, ValueError, TypeError) as exc:
        return None, f"the run's params do not form a valid config: {exc}"
    return [dict(r) for r in explain_rows(cfg)], None


def sweep_summary(uri: str) -> pl.DataFrame:
    """One row per (experiment, sweep) with run counts by analysis class, parameterizations, varied axes, swept
    hyperparameters and last update; experiments without runs appear with zero counts."""
    return _sweep_summary(uri, signature(uri))


@st.cache_resource(max_entries=8, show_spinner="Summarising sweeps …")
def _sweep_summary(uri: str, sig: str) -> pl.DataFrame:
    tables = []
    for name in experiments(uri):
        raw = runs(uri, name)
        prep = prepared(uri, name, default_objective(raw)) if raw.height > raw.filter(is_coord(raw)).height else None
        tables.append(sweep_table(name, raw, prep))
    return pl.concat(tables) if tables else pl.DataFrame(schema=SUMMARY_SCHEMA)
