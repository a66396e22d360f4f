"""Benchmark: how fast the dashboard's Transfer page is on a 10k-run experiment, in a real browser.

Builds a synthetic store the way benchmarks/bench_load.py does (MLflow creates the schema and one real run; the
runs are bulk-inserted with sqlite3 in MLflow's own layout), but with the shape of a real transfer study so that
every analysis step does its full work: SP and μP × 5 widths × 4 depths × 25 learning rates (2^-14 … 2^-2 in
half-octave steps) × 10 seeds = 10,000 runs, loss quadratic in log2 LR around an optimum that is flat in width
for μP and drifts by −1 per doubling under SP, with seed noise, and runs above a stability edge diverged (NaN).

Then starts ``streamlit run app/Home.py`` on a free port and drives Debian's Chromium with Playwright:

* cold: first open of /transfer (load, classify, optima with bootstrap, axis fit, charts);
* warm: the same URL again (cached analysis; what a second user or a reload sees);
* change parameterization: a selectbox change (fit cached; new charts);
* change axis: width → depth (a new axis fit on the cached optimum table).

"Interactive" = Streamlit's script state is notRunning, no skeleton is left and Vega has drawn every chart.
Also reported: the dashboard process's peak resident memory (VmHWM from /proc, the goal is < 1 GB at 10k runs) and
the machine's load average before and after, since the numbers move with whatever else runs on the box.
``--servers N`` repeats all of it on N fresh dashboard processes in turn (the store is built once): a cold open
happens once per process, so that is how to get more than one sample of it. Peak RSS is the largest of them.
Usage: python benchmarks/bench_app.py [--runs 10000] [--repeat 3] [--servers 1]
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
    """Short commit of the checkout, with ``+dirty`` when app/ or benchmarks/ differ from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "app", "benchmarks"], cwd=ROOT).returncode
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def launch_dashboard(uri: str, port: int, log: Path) -> subprocess.Popen:
    proc = start_dashboard(uri, port, log)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc)
    except (RuntimeError, TimeoutError):
        proc.kill()
        raise
    return proc


def timed(page, action) -> float:  # noqa: ANN001 - playwright objects
    t0 = time.perf_counter()
    action()
    page.wait_for_function(SETTLED, timeout=300_000)
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


def one_server(uri: str, repeat: int, workdir: Path) -> tuple[dict[str, list[float]], float | None]:
    """A fresh dashboard process and browser: one cold open, then ``repeat`` rounds of warm open and widget
    changes. Returns the timings by kind and the server's peak RSS."""
    from playwright.sync_api import sync_playwright

    port = free_port()
    proc = launch_dashboard(uri, port, workdir / "streamlit.log")
    url = f"http://127.0.0.1:{port}/transfer?exp={EXPERIMENT}&param=mup&axis=width"
    out: dict[str, list[float]] = {"cold_open_s": [], "warm_open_s": [], "change_param_s": [],
                                   "change_axis_s": []}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            out["cold_open_s"].append(timed(page, lambda: page.goto(url)))
            for _ in range(repeat):
                out["warm_open_s"].append(timed(page, lambda: page.goto(url)))
                out["change_param_s"].append(timed(page, lambda: pick(page, "Parameterization", "param", "sp")))
                out["change_param_s"].append(timed(page, lambda: pick(page, "Parameterization", "param", "mup")))
                out["change_axis_s"].append(timed(page, lambda: pick(page, "Scale axis", "axis", "depth")))
                out["change_axis_s"].append(timed(page, lambda: pick(page, "Scale axis", "axis", "width")))
            page.screenshot(path=str(workdir / "bench_transfer.png"), full_page=True)
            browser.close()
        rss = peak_rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return out, rss


def bench(uri: str, n: int, repeat: int, servers: int, workdir: Path) -> dict:
    """``one_server`` ``servers`` times in turn on the same store, timings pooled. Why several servers: a cold open
    happens once per dashboard process, so one server gives one sample of it, and on a shared machine one sample
    moves by a second or more with the load."""
    out: dict[str, list[float]] = {}
    rss: list[float] = []
    for _ in range(servers):
        times, peak = one_server(uri, repeat, workdir)
        for kind, vals in times.items():
            out.setdefault(kind, []).extend(vals)
        if peak is not None:
            rss.append(peak)
    return {"n_runs": n, "servers": servers, **{k: [round(v, 3) for v in vals] for k, vals in out.items()},
            **{k.replace("_s", "_median_s"): round(statistics.median(v), 3) for k, v in out.items() if v},
            "server_peak_rss_mb": max(rss) if rss else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--servers", type=int, default=1, help="fresh dashboard processes in turn (one cold open each)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bench_app.json")
    args = ap.parse_args()
    if args.servers < 1:
        ap.error("--servers must be at least 1")
    if not CHROMIUM.exists():
        sys.exit(f"needs {CHROMIUM} (apt-get install chromium)")
    import logging

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    load_before = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        uri = build_store(Path(tmp) / "bench.db", args.runs)
        build_s = time.perf_counter() - t0
        result = bench(uri, args.runs, args.repeat, args.servers, Path(tmp))
        result["build_s"] = round(build_s, 2)
    k = args.servers
    print(f"Transfer page, {result['n_runs']} runs ({k} server(s); median of {k} cold opens, {k * args.repeat} warm "
          f"opens, {2 * k * args.repeat} changes of each kind; seconds until interactive in Chromium)")
    print(f"{'cold open':>12} {'warm open':>10} {'param change':>13} {'axis change':>12} {'server peak RSS':>16}")
    rss = f"{result['server_peak_rss_mb']:.0f} MB" if result["server_peak_rss_mb"] is not None else "n/a"
    print(f"{result['cold_open_median_s']:>12.2f} {result['warm_open_median_s']:>10.2f} "
          f"{result['change_param_median_s']:>13.2f} {result['change_axis_median_s']:>12.2f} {rss:>16}")
    load = {"before": load_before, "after": [round(x, 2) for x in os.getloadavg()]}
    print(f"load average (1, 5, 15 min) before {load['before']}, after {load['after']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": platform.platform(), "cpus": os.cpu_count(),
                                    "python": platform.python_version(), "commit": git_commit(),
                                    "load_average": load, "result": result}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
