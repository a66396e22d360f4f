"""MLflow as the run store: where it lives, a buffered RunLogger sink, run lifecycle, and the JSONL importer.

The default store is a SQLite database inside the repository (``mlruns/mlflow.db``) with artifacts next to it
(``mlruns/artifacts/<experiment_id>``), so a shipped ``mlruns/`` is a self-contained store; MLflow's file store is
deprecated and is never used. ``--tracking-uri`` overrides it, then ``MLFLOW_TRACKING_URI``.

mlflow is imported inside the functions that need it: ``python -m trainer --help``, JSONL-only training and the
analysis layer should not pay its ~2.5 s import.

Non-finite metrics: MLflow's SQL stores keep NaN but store ±inf as ±sys.float_info.max (1.797e308); readers
should treat ``abs(v) >= sys.float_info.max`` as infinite.
"""

from __future__ import annotations

import argparse
import math
import os
import sqlite3
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainer import schema
from trainer.provenance import REPO_ROOT
from trainer.runlog import read_jsonl_run

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

DEFAULT_STORE_DIR = REPO_ROOT / "mlruns"
DEFAULT_TRACKING_URI = f"sqlite:///{DEFAULT_STORE_DIR / 'mlflow.db'}"
_SQLITE_PREFIX = "sqlite:///"

# MLflow's batch limits (mlflow.utils.validation): per log_batch call and per value.
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_PARAM_VALUE_CHARS = 6000
MAX_RESULTS_PER_PAGE = 50000  # search_runs page size limit

# MLflow's own run status for each trainer verdict. A run that ends while still saying "running" did not finish.
_MLFLOW_STATUS = {
    None: "FINISHED",  # runs without a trainer verdict (e.g. coordinate checks) that exited normally
    schema.STATUS_RUNNING: "KILLED",
    schema.STATUS_OK: "FINISHED",
    schema.STATUS_DIVERGED: "FINISHED",
    schema.STATUS_FAILED: "FAILED",
    schema.STATUS_INTERRUPTED: "KILLED",
}


# ---- where the store lives -------------------------------------------------------------------------------------
def resolve_tracking_uri(flag: str | None) -> str:
    """The ``--tracking-uri`` flag, else ``MLFLOW_TRACKING_URI``, else the SQLite store inside the repository."""
    return flag or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def add_tracking_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tracking-uri", default=None, metavar="URI",
                        help=f"MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else {DEFAULT_TRACKING_URI})")


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for other stores and in-memory SQLite)."""
    if not tracking_uri.startswith(_SQLITE_PREFIX):
        return None
    path = tracking_uri[len(_SQLITE_PREFIX):].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def client_for(tracking_uri: str) -> MlflowClient:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def ensure_store(tracking_uri: str, experiment_name: str) -> str:
    """Create the store (if new) and the experiment (if new); return the experiment id.

    Call it once in the parent process before any worker starts: several processes opening a brand-new SQLite
    store at once race in MLflow's schema migrations and crash. For SQLite stores the experiment's artifacts go to
    ``<db dir>/artifacts/<experiment_id>`` so the store directory holds everything.
    """
    from mlflow.exceptions import MlflowException

    store = _experiment_store(tracking_uri)
    experiment = store.get_experiment_by_name(experiment_name)
    if experiment is None:
        try:
            return store.create_experiment(experiment_name)
        except MlflowException:  # created meanwhile by another process
            experiment = store.get_experiment_by_name(experiment_name)
            if experiment is None:
                raise
    if experiment.lifecycle_stage != "active":
        raise RuntimeError(f"MLflow experiment {experiment_name!r} is deleted in {tracking_uri}; restore it "
                           "(mlflow experiments restore) or use another name")
    return experiment.experiment_id


def _experiment_store(tracking_uri: str) -> Any:
    """Something with get_experiment_by_name/create_experiment. For SQLite, a store whose default artifact root is
    next to the database (MlflowClient would use ./mlruns relative to the working directory)."""
    path = sqlite_path(tracking_uri)
    if path is None:
        return client_for(tracking_uri)
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    path.parent.mkdir(parents=True, exist_ok=True)
    return SqlAlchemyStore(tracking_uri, str(path.parent.resolve() / "artifacts"))


def artifact_dir(tracking_uri: str, run: Run) -> Path:
    """Local directory of a run's artifacts. MLflow records artifact locations as absolute paths, so a SQLite store
    that was cloned or copied elsewhere (the shipped ``mlruns/``) would point into the old checkout; the canonical
    place next to the database is used when it exists, the recorded location otherwise."""
    db = sqlite_path(tracking_uri)
    if db is not None:
        local = db.parent / "artifacts" / run.info.experiment_id / run.info.run_id / "artifacts"
        if local.is_dir():
            return local
    return Path(run.info.artifact_uri.removeprefix("file://"))


def analyze_store(tracking_uri: str) -> None:
    """Refresh SQLite's query-planner statistics. Without them, metric-history look-ups in a store that grew by a
    sweep fall back to slow plans; cheap to run (well under a second for thousands of runs)."""
    path = sqlite_path(tracking_uri)
    if path is None or not path.exists():
        return
    con = sqlite3.connect(path, timeout=60)
    try:
        con.execute("ANALYZE")
        con.commit()
    finally:
        con.close()


def search_all_runs(client: MlflowClient, experiment_id: str, filter_string: str = "") -> list[Run]:
    """All active runs of an experiment matching ``filter_string``, following pagination (one logical query)."""
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs([experiment_id], filter_string=filter_string, max_results=MAX_RESULTS_PER_PAGE,
                                  page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def tag_filter(key: str, value: str) -> str:
    """A search_runs filter on a tag; dotted keys need quoting (``tags."config.hash" = 'abc'``)."""
    if "'" in value:
        raise ValueError(f"tag value {value!r} for a search filter must not contain a quote")
    return f"tags.\"{key}\" = '{value}'"


# ---- the RunLogger sink --------------------------------------------------------------------------------------
def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


class MlflowRunLogger:
    """RunLogger writing to one MLflow run.

    Metrics are buffered and sent with ``log_batch`` (≤1000 per call) every ``flush_interval_s`` seconds and at
    flush(): one SQLite round trip per interval instead of one per value keeps logging far below 1 % of a step.
    Params are sent at once in batches of 100, tags immediately (a status change must be visible even if the
    process dies next). Before a status tag is written the metric buffer is flushed, so a reader that sees a
    final status also sees all of the run's metrics.
    """

    def __init__(self, client: MlflowClient, run_id: str, flush_interval_s: float = 10.0,
                 max_buffered: int = 20 * MAX_METRICS_PER_BATCH) -> None:
        self.client = client
        self.run_id = run_id
        self.flush_interval_s = flush_interval_s
        self.max_buffered = max_buffered
        self.status: str | None = None  # last run.status tag written, decides MLflow's terminal status
        self._buffer: list[tuple[str, float, int, int]] = []  # key, value, timestamp ms, step
        self._last_flush = time.monotonic()

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:MAX_PARAM_VALUE_CHARS]) for k, v in params.items()]
        for chunk in _chunks(items, MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(self.run_id, params=list(chunk))

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        if schema.T_STATUS in tags:
            self.flush()
            self.status = str(tags[schema.T_STATUS])
        items = [RunTag(k, str(v)) for k, v in tags.items()]
        for chunk in _chunks(items, MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(self.run_id, tags=list(chunk))

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        now_ms = int(time.time() * 1000)
        self._buffer.extend((k, float(v), now_ms, int(step)) for k, v in metrics.items())
        if len(self._buffer) >= self.max_buffered or time.monotonic() - self._last_flush >= self.flush_interval_s:
            self.flush()

    def log_json(self, name: str, obj: Any) -> None:
        self.client.log_dict(self.run_id, obj, name)

    def flush(self) -> None:
        from mlflow.entities import Metric

        self._last_flush = time.monotonic()
        if not self._buffer:
            return
        metrics = [Metric(k, v, ts, step) for k, v, ts, step in self._buffer]
        for chunk in _chunks(metrics, MAX_METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=list(chunk))
        self._buffer.clear()


# ---- run lifecycle -------------------------------------------------------------------------------------------
@contextmanager
def run_in_experiment(tracking_uri: str, experiment_id: str, *, run_name: str | None = None,
                      tags: dict[str, str] | None = None, parent_run_id: str | None = None,
                      flush_interval_s: float = 10.0) -> Iterator[MlflowRunLogger]:
    """Create a run (nested under ``parent_run_id`` if given) and yield its logger; on exit flush and set MLflow's
    status from the trainer's verdict (ok/diverged: FINISHED, failed: FAILED, still running: KILLED).

    An exception escaping the block marks the run failed (tag and status) and propagates; KeyboardInterrupt
    leaves the run.status tag as it was (a resumed sweep marks it interrupted) and sets MLflow status KILLED.
    """
    client = client_for(tracking_uri)
    all_tags = dict(tags or {})
    if parent_run_id:
        all_tags[schema.T_PARENT_RUN_ID] = parent_run_id
    run = client.create_run(experiment_id, run_name=run_name, tags=all_tags)
    logger = MlflowRunLogger(client, run.info.run_id, flush_interval_s=flush_interval_s)
    logger.status = all_tags.get(schema.T_STATUS)
    try:
        yield logger
    except Exception as exc:
        _end_after_error(logger, "FAILED", {schema.T_STATUS: schema.STATUS_FAILED,
                                            schema.T_STATUS_REASON: f"{type(exc).__name__}: {exc}"})
        raise
    except BaseException:
        _end_after_error(logger, "KILLED", {})
        raise
    logger.flush()
    client.set_terminated(logger.run_id, _MLFLOW_STATUS.get(logger.status, "FINISHED"))


def _end_after_error(logger: MlflowRunLogger, mlflow_status: str, tags: dict[str, str]) -> None:
    """Best effort: keep what was buffered and close the run, without masking the original exception."""
    try:
        if tags:
            logger.set_tags(tags)
        logger.flush()
        logger.client.set_terminated(logger.run_id, mlflow_status)
    except Exception as exc:  # the store itself may be the problem
        print(f"warning: could not close MLflow run {logger.run_id}: {exc}", file=sys.stderr)


@contextmanager
def start_run(tracking_uri: str, experiment: str, *, run_name: str | None = None,
              tags: dict[str, str] | None = None, parent_run_id: str | None = None) -> Iterator[MlflowRunLogger]:
    """``run_in_experiment`` by experiment name, creating store and experiment if needed (single-process use such
    as ``python -m trainer train``)."""
    experiment_id = ensure_store(tracking_uri, experiment)
    with run_in_experiment(tracking_uri, experiment_id, run_name=run_name, tags=tags,
                           parent_run_id=parent_run_id) as logger:
        yield logger


# ---- JSONL import ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImportOutcome:
    """What happened to one JSONL file: imported as ``run_id``, or skipped because ``run_id`` already holds it."""

    path: Path
    run_id: str
    skipped: bool


def jsonl_files(paths: Sequence[str | Path]) -> list[Path]:
    """Files as given, directories expanded to their ``*.jsonl`` (sorted, so imports are deterministic)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(p.glob("*.jsonl")))
        elif p.exists():
            out.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or directory")
    return out


def _import_key(tags: dict[str, str]) -> tuple[str, str]:
    return tags.get(schema.T_CONFIG_HASH, ""), tags.get(schema.T_SWEEP_ID, "")


def import_jsonl(paths: Sequence[str | Path], tracking_uri: str, experiment: str) -> list[ImportOutcome]:
    """Turn JsonlRunLogger files into MLflow runs, keeping their run.status tags.

    Idempotent: a file is skipped when the experiment already has a run with the same config hash and sweep id
    that is finished (ok/diverged) or has the same status as the file, so importing twice adds nothing, while a
    file whose run finished after an earlier import of its unfinished state is still imported.
    """
    files = [(path, read_jsonl_run(path)) for path in jsonl_files(paths)]  # a malformed file stops us before writing
    experiment_id = ensure_store(tracking_uri, experiment)
    client = client_for(tracking_uri)
    existing: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for run in search_all_runs(client, experiment_id):
        tags = run.data.tags
        existing.setdefault(_import_key(tags), []).append((tags.get(schema.T_STATUS, ""), run.info.run_id))
    outcomes = []
    for path, mem in files:
        status = mem.tags.get(schema.T_STATUS, schema.STATUS_RUNNING)
        key = _import_key(mem.tags)
        match = next((rid for st, rid in existing.get(key, []) if st == status or st in schema.FINISHED_STATUSES),
                     None)
        if match is not None and key[0]:
            outcomes.append(ImportOutcome(path, match, skipped=True))
            continue
        with run_in_experiment(tracking_uri, experiment_id, run_name=path.stem, tags=mem.tags,
                               flush_interval_s=math.inf) as logger:
            logger.log_params(mem.params)
            for name, history in mem.metrics.items():
                for step, value in history:
                    logger.log_metrics({name: value}, step)
            for name, obj in mem.artifacts.items():
                logger.log_json(name, obj)
        existing.setdefault(key, []).append((status, logger.run_id))
        outcomes.append(ImportOutcome(path, logger.run_id, skipped=False))
    analyze_store(tracking_uri)
    return outcomes


def add_import_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="DIR_OR_FILE", help="JSONL run files, or directories of them")
    parser.add_argument("--experiment", required=True, help="MLflow experiment to import into")
    add_tracking_argument(parser)


def cli_import_jsonl(args: argparse.Namespace) -> int:
    """``python -m trainer import-jsonl``: 0 when every file was imported or already present, 2 on a bad file."""
    uri = resolve_tracking_uri(args.tracking_uri)
    try:
        outcomes = import_jsonl(args.paths, uri, args.experiment)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for o in outcomes:
        print(f"{'skipped' if o.skipped else 'imported'} {o.path} "
              f"({'already in run' if o.skipped else 'run'} {o.run_id})")
    n_new = sum(not o.skipped for o in outcomes)
    print(f"{n_new} imported, {len(outcomes) - n_new} already present, experiment {args.experiment!r} in {uri}")
    return 0
