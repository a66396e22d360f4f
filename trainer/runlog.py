"""The small logging interface the training core writes through.

The training loop never imports mlflow: it talks to a ``RunLogger``. Here we ship two sinks that need nothing beyond
the standard library — ``JsonlRunLogger`` (one JSON object per line; what a GPU box without mlflow writes, imported
later with ``python -m trainer import-jsonl``) and ``MemoryRunLogger`` (tests, coord checks). The MLflow sink lives in
trainer.tracking. Metric logging is buffered by every sink so logging costs well under 1 % of a step.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Protocol


class RunLogger(Protocol):
    """Where one run's params, tags, metrics and small JSON artifacts go."""

    def log_params(self, params: dict[str, Any]) -> None: ...

    def set_tags(self, tags: dict[str, str]) -> None: ...

    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...

    def log_json(self, name: str, obj: Any) -> None: ...

    def flush(self) -> None: ...


def _finite_or_none(v: float) -> float | None:
    return v if math.isfinite(v) else None


class MemoryRunLogger:
    """Keeps everything in memory; used by tests and the coordinate check."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}
        self.tags: dict[str, str] = {}
        self.metrics: dict[str, list[tuple[int, float]]] = {}
        self.artifacts: dict[str, Any] = {}

    def log_params(self, params: dict[str, Any]) -> None:
        self.params.update(params)

    def set_tags(self, tags: dict[str, str]) -> None:
        self.tags.update(tags)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        for k, v in metrics.items():
            self.metrics.setdefault(k, []).append((step, float(v)))

    def log_json(self, name: str, obj: Any) -> None:
        self.artifacts[name] = obj

    def flush(self) -> None:
        pass

    def last(self, key: str) -> float:
        return self.metrics[key][-1][1]


class JsonlRunLogger:
    """Appends events to ``<dir>/<run_name>.jsonl``; NaN/inf are written as null with the raw value as a string,
    so a diverged run's last losses survive the round trip. Buffered: written on flush()."""

    def __init__(self, directory: str | Path, run_name: str) -> None:
        self.path = Path(directory) / f"{run_name}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._buffer: list[dict[str, Any]] = []

    def _emit(self, event: dict[str, Any]) -> None:
        event["time"] = time.time()
        self._buffer.append(event)

    def log_params(self, params: dict[str, Any]) -> None:
        self._emit({"type": "params", "data": {k: str(v) for k, v in params.items()}})

    def set_tags(self, tags: dict[str, str]) -> None:
        self._emit({"type": "tags", "data": {k: str(v) for k, v in tags.items()}})
        self.flush()  # status changes must reach disk even if the process dies next

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        data = {k: _finite_or_none(float(v)) for k, v in metrics.items()}
        raw = {k: str(float(v)) for k, v in metrics.items() if data[k] is None}
        event: dict[str, Any] = {"type": "metrics", "step": step, "data": data}
        if raw:
            event["nonfinite"] = raw
        self._emit(event)
        if len(self._buffer) >= 200:
            self.flush()

    def log_json(self, name: str, obj: Any) -> None:
        self._emit({"type": "artifact", "name": name, "data": obj})

    def flush(self) -> None:
        if not self._buffer:
            return
        with self.path.open("a") as f:
            for event in self._buffer:
                f.write(json.dumps(event) + "\n")
        self._buffer.clear()


def read_jsonl_run(path: str | Path) -> MemoryRunLogger:
    """Replay a JSONL run file into memory (the importer's first half). Bad lines raise with file and line."""
    run = MemoryRunLogger()
    path = Path(path)
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
            kind = event["type"]
            if kind == "params":
                run.log_params(event["data"])
            elif kind == "tags":
                run.set_tags(event["data"])
            elif kind == "metrics":
                nonfinite = event.get("nonfinite", {})
                values = {k: float(nonfinite[k]) if v is None else v for k, v in event["data"].items()}
                run.log_metrics(values, int(event["step"]))
            elif kind == "artifact":
                run.log_json(event["name"], event["data"])
            else:
                raise ValueError(f"unknown event type {kind!r}")
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{lineno}: malformed run event ({exc})") from None
    return run
