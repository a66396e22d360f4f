"""Start the dashboard the way scripts/dashboard.sh does, on a free loopback port, and the browser to look at it.

Shared by the end-to-end test and the render benchmark, so both measure the app as a user starts it: Debian's
Chromium with the flags this sandbox needs (never a browser downloaded by Playwright), Streamlit headless and
without usage statistics.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def free_port() -> int:
    """A port nobody listens on now, chosen by the OS (never a fixed one)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_dashboard(uri: str, port: int, log: Path, *, warm_up: bool = True) -> subprocess.Popen:
    """The dashboard on 127.0.0.1:port over ``uri`` (the flag wins over any MLFLOW_TRACKING_URI), started by
    app.launch like scripts/dashboard.sh; ``warm_up=False`` passes ``--no-warm-up``."""
    cmd = [sys.executable, "-m", "app.launch", "--tracking-uri", uri, "--server.address", "127.0.0.1",
           "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
           *([] if warm_up else ["--no-warm-up"])]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Until Streamlit's health endpoint answers; raises if the process died or the time ran out."""
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{url} not healthy after {timeout} s")
