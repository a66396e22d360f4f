"""Runs from an MLflow tracking store into one polars table (one row per run); histories only on demand.

Why not ``mlflow.search_runs``: it builds Python entity objects for every param/tag/metric and costs ~1.5 s per
1k runs. A local SQLite store is just four tables, so we read each with one query and pivot in polars (10k runs in
well under a second), and cache the result keyed on the database file's size and mtime (plus its WAL file), so the
dashboard re-reads only when a run was written. Remote stores (http://, databricks, …) go through the MLflow API.

Table layout (the contract every analysis function and the dashboard rely on):

* ``run_id``, ``experiment_id``, ``experiment``, ``run_name``, ``mlflow_status``, ``start_time``, ``end_time``
  (ms since epoch);
* every param under its own name (``model.width``, ``hp.lr`` …). MLflow stores params as strings; a param column
  is cast to Float64 when every non-null value parses as a number, else it stays a string (then the analysis
  marks a run whose value does not parse as invalid instead of crashing);
* every tag under its own name (``sweep.id``, ``run.status`` …), strings;
* every latest metric value under its own name (``summary.final_val_loss``, and the last ``train.loss`` …) as
  Float64 with NaN/±inf restored (MLflow stores NaN as 0 with is_nan=1 and inf as ±1.797e308).

A name used by more than one of params/tags/metrics (never the case in trainer.schema) keeps the param name and
gets a ``tag:``/``metric:`` prefix for the others, so no value is silently dropped.
"""

from __future__ import annotations

import math
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import polars as pl

from trainer import schema as S
from trainer.tracking import DEFAULT_TRACKING_URI

RUN_COLUMNS = ("run_id", "experiment_id", "experiment", "run_name", "mlflow_status", "start_time", "end_time")
_FLOAT_MAX = 1.7976931348623157e308
_CACHE: dict[tuple, pl.DataFrame] = {}
_CACHE_LOCK = threading.Lock()
_CACHE_MAX = 8


def default_tracking_uri() -> str:
    """The repo's own store, ``sqlite:///<repo>/mlruns/mlflow.db``: the trainer's default, defined there."""
    return DEFAULT_TRACKING_URI


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (SQLAlchemy form: ``sqlite:///rel.db`` is relative,
    ``sqlite:////abs.db`` absolute), else None (a remote or non-SQLite store)."""
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix):
        return None
    return Path(unquote(tracking_uri[len(prefix):].split("?", 1)[0]))


@dataclass(frozen=True)
class StoreStamp:
    """What must change for a cached table to be stale: size and mtime of the db and its WAL file."""

    path: str
    size: int
    mtime_ns: int
    wal_size: int
    wal_mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> StoreStamp:
        st = path.stat()
        wal = Path(str(path) + "-wal")
        wst = wal.stat() if wal.exists() else None
        return cls(str(path.resolve()), st.st_size, st.st_mtime_ns,
                   wst.st_size if wst else 0, wst.st_mtime_ns if wst else 0)


def load_runs(tracking_uri: str | None = None, experiments: str | Sequence[str] | None = None, *,
              use_cache: bool = True) -> pl.DataFrame:
    """All non-deleted runs of the named experiments (all experiments when None) as one table (layout above).

    An unknown experiment name raises ``LookupError`` naming the experiments that exist, because a typo in a
    dashboard or CLI argument should not look like an empty sweep. An experiment without runs gives an empty table
    with the run columns."""
    uri = tracking_uri or default_tracking_uri()
    names = [experiments] if isinstance(experiments, str) else (list(experiments) if experiments else None)
    db = sqlite_path(uri)
    if db is None:
        return _load_via_api(uri, names)
    if not db.exists():
        raise FileNotFoundError(f"no MLflow database at {db} (tracking URI {uri})")
    key = (StoreStamp.of(db), tuple(names) if names else None)
    if use_cache:
        with _CACHE_LOCK:
            hit = _CACHE.get(key)
        if hit is not None:
            return hit
    df = _load_sqlite(db, names)
    if use_cache:
        with _CACHE_LOCK:
            if len(_CACHE) >= _CACHE_MAX:
                _CACHE.pop(next(iter(_CACHE)))
            _CACHE[key] = df
    return df


def clear_cache() -> None:
    """Forget every cached table (tests; the stamp check makes this unnecessary in normal use)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def list_experiments(tracking_uri: str | None = None) -> list[str]:
    """Names of the active experiments, for pickers and error messages."""
    uri = tracking_uri or default_tracking_uri()
    db = sqlite_path(uri)
    if db is None:
        from mlflow.tracking import MlflowClient

        return [e.name for e in MlflowClient(uri).search_experiments()]
    with _connect(db) as con:
        return [r[0] for r in con.execute("SELECT name FROM experiments WHERE lifecycle_stage = 'active'")]


def latest_experiment(tracking_uri: str | None = None) -> str | None:
    """The active experiment whose most recent run (by start time, coordinate checks aside) started last, or None
    for a store without such runs: what someone opening the dashboard without naming an experiment most likely
    wants.

    SQLite: one query that reads the runs' start times and their ``run.kind`` tags, a few milliseconds at 10k runs,
    where building the whole run table (load_runs) took ~0.5 s of the dashboard's first page. Other stores: the
    MLflow API, newest runs first, one page at a time until a run that is not a coordinate check."""
    uri = tracking_uri or default_tracking_uri()
    db = sqlite_path(uri)
    if db is None:
        return _latest_via_api(uri)
    with _connect(db) as con:
        row = con.execute(
            "SELECT e.name FROM runs r JOIN experiments e ON r.experiment_id = e.experiment_id "
            "WHERE r.lifecycle_stage = 'active' AND e.lifecycle_stage = 'active' AND NOT EXISTS ("
            "  SELECT 1 FROM tags t WHERE t.run_uuid = r.run_uuid AND t.key = ? AND t.value = ?) "
            "ORDER BY r.start_time IS NULL, r.start_time DESC LIMIT 1", (S.T_RUN_KIND, S.RUN_KIND_COORD)).fetchone()
    return row[0] if row else None


def _latest_via_api(uri: str) -> str | None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    names = {e.experiment_id: e.name for e in client.search_experiments()}
    token = None
    while names:
        page = client.search_runs(list(names), order_by=["attributes.start_time DESC"], max_results=1000,
                                  page_token=token)
        for run in page:
            if run.data.tags.get(S.T_RUN_KIND) != S.RUN_KIND_COORD:
                return names[run.info.experiment_id]
        token = page.token
        if not token:
            break
    return None


def _connect(db: Path) -> sqlite3.Connection:
    # Read-only so that a dashboard can never lock or modify the store the trainer writes to.
    return sqlite3.connect(db.resolve().as_uri() + "?mode=ro", uri=True)


def _load_sqlite(db: Path, names: list[str] | None) -> pl.DataFrame:
    with _connect(db) as con:
        exps = con.execute(
            "SELECT experiment_id, name FROM experiments WHERE lifecycle_stage = 'active'").fetchall()
        by_name = {name: eid for eid, name in exps}
        if names is not None:
            missing = [n for n in names if n not in by_name]
            if missing:
                raise LookupError(f"unknown experiment(s) {missing}; the store has {sorted(by_name)}")
            ids = [by_name[n] for n in names]
        else:
            ids = [eid for eid, _ in exps]
        if not ids:
            return _empty_runs()
        qmarks = ",".join("?" * len(ids))
        run_filter = (f"run_uuid IN (SELECT run_uuid FROM runs WHERE lifecycle_stage = 'active' "
                      f"AND experiment_id IN ({qmarks}))")
        runs = _query(con, f"SELECT r.run_uuid, r.experiment_id, e.name, r.name, r.status, r.start_time, r.end_time "
                           f"FROM runs r JOIN experiments e ON r.experiment_id = e.experiment_id "
                           f"WHERE r.lifecycle_stage = 'active' AND r.experiment_id IN ({qmarks})", ids,
                      {"run_id": pl.Utf8, "experiment_id": pl.Utf8, "experiment": pl.Utf8, "run_name": pl.Utf8,
                       "mlflow_status": pl.Utf8, "start_time": pl.Int64, "end_time": pl.Int64})
        if runs.is_empty():
            return _empty_runs()
        params = _query(con, f"SELECT run_uuid, key, value FROM params WHERE {run_filter}", ids,
                        {"run_id": pl.Utf8, "key": pl.Utf8, "value": pl.Utf8})
        tags = _query(con, f"SELECT run_uuid, key, value FROM tags WHERE {run_filter}", ids,
                      {"run_id": pl.Utf8, "key": pl.Utf8, "value": pl.Utf8})
        metrics = _query(con, f"SELECT run_uuid, key, value, is_nan FROM latest_metrics WHERE {run_filter}", ids,
                         {"run_id": pl.Utf8, "key": pl.Utf8, "value": pl.Float64, "is_nan": pl.Int64})
    metrics = metrics.with_columns(
        pl.when(pl.col("is_nan") == 1).then(float("nan"))
        .when(pl.col("value") >= _FLOAT_MAX).then(math.inf)
        .when(pl.col("value") <= -_FLOAT_MAX).then(-math.inf)
        .otherwise(pl.col("value")).alias("value")).drop("is_nan")
    return assemble(runs, params, tags, metrics)


def _query(con: sqlite3.Connection, sql: str, args: Sequence, schema: dict[str, type]) -> pl.DataFrame:
    rows = con.execute(sql, list(args)).fetchall()
    return pl.DataFrame(rows, schema=schema, orient="row")


def _empty_runs() -> pl.DataFrame:
    return pl.DataFrame(schema={"run_id": pl.Utf8, "experiment_id": pl.Utf8, "experiment": pl.Utf8,
                                "run_name": pl.Utf8, "mlflow_status": pl.Utf8, "start_time": pl.Int64,
                                "end_time": pl.Int64})


def _wide(long: pl.DataFrame) -> pl.DataFrame:
    if long.is_empty():
        return pl.DataFrame(schema={"run_id": pl.Utf8})
    return long.pivot(on="key", index="run_id", values="value", aggregate_function="last")


def assemble(runs: pl.DataFrame, params: pl.DataFrame, tags: pl.DataFrame, metrics: pl.DataFrame) -> pl.DataFrame:
    """Join the run rows with the long-format params/tags/metrics (columns run_id, key, value) into the wide table.

    Shared by the SQLite reader and the importers, so both produce exactly the same layout."""
    taken = set(runs.columns)
    out = runs
    for long, prefix, numeric in ((params, "", True), (tags, "tag:", False), (metrics, "metric:", False)):
        wide = _wide(long)
        renames = {c: (prefix + c if c in taken else c) for c in wide.columns if c != "run_id"}
        wide = wide.rename(renames)
        taken.update(renames.values())
        if numeric:
            wide = wide.with_columns([_maybe_numeric(wide[c]) for c in wide.columns if c != "run_id"])
        out = out.join(wide, on="run_id", how="left")
    return out


def _maybe_numeric(col: pl.Series) -> pl.Series:
    """Float64 when every non-null value parses as a number (``"128"``, ``"3e-3"``), else unchanged."""
    if col.dtype != pl.Utf8:
        return col
    cast = col.cast(pl.Float64, strict=False)
    if cast.null_count() == col.null_count():
        return cast
    return col


def _load_via_api(uri: str, names: list[str] | None) -> pl.DataFrame:
    """Remote stores: one ``search_runs`` call, then the same renaming as the SQLite path."""
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exps = {e.name: e.experiment_id for e in client.search_experiments()}
    if names is not None:
        missing = [n for n in names if n not in exps]
        if missing:
            raise LookupError(f"unknown experiment(s) {missing}; the store has {sorted(exps)}")
        ids = [exps[n] for n in names]
    else:
        ids = list(exps.values())
    if not ids:
        return _empty_runs()
    mlflow.set_tracking_uri(uri)
    pdf = mlflow.search_runs(experiment_ids=ids, max_results=1_000_000, output_format="pandas")
    if pdf.empty:
        return _empty_runs()
    id_to_name = {v: k for k, v in exps.items()}
    df = pl.from_pandas(pdf)
    runs = pl.DataFrame({
        "run_id": df["run_id"], "experiment_id": df["experiment_id"].cast(pl.Utf8),
        "experiment": df["experiment_id"].cast(pl.Utf8).replace_strict(id_to_name, default=None),
        "run_name": df["tags.mlflow.runName"] if "tags.mlflow.runName" in df.columns else pl.Series([None] * len(df)),
        "mlflow_status": df["status"],
        "start_time": _to_ms(df["start_time"]), "end_time": _to_ms(df["end_time"]),
    }).with_columns(pl.col("run_name").cast(pl.Utf8))
    longs = []
    for prefix, dtype in (("params.", pl.Utf8), ("tags.", pl.Utf8), ("metrics.", pl.Float64)):
        cols = [c for c in df.columns if c.startswith(prefix)]
        long = (df.select(["run_id", *cols]).rename({c: c[len(prefix):] for c in cols})
                .with_columns([pl.col(c[len(prefix):]).cast(dtype) for c in cols])
                .unpivot(index="run_id", variable_name="key", value_name="value")
                .drop_nulls("value")) if cols else pl.DataFrame(schema={"run_id": pl.Utf8, "key": pl.Utf8,
                                                                        "value": dtype})
        longs.append(long)
    # search_runs returns MLflow's stored ±1.797e308 for ±inf and drops NaN (null here; the trainer's
    # run.status tag still marks such runs diverged).
    longs[2] = longs[2].with_columns(pl.when(pl.col("value") >= _FLOAT_MAX).then(math.inf)
                                     .when(pl.col("value") <= -_FLOAT_MAX).then(-math.inf)
                                     .otherwise(pl.col("value")).alias("value"))
    return assemble(runs, *longs)


def _to_ms(col: pl.Series) -> pl.Series:
    if col.dtype.is_temporal():
        return col.dt.epoch("ms")
    return col.cast(pl.Int64, strict=False)


def load_history(run_ids: Iterable[str], keys: Iterable[str], tracking_uri: str | None = None) -> pl.DataFrame:
    """Metric histories (columns run_id, key, step, value) for a few runs, for plots and late-blow-up checks.

    SQLite: one query; other stores: one ``get_metric_history`` per (run, key), so keep the run list short."""
    uri = tracking_uri or default_tracking_uri()
    run_ids, keys = list(run_ids), list(keys)
    schema = {"run_id": pl.Utf8, "key": pl.Utf8, "step": pl.Int64, "value": pl.Float64}
    if not run_ids or not keys:
        return pl.DataFrame(schema=schema)
    db = sqlite_path(uri)
    if db is not None:
        with _connect(db) as con:
            rows: list[tuple] = []
            for start in range(0, len(run_ids), 900):  # SQLite's bound-parameter limit
                chunk = run_ids[start:start + 900]
                rows += con.execute(
                    f"SELECT run_uuid, key, step, CASE WHEN is_nan THEN NULL ELSE value END, is_nan FROM metrics "
                    f"WHERE run_uuid IN ({','.join('?' * len(chunk))}) AND key IN ({','.join('?' * len(keys))}) "
                    f"ORDER BY run_uuid, key, step, timestamp", chunk + keys).fetchall()
        df = pl.DataFrame(rows, schema={**schema, "is_nan": pl.Int64}, orient="row")
        return df.with_columns(
            pl.when(pl.col("is_nan") == 1).then(float("nan"))
            .when(pl.col("value") >= _FLOAT_MAX).then(math.inf)
            .when(pl.col("value") <= -_FLOAT_MAX).then(-math.inf)
            .otherwise(pl.col("value")).alias("value")).drop("is_nan")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    rows = [(rid, key, m.step, m.value) for rid in run_ids for key in keys
            for m in client.get_metric_history(rid, key)]
    return pl.DataFrame(rows, schema=schema, orient="row")


def store_signature(tracking_uri: str | None = None) -> str:
    """A short string that changes whenever a local store changes (for the dashboard's own caches)."""
    db = sqlite_path(tracking_uri or default_tracking_uri())
    if db is None or not db.exists():
        return "remote"
    st = StoreStamp.of(db)
    return f"{st.size}-{st.mtime_ns}-{st.wal_size}-{st.wal_mtime_ns}"
