"""Importers: external sweep logs (long-format CSV/Parquet) mapped into the run schema.

An external sweep arrives as one row per (run, step) with its own column names. A small mapping file (YAML/JSON)
says which columns identify a run, which are config params (``hp.lr``, ``model.width`` …), which are history
metrics (``train.loss``, ``val.loss``), how to translate values (``SP`` -> ``sp``) and which params are constant.
The result has exactly the table layout of ``analysis.load.load_runs`` (summary metrics computed from the
histories the same way for every source), so every analysis function and the dashboard treat imported sweeps
like our own runs; ``write_to_mlflow`` optionally stores them in an MLflow experiment.

Mapping keys: ``name`` (str), ``run`` (column or list of columns), ``step`` (column), ``params`` {param: column},
``metrics`` {history metric: column}, optional ``values`` {param: {source: target}}, ``constants`` {param: value},
``planned_steps`` (int, or ``max`` = the longest run's last step; becomes ``derived.steps``).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from analysis.load import assemble
from trainer import schema as S

_MAPPING_KEYS = {"name", "run", "step", "params", "metrics", "values", "constants", "planned_steps"}


class MappingError(ValueError):
    """The data or the mapping is unusable; the message names the offending key or column."""


@dataclass
class Mapping:
    """A parsed, checked column mapping."""

    name: str
    run: list[str]
    step: str
    params: dict[str, str]
    metrics: dict[str, str]
    values: dict[str, dict[str, Any]]
    constants: dict[str, Any]
    planned_steps: int | str

    @classmethod
    def from_dict(cls, raw: Any) -> Mapping:
        if not isinstance(raw, dict):
            raise MappingError("mapping: the top level must be a mapping")
        unknown = set(raw) - _MAPPING_KEYS
        if unknown:
            raise MappingError(f"mapping: unknown key(s) {sorted(unknown)}; known: {sorted(_MAPPING_KEYS)}")
        for key in ("name", "run", "step", "metrics"):
            if key not in raw:
                raise MappingError(f"mapping.{key}: missing")
        run = raw["run"] if isinstance(raw["run"], list) else [raw["run"]]
        metrics = dict(raw["metrics"] or {})
        bad = [m for m in metrics if m not in S.HISTORY_METRICS]
        if bad:
            raise MappingError(f"mapping.metrics: {bad} are not history metrics of the schema {S.HISTORY_METRICS}")
        if not metrics:
            raise MappingError("mapping.metrics: at least one history metric (train.loss or val.loss) is needed")
        planned = raw.get("planned_steps", "max")
        if planned != "max" and not (isinstance(planned, int) and planned > 0):
            raise MappingError(f"mapping.planned_steps: expected a positive integer or 'max', got {planned!r}")
        return cls(name=str(raw["name"]), run=[str(c) for c in run], step=str(raw["step"]),
                   params=dict(raw.get("params") or {}), metrics=metrics, values=dict(raw.get("values") or {}),
                   constants=dict(raw.get("constants") or {}), planned_steps=planned)

    @classmethod
    def read(cls, path: str | Path) -> Mapping:
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise MappingError(f"{path}: cannot read mapping ({exc})") from None
        return cls.from_dict(raw)


@dataclass
class ImportedSweep:
    """``runs``: the load_runs layout (one row per run); ``history``: run_id, key, step, value (long format)."""

    name: str
    runs: pl.DataFrame
    history: pl.DataFrame


def read_table(path: str | Path) -> pl.DataFrame:
    """CSV or Parquet by extension; empty cells become nulls (NaN markers are handled by the importer)."""
    path = Path(path)
    if not path.exists():
        raise MappingError(f"{path}: file not found")
    if path.suffix.lower() in (".parquet", ".pq"):
        return pl.read_parquet(path)
    if path.suffix.lower() in (".csv", ".txt"):
        return pl.read_csv(path, infer_schema_length=None, null_values=["", "NA"])
    raise MappingError(f"{path}: unsupported format {path.suffix!r}; use .csv or .parquet")


def import_long_table(data: pl.DataFrame | str | Path, mapping: Mapping | dict | str | Path) -> ImportedSweep:
    """Map a long-format sweep table into the run schema.

    A metric cell that is empty, NaN or inf is kept as NaN/inf in the history (a diverged run's last logged value is
    the evidence that it diverged). Such a run gets ``run.status = diverged`` and ``summary.diverged_step``; all
    others get ``ok``. Summary metrics: initial = first logged value, final = last logged value (an external log
    has no 'last 10 %' window convention we could trust), max = max finite value."""
    m = mapping if isinstance(mapping, Mapping) else (
        Mapping.from_dict(mapping) if isinstance(mapping, dict) else Mapping.read(mapping))
    df = data if isinstance(data, pl.DataFrame) else read_table(data)
    needed = [*m.run, m.step, *m.params.values(), *m.metrics.values()]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise MappingError(f"columns {missing} named in the mapping are not in the data (columns: {df.columns})")
    if df.is_empty():
        raise MappingError("the data table has no rows")
    for key, col in m.metrics.items():
        cast = df[col].cast(pl.Float64, strict=False)  # "nan"/"inf" strings parse; words do not
        bad = df.filter(cast.is_null() & df[col].is_not_null())
        if not bad.is_empty():
            raise MappingError(f"metric column {col!r} ({key}) holds non-numbers, e.g. {bad[col][0]!r}")
        df = df.with_columns(cast.alias(col))
    step = df[m.step].cast(pl.Int64, strict=False)
    if step.null_count():
        raise MappingError(f"step column {m.step!r} holds values that are not integers")
    df = df.with_columns(step.alias("_step"),
                         pl.concat_str([pl.col(c).cast(pl.Utf8) for c in m.run], separator="|").alias("_key"))
    df = df.with_columns(pl.col("_key").map_elements(lambda k: _run_id(m.name, k), return_dtype=pl.Utf8)
                         .alias("run_id"))

    # Params: one value per run; a run whose param changes between rows is a mapping error (wrong run key).
    param_rows = df.select(["run_id", *{c for c in m.params.values()}]).unique()
    if param_rows["run_id"].n_unique() != param_rows.height:
        raise MappingError(f"a run key {m.run} maps to more than one value of {list(m.params.values())}; "
                           "add the varying column to 'run'")
    params_wide = param_rows.select(["run_id", *[pl.col(col).alias(p) for p, col in m.params.items()]])
    for p, table in m.values.items():
        if p not in params_wide.columns:
            raise MappingError(f"mapping.values.{p}: not a mapped param")
        params_wide = params_wide.with_columns(pl.col(p).cast(pl.Utf8).replace(
            {str(k): str(v) for k, v in table.items()}).alias(p))

    history = (df.select(["run_id", "_step", *m.metrics.values()])
               .rename({"_step": "step", **{col: key for key, col in m.metrics.items()}})
               .unpivot(index=["run_id", "step"], variable_name="key", value_name="value")
               .with_columns(pl.col("value").cast(pl.Float64).fill_null(float("nan")))
               .sort("run_id", "key", "step"))

    last_step = df.group_by("run_id").agg(pl.col("_step").max().alias("last"))
    planned = int(last_step["last"].max()) if m.planned_steps == "max" else int(m.planned_steps)
    summaries = _summaries(history, m)
    constants = {**m.constants, S.P_STEPS: planned}
    params_long = pl.concat([
        params_wide.unpivot(index="run_id", variable_name="key", value_name="value")
        .with_columns(pl.col("value").cast(pl.Utf8)),
        pl.DataFrame({"run_id": params_wide["run_id"]}).join(
            pl.DataFrame({"key": list(constants), "value": [str(v) for v in constants.values()]}), how="cross"),
    ])
    tags_long = summaries.select(
        "run_id",
        pl.lit(m.name).alias(S.T_SWEEP_ID), pl.lit(S.RUN_KIND_TRAIN).alias(S.T_RUN_KIND),
        pl.lit(f"import:{m.name}").alias(S.T_SOURCE),
        pl.when(pl.col(S.S_DIVERGED_STEP).is_not_null()).then(pl.lit(S.STATUS_DIVERGED))
        .otherwise(pl.lit(S.STATUS_OK)).alias(S.T_STATUS),
        pl.when(pl.col(S.S_DIVERGED_STEP).is_not_null())
        .then(pl.format("non-finite loss at step {}", pl.col(S.S_DIVERGED_STEP).cast(pl.Int64)))
        .otherwise(pl.lit("")).alias(S.T_STATUS_REASON),
    ).unpivot(index="run_id", variable_name="key", value_name="value")
    metrics_long = summaries.unpivot(index="run_id", variable_name="key", value_name="value").drop_nulls("value")
    latest_hist = history.group_by("run_id", "key").agg(pl.col("value").last())
    metrics_long = pl.concat([metrics_long.with_columns(pl.col("value").cast(pl.Float64)), latest_hist.select(
        "run_id", "key", "value")])
    runs = (df.group_by("run_id").agg(pl.col("_key").first().alias("run_name"))
            .select("run_id", pl.lit(None, pl.Utf8).alias("experiment_id"), pl.lit(m.name).alias("experiment"),
                    "run_name", pl.lit("FINISHED").alias("mlflow_status"),
                    pl.lit(None, pl.Int64).alias("start_time"), pl.lit(None, pl.Int64).alias("end_time"))
            .sort("run_name"))
    return ImportedSweep(m.name, assemble(runs, params_long, tags_long, metrics_long), history)


def _run_id(name: str, key: str) -> str:
    """Deterministic 32-hex id, so re-importing the same data gives the same run ids."""
    return hashlib.sha256(f"{name}\0{key}".encode()).hexdigest()[:32]


def _summaries(history: pl.DataFrame, m: Mapping) -> pl.DataFrame:
    """Summary metrics per run from its histories (schema names; train.loss preferred for the train summaries)."""
    finite = pl.col("value").is_finite()
    out = None
    for key, prefix in ((S.M_TRAIN_LOSS, "train"), (S.M_VAL_LOSS, "val")):
        if key not in m.metrics:
            continue
        h = history.filter(pl.col("key") == key)
        agg = [pl.col("value").last().alias(S.S_FINAL_TRAIN_LOSS if prefix == "train" else S.S_FINAL_VAL_LOSS)]
        if prefix == "train":
            agg += [pl.col("value").first().alias(S.S_INITIAL_LOSS),
                    pl.col("value").filter(finite).max().alias(S.S_MAX_TRAIN_LOSS),
                    pl.col("step").max().cast(pl.Float64).alias(S.S_STEPS_DONE)]
        else:
            agg += [pl.col("value").filter(finite).min().alias(S.S_BEST_VAL_LOSS)]
        agg.append(pl.col("step").filter(~finite).min().cast(pl.Float64).alias(f"_div_{prefix}"))
        part = h.group_by("run_id").agg(agg)
        out = part if out is None else out.join(part, on="run_id", how="full", coalesce=True)
    assert out is not None  # Mapping.from_dict guarantees a metric
    div = [c for c in out.columns if c.startswith("_div_")]
    out = out.with_columns(pl.min_horizontal(div).alias(S.S_DIVERGED_STEP)).drop(div)
    if S.S_STEPS_DONE not in out.columns:
        steps = history.group_by("run_id").agg(pl.col("step").max().cast(pl.Float64).alias(S.S_STEPS_DONE))
        out = out.join(steps, on="run_id", how="left")
    return out


def write_to_mlflow(sweep: ImportedSweep, tracking_uri: str, experiment: str, *, replace: bool = False) -> str:
    """Store an imported sweep as MLflow runs (params, tags, summary metrics and full histories).

    Returns the experiment id. Refuses to write into an experiment that already has runs unless ``replace`` (which
    deletes them first), because importing twice would double every point of every curve."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    existing = client.search_runs([exp_id], max_results=50_000)
    if existing and not replace:
        raise MappingError(f"experiment {experiment!r} already has {len(existing)} runs; pass replace=True")
    for run in existing:
        client.delete_run(run.info.run_id)
    param_cols, tag_cols, metric_cols = _column_kinds(sweep.runs)
    hist = sweep.history.partition_by("run_id", as_dict=True)
    for row in sweep.runs.iter_rows(named=True):
        created = client.create_run(exp_id, run_name=row["run_name"])
        rid = created.info.run_id
        params = [Param(k, _param_str(row[k])) for k in param_cols if row[k] is not None]
        tags = [RunTag(k, str(row[k])) for k in tag_cols if row[k] is not None]
        tags.append(RunTag("import.run_id", row["run_id"]))
        metrics = [Metric(k, float(row[k]), 0, 0) for k in metric_cols
                   if row[k] is not None and k.startswith("summary.")]
        h = hist.get((row["run_id"],))
        if h is not None:
            metrics += [Metric(k, float(v), 0, int(s)) for k, s, v in h.select("key", "step", "value").iter_rows()]
        for start in range(0, max(len(metrics), 1), 1000):  # log_batch limit: 1000 metrics per call
            client.log_batch(rid, metrics=metrics[start:start + 1000],
                             params=params if start == 0 else [], tags=tags if start == 0 else [])
        client.set_terminated(rid)
    return exp_id


def _column_kinds(runs: pl.DataFrame) -> tuple[list[str], list[str], list[str]]:
    """Split the wide columns back into params / tags / metrics by the schema's naming conventions."""
    tag_names = {S.T_SWEEP_ID, S.T_SWEEP_NAME, S.T_RUN_KIND, S.T_CONFIG_HASH, S.T_STATUS, S.T_STATUS_REASON,
                 S.T_SOURCE}
    base = {"run_id", "experiment_id", "experiment", "run_name", "mlflow_status", "start_time", "end_time"}
    metrics = [c for c in runs.columns if c.startswith("summary.") or c in S.HISTORY_METRICS]
    tags = [c for c in runs.columns if c in tag_names or c.startswith("tag:")]
    params = [c for c in runs.columns if c not in base and c not in metrics and c not in tags]
    return params, tags, metrics


def _param_str(v: Any) -> str:
    """Integral floats as integers (``256`` not ``256.0``) so RunConfig.from_flat accepts int fields."""
    if isinstance(v, float) and math.isfinite(v) and v.is_integer():
        return str(int(v))
    return json.dumps(v) if isinstance(v, (list, dict)) else str(v)
