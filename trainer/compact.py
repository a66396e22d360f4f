"""Shrink a SQLite MLflow store for shipping: thinned metric histories, summaries untouched.

The shipped ``mlruns/`` must stay small (issue 6: "summaries plus thinned histories", about 50 MB) while the dashboard
still draws every run's training curve. Each metric history keeps at most ``max_points`` evenly spaced points, always
its first and its last, so a curve keeps its shape and its end, and MLflow's ``latest_metrics`` (what the analysis
reads) stays what it was. Histories that are derived from the config or only describe the machine (the LR schedule
factor, throughput) keep only their last point; their summaries carry what the analysis uses. Then ``VACUUM`` returns
the space and ``ANALYZE`` refreshes the query planner's statistics.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from trainer import schema

LAST_ONLY: tuple[str, ...] = (schema.M_LR_SCALE, schema.M_TOKENS_PER_S, schema.M_MFU)


@dataclass(frozen=True)
class CompactResult:
    rows_before: int
    rows_after: int
    bytes_before: int
    bytes_after: int


# Rank of each history point within its (run, key) series and the series length; a point is kept when it is the
# last one, or the first of its bucket when the series is cut into ``cap`` equal buckets (cap 1: last only).
_DROP = """
WITH ranked AS (
    SELECT rowid AS rid, key,
           ROW_NUMBER() OVER (PARTITION BY run_uuid, key ORDER BY step, timestamp) - 1 AS i,
           COUNT(*) OVER (PARTITION BY run_uuid, key) AS n
    FROM metrics
), capped AS (
    SELECT rid, i, n, CASE WHEN key IN ({last_only}) THEN 1 ELSE ? END AS cap FROM ranked
)
DELETE FROM metrics WHERE rowid IN (
    SELECT rid FROM capped
    WHERE n > cap AND i != n - 1
      AND (cap = 1 OR (i > 0 AND (i * (cap - 1)) / (n - 1) = ((i - 1) * (cap - 1)) / (n - 1)))
)
"""


def compact_store(db_path: Path, max_points: int = 20, last_only: Sequence[str] = LAST_ONLY) -> CompactResult:
    """Thin every metric history of the SQLite store at ``db_path`` (module docstring), then VACUUM and ANALYZE."""
    if max_points < 2:
        raise ValueError(f"max_points must be at least 2 (the first and the last point), got {max_points}")
    if not db_path.is_file():
        raise FileNotFoundError(f"no SQLite store at {db_path}")
    bytes_before = db_path.stat().st_size
    con = sqlite3.connect(db_path, timeout=60)
    try:
        before = con.execute("SELECT COUNT(*) FROM metrics").fetchone()[0]
        marks = ", ".join("?" for _ in last_only) or "NULL"
        con.execute(_DROP.format(last_only=marks), (*last_only, max_points))
        con.commit()
        after = con.execute("SELECT COUNT(*) FROM metrics").fetchone()[0]
        con.execute("VACUUM")
        con.execute("ANALYZE")
        con.commit()
    finally:
        con.close()
    return CompactResult(before, after, bytes_before, db_path.stat().st_size)


def add_compact_arguments(parser: argparse.ArgumentParser) -> None:
    from trainer import tracking

    tracking.add_tracking_argument(parser)
    parser.add_argument("--max-points", type=int, default=20, help="history points kept per run and metric")


def cli_compact(args: argparse.Namespace) -> int:
    """``python -m trainer compact-store``: 2 when the store is not a local SQLite file."""
    from trainer import tracking

    uri = tracking.resolve_tracking_uri(args.tracking_uri)
    path = tracking.sqlite_path(uri)
    if path is None:
        print(f"error: compact-store works on SQLite stores only, not {uri}", file=sys.stderr)
        return 2
    try:
        r = compact_store(path, args.max_points)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{path}: metric rows {r.rows_before} -> {r.rows_after}, "
          f"{r.bytes_before / 1e6:.1f} MB -> {r.bytes_after / 1e6:.1f} MB")
    return 0
