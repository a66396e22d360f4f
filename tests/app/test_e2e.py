"""End to end in a real browser: Debian's Chromium driven by Playwright against the dashboard started like
scripts/dashboard.sh does (`python -m app.launch`, with its warm-up) on a free port. Every page is opened, a widget
is changed, a run is selected by clicking its dot, the recommendation JSON is downloaded and validated against the
schema, and a screenshot of each page is saved (path printed; set APP_SCREENSHOTS=DIR to keep them there).

Skips only when /usr/bin/chromium is missing (.ci/run installs it). Never runs `playwright install`.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from analysis.recommend import validate_recommendation
from app.serve import CHROMIUM, CHROMIUM_ARGS, free_port, start_dashboard, wait_healthy
from tests.app.conftest import Stores

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium "
                                                               "(apt-get install chromium)")


@pytest.fixture(scope="module")
def server(stores: Stores, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The dashboard's address and its log file."""
    port = free_port()
    log = tmp_path_factory.mktemp("streamlit") / "streamlit.log"
    proc = start_dashboard(stores.main, port, log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        yield url, log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


SETTLED = """() => {
    const app = document.querySelector('[data-testid="stApp"]');
    if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
    if (document.querySelector('[data-testid="stSkeleton"]')) return false;
    const charts = document.querySelectorAll('.vega-embed').length;
    return charts === document.querySelectorAll('.vega-embed canvas, .vega-embed svg.marks').length;
}"""


def settle(page, timeout_ms: int = 60_000) -> None:  # noqa: ANN001 - playwright Page
    """Wait until Streamlit finished the run (script state notRunning, no skeletons) and Vega drew every chart;
    then check that no exception box is on the page."""
    page.wait_for_function(SETTLED, timeout=timeout_ms)
    assert page.locator("[data-testid='stException']").count() == 0, page.inner_text("body")[:2000]


def test_pages_in_chromium(server: tuple[str, Path], stores: Stores, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    url, log = server
    shots = Path(os.environ.get("APP_SCREENSHOTS", tmp_path / "screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1100}, accept_downloads=True)
        for path, expect in (("", "Tune a small proxy"), ("sweeps", "of 7 sweeps"),
                             ("compare?exp=mup-demo", "per parameterization (shared axes)"),
                             ("runs?exp=mup-demo", "of 240 runs"), ("coord-check", "growth_exponent")):
            page.goto(f"{url}/{path}")
            settle(page)
            page.get_by_text(expect).first.wait_for(timeout=30_000)
            page.screenshot(path=str(shots / f"{path.split('?')[0] or 'overview'}.png"), full_page=True)

        # Transfer: the URL chooses the view, a widget changes it, and the URL follows.
        page.goto(f"{url}/transfer?exp=mup-demo&param=mup")
        settle(page)
        page.wait_for_selector(".vega-embed", timeout=30_000)
        assert page.get_by_text("inconclusive: drift +0.168").count() == 1
        page.get_by_test_id("stSelectbox").filter(has_text="Parameterization").click()
        page.get_by_role("option", name="sp", exact=True).click()
        page.get_by_text("fails: drift -0.700").wait_for(timeout=30_000)
        settle(page)
        assert "param=sp" in page.url
        assert page.locator(".vega-embed").count() >= 2
        page.screenshot(path=str(shots / "transfer.png"), full_page=True)

        # Click a run's dot (Vega draws SVG: one path per dot, the first symbol layer is the runs): the point
        # selection reruns the page with that run's curves, and the URL names the run.
        dot = page.locator(".vega-embed svg.marks g.mark-symbol").first.locator("path").first
        dot.hover()
        tip = page.locator("#vg-tooltip-element.visible")
        tip.wait_for(timeout=10_000)
        run_id = tip.inner_text().split("run_id")[-1].split()[0]
        dot.click()
        page.wait_for_function(f"() => location.search.includes('run={run_id}')", timeout=30_000)
        settle(page)
        page.get_by_role("heading", name="Run ").first.wait_for(timeout=30_000)

        # Export: change the target, download the JSON, validate it against the schema.
        page.goto(f"{url}/export?exp=mup-demo&param=mup")
        settle(page)
        box = page.get_by_label("width (tested 256–8192)")
        box.fill("32768")
        box.press("Enter")
        page.wait_for_function("() => location.search.includes('target_width=32768')", timeout=30_000)
        settle(page)
        with page.expect_download(timeout=30_000) as info:
            page.get_by_test_id("stDownloadButton").locator("button").click()
        doc = json.loads(Path(info.value.path()).read_text())
        validate_recommendation(doc)
        assert doc["target"] == {"width": 32768} and doc["param_scheme"] == "mup"
        page.screenshot(path=str(shots / "export.png"), full_page=True)
        browser.close()
    print(f"screenshots in {shots}")
    # started as scripts/dashboard.sh starts it: the warm-up ran in the server process and finished
    assert f"dashboard warm-up of {stores.main} done" in log.read_text()
