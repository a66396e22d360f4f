"""Shared test fixtures: tiny configs that train in about a second on 2 CPU cores."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from trainer.config import RunConfig

TINY = {
    "model": {"width": 32, "depth": 2, "head_dim": 16, "seq_len": 32},
    "param": {"name": "mup", "base_width": 32, "base_depth": 2},
    "train": {"batch_size": 4, "steps": 20, "eval_every": 10, "eval_batches": 2, "log_every": 5, "device": "cpu"},
    "hp": {"lr": 1e-2},
}


def tiny_config(**overrides: object) -> RunConfig:
    """The tiny config with dotted-key overrides, e.g. tiny_config(**{"model.width": 64})."""
    cfg = RunConfig.from_dict(TINY)
    return cfg.with_overrides(dict(overrides)) if overrides else cfg


@pytest.fixture
def tiny() -> RunConfig:
    return tiny_config()


@pytest.fixture(scope="session")
def _migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, migrated SQLite store; creating one costs ~2 s of MLflow migrations, copying it costs nothing."""
    from trainer import tracking

    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    tracking.ensure_store(f"sqlite:///{path}", "template")
    return path


@pytest.fixture
def store_uri(tmp_path: Path, _migrated_db: Path) -> str:
    """A private SQLite store per test, never the repository's mlruns/."""
    (tmp_path / "store").mkdir()
    shutil.copy(_migrated_db, tmp_path / "store" / "mlflow.db")
    return f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
