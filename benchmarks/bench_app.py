"""Benchmark: how fast the dashboard's Transfer page is on a 10k-run experiment, in a real browser.

Builds a synthetic store the way benchmarks/bench_load.py does (MLflow creates the schema and one real run; the
runs are bulk-inserted with sqlite3 in MLflow's own layout), but with the shape of a real transfer study so that
every analysis step does its full work: SP and μP × 5 widths × 4 depths × 25 learning rates (2^-14 … 2^-2 in
half-octave steps) × 10 seeds = 10,000 runs, loss quadratic in log2 LR around an optimum that is flat in width
for μP and drifts by −1 per doubling under SP, with seed noise, and runs above a stability edge diverged (NaN).

Then starts the dashboard as ``scripts/dashboard.sh`` does (``python -m app.launch``: the first pages' analysis is
computed in the server process while Streamlit starts; ``--no-warm-up`` measures the app without that, as
``streamlit run app/Home.py`` starts it) and drives Debian's Chromium with Playwright, ``--servers N`` fresh
dashboard processes in turn on one port, one browser throughout:

* server start: from launching the process until Streamlit's health endpoint answers;
* warm-up done: from launching the process until it logged the end of its warm-up (servers that wait for it);
* first visit: the first server's first page open, as soon as it answers, in a browser that has never loaded the
  dashboard (Streamlit's ~300 JavaScript files fetched and compiled);
* first open at start: the first page open of every other odd-numbered server, as soon as it answers, in the
  browser that has loaded the dashboard before (a user restarting the dashboard and reloading at once): the open
  waits for whatever the warm-up has not finished;
* first open after warm-up: the same on the even-numbered servers, opened once the warm-up has logged its end (a
  user who opens the page a few seconds after starting the dashboard; with ``--no-warm-up``, at once);
* warm open: the same URL again (a new Streamlit session on a server that has drawn the page);
* change parameterization / axis: a selectbox pick (fit cached or not; new charts).

"Interactive" = Streamlit's script state is notRunning, no skeleton is left and Vega has drawn every chart.
For scale, the first visit of a blank Streamlit page (one line of text, no analysis) in a fresh browser is also
timed: the part of a first visit that no app code can remove on this machine.
Also reported: the dashboard process's peak resident memory (VmHWM from /proc, the goal is < 1 GB at 10k runs) and
the machine's load average before and after, since the numbers move with whatever else runs on the box.
Usage: python benchmarks/bench_app.py [--runs 10000] [--repeat 3] [--servers 5] [--no-warm-up]
                                     [--out benchmarks/results/bench_app.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.serve import CHROMIUM, CHROMIUM_ARGS, free_port, start_dashboard, wait_healthy  # noqa: E402
from benchmarks.bench_load import insert_rows, new_store  # noqa: E402
from trainer import schema as S  # noqa: E402

EXPERIMENT = "bench-transfer"
SETTLED = """() => {
    const app = document.querySelector('[data-testid="stApp"]');
    if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
    if (document.querySelector('[data-testid="stSkeleton"]')) return false;
    const charts = document.querySelectorAll('.vega-embed').length;
    return charts > 0 && charts === document.querySelectorAll('.vega-embed canvas, .vega-embed svg.marks').length;
}"""


def build_store(path: Path, n_runs: int, seed: int = 0) -> str:
    """A synthetic transfer study of about ``n_runs`` runs (module docstring) at ``path``; returns its URI."""
    uri, exp_id = new_store(path, EXPERIMENT)
    rng = random.Random(seed)
    widths, depths = [128, 256, 512, 1024, 2048], [2, 4, 8, 16]
    log2_lrs = [-14 + 0.5 * k for k in range(25)]
    n_seeds = max(1, round(n_runs / (2 * len(widths) * len(depths) * len(log2_lrs))))
    runs, params, tags, latest = [], [], [], []
    now = int(time.time() * 1000)
    i = 0
    for param in ("sp", "mup"):
        for width in widths:
            for depth in depths:
                doublings = math.log2(width / widths[0])
                opt = -7.0 - (doublings if param == "sp" else 0.0) - 0.2 * math.log2(depth / 2)
                edge = opt + 3.0
                floor = 3.0 - 0.15 * doublings - 0.05 * math.log2(depth)
                for log2_lr in log2_lrs:
                    for s in range(n_seeds):
                        rid = uuid.uuid4().hex
                        name = f"param={param} width={width} depth={depth} lr=2^{log2_lr:g} seed={s}"
                        runs.append((rid, name, "LOCAL", "bench", "", "bench", "FINISHED", now + i, now + i + 1000,
                                     "", "active", f"/tmp/artifacts/{rid}", int(exp_id)))
                        p = {"model.width": width, "model.depth": depth, "hp.lr": 2.0 ** log2_lr,
                             "param.name": param, "train.batch_size": 32, "train.tokens": 0, "train.steps": 1000,
                             "train.seed": s, "model.seq_len": 256, S.P_STEPS: 1000, "model.head_dim": 64}
                        params += [(k, str(v), rid) for k, v in p.items()]
                        diverged = log2_lr > edge
                        loss = math.nan if diverged else floor + 0.02 * (log2_lr - opt) ** 2 + rng.gauss(0, 0.004)
                        t = {S.T_SWEEP_ID: "bench-1", S.T_SWEEP_NAME: "bench", S.T_RUN_KIND: "train",
                             S.T_STATUS: "diverged" if diverged else "ok", S.T_SOURCE: "bench",
                             "mlflow.runName": name}
                        tags += [(k, v, rid) for k, v in t.items()]
                        metrics = {S.S_FINAL_VAL_LOSS: loss, S.S_BEST_VAL_LOSS: loss, S.S_INITIAL_LOSS: 10.8,
                                   S.S_STEPS_DONE: 1000.0}
                        latest += [(k, 0.0 if math.isnan(v) else v, now, 0, int(math.isnan(v)), rid)
                                   for k, v in metrics.items()]
                        i += 1
    insert_rows(path, runs, params, tags, latest)
    return uri


def peak_rss_mb(pid: int) -> float | None:
    """Peak resident set size of a process (VmHWM in /proc/PID/status), or None where /proc does not say."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)  # kB
    except OSError:
        pass
    return None


def git_commit() -> str:
    """Short commit of the checkout, with ``+dirty`` when app/ or benchmarks/ (results aside) differ from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "app", "benchmarks",
                                ":(exclude)benchmarks/results"], cwd=ROOT).returncode
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def launch_dashboard(uri: str, port: int, log: Path, *, warm_up: bool) -> tuple[subprocess.Popen, float]:
    """The dashboard as scripts/dashboard.sh starts it, and the seconds until its health endpoint answered."""
    t0 = time.perf_counter()
    proc = start_dashboard(uri, port, log, warm_up=warm_up)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc)
    except (RuntimeError, TimeoutError):
        proc.kill()
        raise
    return proc, time.perf_counter() - t0


def timed(page, action, settled: str = SETTLED) -> float:  # noqa: ANN001 - playwright objects
    t0 = time.perf_counter()
    action()
    page.wait_for_function(settled, timeout=300_000)
    assert page.locator("[data-testid='stException']").count() == 0, page.inner_text("body")[:1000]
    return time.perf_counter() - t0


def pick(page, label: str, key: str, option: str) -> None:  # noqa: ANN001
    """Choose ``option`` in the selectbox ``label`` and wait until the rerun has reached it (the URL's ``?key=``
    follows the widget). Not the 'running' script state: a rerun served from the caches can start and finish
    between two polls, so waiting for it would miss it."""
    page.get_by_test_id("stSelectbox").filter(has_text=label).click()
    page.get_by_role("option", name=option, exact=True).click()
    page.wait_for_function(f"() => new URLSearchParams(location.search).get('{key}') === '{option}'",
                           timeout=10_000)


def wait_warmed(log: Path, since: float, timeout: float = 300) -> float:
    """Seconds from ``since`` until the dashboard's log reports the end of its warm-up (app/warmup.py)."""
    end = time.perf_counter() + timeout
    while time.perf_counter() < end:
        text = log.read_text() if log.exists() else ""
        if "dashboard warm-up of" in text and (" done in " in text or " stopped after " in text):
            return time.perf_counter() - since
        time.sleep(0.05)
    raise TimeoutError(f"no end of the warm-up in {log} after {timeout} s")


def one_server(context, uri: str, port: int, repeat: int, workdir: Path, *, warm_up: bool,  # noqa: ANN001
               first: str, after_warm_up: bool) -> tuple[dict[str, list[float]], float | None]:
    """A fresh dashboard process on ``port``: its first open (recorded as ``first``; once the warm-up has ended if
    ``after_warm_up``), then ``repeat`` rounds of warm open and widget changes, in a new tab of the browser
    ``context``. Returns the timings by kind (with the server's start) and the server's peak RSS."""
    t0 = time.perf_counter()
    log = workdir / "streamlit.log"
    proc, start_s = launch_dashboard(uri, port, log, warm_up=warm_up)
    url = f"http://127.0.0.1:{port}/transfer?exp={EXPERIMENT}&param=mup&axis=width"
    out: dict[str, list[float]] = {"server_start_s": [start_s], first: [], "warm_open_s": [], "change_param_s": [],
                                   "change_axis_s": []}
    try:
        if after_warm_up:
            out["warm_up_done_s"] = [wait_warmed(log, t0)]
        page = context.new_page()
        out[first].append(timed(page, lambda: page.goto(url)))
        for _ in range(repeat):
            out["warm_open_s"].append(timed(page, lambda: page.goto(url)))
            out["change_param_s"].append(timed(page, lambda: pick(page, "Parameterization", "param", "sp")))
            out["change_param_s"].append(timed(page, lambda: pick(page, "Parameterization", "param", "mup")))
            out["change_axis_s"].append(timed(page, lambda: pick(page, "Scale axis", "axis", "depth")))
            out["change_axis_s"].append(timed(page, lambda: pick(page, "Scale axis", "axis", "width")))
        page.screenshot(path=str(workdir / "bench_transfer.png"), full_page=True)
        page.close()
        rss = peak_rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return out, rss


BLANK_PAGE = 'import streamlit as st\n\nst.text("blank")\n'
BLANK_SETTLED = """() => {
    const app = document.querySelector('[data-testid="stApp"]');
    return !!app && app.getAttribute('data-test-script-state') === 'notRunning'
        && !!document.querySelector('[data-testid="stText"]');
}"""


def blank_first_visit(browser, workdir: Path) -> float:  # noqa: ANN001
    """First visit of a one-line Streamlit page in a fresh browser context: Streamlit's own floor here."""
    script = workdir / "blank.py"
    script.write_text(BLANK_PAGE)
    port = free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", str(script), "--server.address", "127.0.0.1", "--server.port",
           str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    proc = subprocess.Popen(cmd, cwd=workdir, stdout=(workdir / "blank.log").open("w"), stderr=subprocess.STDOUT)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc)
        context = browser.new_context(viewport={"width": 1500, "height": 1100})
        page = context.new_page()
        took = timed(page, lambda: page.goto(f"http://127.0.0.1:{port}/"), BLANK_SETTLED)
        context.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return took


def bench(uri: str, n: int, repeat: int, servers: int, workdir: Path, *, warm_up: bool) -> dict:
    """``one_server`` ``servers`` times in turn on one port and one browser context, timings pooled: the first
    server's first open is the first visit (empty browser cache), each later server's the first open of a browser
    that has loaded the dashboard before (Streamlit's assets are immutable-cached by URL, so the port must stay),
    at once or after the warm-up in turn. Why several servers: a first open happens once per dashboard process,
    and on a shared machine one sample moves by a second or more with the load."""
    from playwright.sync_api import sync_playwright

    out: dict[str, list[float]] = {}
    rss: list[float] = []
    port = free_port()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        blank = blank_first_visit(browser, workdir)
        context = browser.new_context(viewport={"width": 1500, "height": 1100})
        for i in range(servers):
            later = warm_up and i % 2 == 0 and i > 0
            first = "first_visit_s" if i == 0 else "first_open_after_warm_up_s" if later else "first_open_at_start_s"
            times, peak = one_server(context, uri, port, repeat, workdir, warm_up=warm_up, first=first,
                                     after_warm_up=later)
            for kind, vals in times.items():
                out.setdefault(kind, []).extend(vals)
            if peak is not None:
                rss.append(peak)
        browser.close()
    return {"n_runs": n, "servers": servers, "warm_up": warm_up, "blank_page_first_visit_s": round(blank, 3),
            **{k: [round(v, 3) for v in vals] for k, vals in out.items()},
            **{k.removesuffix("_s") + "_median_s": round(statistics.median(v), 3) for k, v in out.items() if v},
            "server_peak_rss_mb": max(rss) if rss else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--servers", type=int, default=5,
                    help="fresh dashboard processes in turn (the first gives the first visit, the others first opens: "
                         "at start and after the warm-up in turn)")
    ap.add_argument("--no-warm-up", action="store_true", help="start the dashboard with --no-warm-up")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bench_app.json")
    args = ap.parse_args()
    if args.servers < 3:
        ap.error("--servers must be at least 3 (a first visit, a first open at start, one after the warm-up)")
    if not CHROMIUM.exists():
        sys.exit(f"needs {CHROMIUM} (apt-get install chromium)")
    import logging

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    load_before = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        uri = build_store(Path(tmp) / "bench.db", args.runs)
        build_s = time.perf_counter() - t0
        result = bench(uri, args.runs, args.repeat, args.servers, Path(tmp), warm_up=not args.no_warm_up)
        result["build_s"] = round(build_s, 2)
    k = args.servers
    print(f"Transfer page, {result['n_runs']} runs, warm-up {'on' if result['warm_up'] else 'off'} ({k} servers, "
          f"{k * args.repeat} warm opens, {2 * k * args.repeat} changes of each kind; medians, seconds from launch "
          "for the server, until interactive in Chromium for the page)")
    cols = [("server start", "server_start"), ("warm-up done", "warm_up_done"), ("first visit", "first_visit"),
            ("1st open@start", "first_open_at_start"), ("1st open@warm", "first_open_after_warm_up"),
            ("warm open", "warm_open"), ("param change", "change_param"), ("axis change", "change_axis")]
    print(" ".join(f"{name:>14}" for name, _ in cols) + f" {'server peak RSS':>16}")
    rss = f"{result['server_peak_rss_mb']:.0f} MB" if result["server_peak_rss_mb"] is not None else "n/a"
    print(" ".join(f"{result[key + '_median_s']:>14.2f}" if key + "_median_s" in result else f"{'–':>14}"
                   for _, key in cols) + f" {rss:>16}")
    print(f"a blank Streamlit page's first visit: {result['blank_page_first_visit_s']:.2f} s")
    load = {"before": load_before, "after": [round(x, 2) for x in os.getloadavg()]}
    print(f"load average (1, 5, 15 min) before {load['before']}, after {load['after']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": platform.platform(), "cpus": os.cpu_count(),
                                    "python": platform.python_version(), "commit": git_commit(),
                                    "load_average": load, "result": result}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
