"""A tiny sweep spec and store queries shared by the cluster tests."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from trainer import schema, tracking

if TYPE_CHECKING:
    from mlflow.entities import Run

ROOT = Path(__file__).resolve().parents[2]

# Four configs of one shape that train in about a second each on one CPU thread.
LRS = [0.004, 0.008, 0.016, 0.032]


def write_spec(directory: Path, experiment: str) -> Path:
    """A 4-point sweep on a small corpus (reading it is part of every worker's start-up)."""
    corpus = directory / "corpus.txt"
    corpus.write_text("To be, or not to be, that is the question. " * 400)
    base: dict[str, Any] = {
        "model": {"width": 32, "depth": 1, "head_dim": 16, "seq_len": 32},
        "param": {"name": "mup", "base_width": 32, "base_depth": 1},
        "train": {"batch_size": 4, "steps": 12, "eval_every": 6, "eval_batches": 2, "log_every": 3,
                  "device": "cpu"},
        "data": {"source": str(corpus)},
    }
    spec = {"name": experiment, "experiment": experiment, "base": base, "hparams": {"hp.lr": LRS}}
    path = directory / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def children(uri: str, experiment: str) -> list[Run]:
    """Every training run of the experiment (sweep parents left out)."""
    client = tracking.client_for(uri)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    return [r for r in tracking.search_all_runs(client, experiment_id)
            if r.data.tags.get(schema.T_RUN_KIND) == schema.RUN_KIND_TRAIN]


def finished_per_config(runs: list[Run]) -> Counter[str]:
    """How many finished (ok/diverged) runs each config hash has: exactly once means 1 for every config."""
    return Counter(r.data.tags[schema.T_CONFIG_HASH] for r in runs
                   if r.data.tags.get(schema.T_STATUS) in schema.FINISHED_STATUSES)
