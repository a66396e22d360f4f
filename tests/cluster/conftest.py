"""Session fixtures for the cluster tests: PostgreSQL and an MLflow tracking server on it (both on loopback) and a
Ray head node (with a token: Ray binds the node's address), started with the scripts that docs/cluster.md tells
users to run (so the tests exercise the documented steps), and always stopped at teardown. A fixture whose parts
are missing skips its tests with the reason; .ci/run installs them, so in CI they run.

Only what a fixture started is stopped: PostgreSQL through pg_ctl on its own data directory, the MLflow server and
the Ray head (with the workers of its raylet) through their own process groups (each is started in a new session).
"""

from __future__ import annotations

import glob
import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cluster.helpers import ROOT

SCRIPTS = ROOT / "scripts" / "cluster"
START_TIMEOUT_S = 180  # the first start of the MLflow server creates its tables in PostgreSQL


def free_port() -> int:
    """A TCP port nobody listens on right now (the server that gets it binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until(ready: Callable[[], bool], proc: subprocess.Popen, log: Path, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            pytest.fail(f"{what} did not start (exit code {proc.poll()}); its log ends with:\n{tail}")
        time.sleep(0.5)


def _stop_group(proc: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM the process group started for ``proc``, then SIGKILL whatever is left of it after ``grace_s``."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    except ProcessLookupError:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


@pytest.fixture(scope="session")
def postgres_uri() -> Iterator[str]:
    """A fresh PostgreSQL cluster with an ``mlflow`` role and database; yields the backend store URI."""
    if not (shutil.which("pg_ctl") or glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")):
        pytest.skip("PostgreSQL binaries not found (apt-get install postgresql; .ci/run installs them)")
    # Not under pytest's tmp_path: as root the server runs as `postgres`, which cannot enter pytest's private
    # directories. mkdtemp gives a short path too (the server's socket lives in it).
    data = tempfile.mkdtemp(prefix="hpt-pg-")
    env = {**os.environ, "PGPORT": str(free_port()), "MLFLOW_DB_PASSWORD": secrets.token_hex(16)}
    try:
        out = subprocess.run([str(SCRIPTS / "start_postgres.sh"), data], env=env, capture_output=True, text=True,
                             timeout=START_TIMEOUT_S)
        if out.returncode != 0:
            pytest.fail(f"start_postgres.sh failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
        yield out.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run([str(SCRIPTS / "stop_postgres.sh"), data], capture_output=True, timeout=60)
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="session")
def mlflow_server(postgres_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``mlflow server`` on the PostgreSQL store with proxied artifacts in a temporary directory; yields its URI."""
    pytest.importorskip("psycopg", reason="the MLflow server needs psycopg for PostgreSQL (requirements.txt)")
    work = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log = work / "server.log"
    env = {**os.environ, "MLFLOW_BACKEND_STORE_URI": postgres_uri, "PORT": str(port), "WORKERS": "1"}
    with log.open("w") as sink:
        proc = subprocess.Popen([str(SCRIPTS / "start_mlflow_server.sh"), str(work / "artifacts")], env=env,
                                stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    try:
        _wait_until(healthy, proc, log, "mlflow server")
        yield uri
    finally:
        _stop_group(proc, grace_s=15)


@dataclass(frozen=True)
class RayHead:
    """A running Ray head: its address, and the environment a sweep driver needs to use it (the address, the
    authentication token, the repository on PYTHONPATH)."""

    address: str
    env: dict[str, str]


@pytest.fixture(scope="session")
def ray_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayHead]:
    """A Ray head node with 2 CPUs (so two runs train at once) and token authentication. Ray binds the node's
    address, never loopback alone, hence the token even for a test cluster. Drivers run as subprocesses with
    ``RayHead.env`` (Ray reads its authentication mode once, at import)."""
    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is not installed (requirements.txt)")
    port = free_port()
    log = tmp_path_factory.mktemp("ray") / "head.log"
    temp = tempfile.mkdtemp(prefix="hpt-ray-")  # short: Ray's socket paths must stay under 108 bytes
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
           "RAY_ADDRESS": f"127.0.0.1:{port}", "PYTHONPATH": str(ROOT)}
    args = ["--num-cpus=2", "--include-dashboard=false", f"--ray-client-server-port={free_port()}",
            f"--object-store-memory={128 * 1024**2}", f"--temp-dir={temp}", "--block"]
    with log.open("w") as sink:
        proc = subprocess.Popen([str(SCRIPTS / "start_ray_head.sh"), *args], env={**env, "RAY_PORT": str(port)},
                                stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_until(lambda: "Ray runtime started" in log.read_text(errors="replace"), proc, log, "ray head")
        yield RayHead(env["RAY_ADDRESS"], env)
    finally:
        _stop_group(proc, grace_s=5)  # Ray drains for up to 30 s on SIGTERM; a test cluster has nothing to save
        shutil.rmtree(temp, ignore_errors=True)
