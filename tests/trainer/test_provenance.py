"""Provenance tags: a run made from a checkout whose only change is the tracked store it writes into is clean."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from trainer import provenance, schema


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                   capture_output=True)


def test_dirty_ignores_the_store_but_not_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mlruns").mkdir()
    (tmp_path / "mlruns" / "mlflow.db").write_bytes(b"v1")
    (tmp_path / "train.py").write_text("x = 1\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "init")
    monkeypatch.setattr(provenance, "REPO_ROOT", tmp_path)

    (tmp_path / "mlruns" / "mlflow.db").write_bytes(b"v2")  # a sweep writing into the shipped store
    tags = provenance.provenance_tags()
    assert tags[schema.T_GIT_DIRTY] == "false" and len(tags[schema.T_GIT_COMMIT]) == 40

    (tmp_path / "train.py").write_text("x = 2\n")  # an uncommitted code change
    assert provenance.provenance_tags()[schema.T_GIT_DIRTY] == "true"
