"""Where a run came from: git commit, dirty flag, host and command line, stamped on every run as tags."""

from __future__ import annotations

import shlex
import socket
import subprocess
import sys
from pathlib import Path

from trainer import schema

REPO_ROOT = Path(__file__).resolve().parent.parent


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def provenance_tags() -> dict[str, str]:
    """Tags that let a reader reproduce a run: commit (or "unknown" outside a checkout), dirty flag, host, command."""
    commit = _git("rev-parse", "HEAD") or "unknown"
    # The store a sweep writes into may be tracked (the shipped mlruns/): it is data, not code, and would otherwise
    # mark every shipped run dirty.
    status = _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)mlruns")
    return {
        schema.T_GIT_COMMIT: commit,
        schema.T_GIT_DIRTY: "unknown" if status is None else str(bool(status)).lower(),
        schema.T_HOST: socket.gethostname(),
        schema.T_COMMAND: " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv]),
    }
