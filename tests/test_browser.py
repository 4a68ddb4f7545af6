"""The HTML report in a real browser: Debian's chromium driven by Playwright (never `playwright install`).

Skipped where /usr/bin/chromium or playwright is missing, unless SDRC_REQUIRE_BROWSER=1 (as in CI). Screenshots go
to $SDRC_SCREENSHOTS when set (README's pictures are made that way), else to a temporary folder."""
import os
from pathlib import Path

import pytest

from conftest import train_toy_run
from sdrc.viz import write_report

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if sync_playwright is None or not CHROMIUM.exists():
        if os.environ.get("SDRC_REQUIRE_BROWSER") == "1":
            pytest.fail("SDRC_REQUIRE_BROWSER=1 but chromium or playwright is missing")
        pytest.skip("needs /usr/bin/chromium and playwright")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = train_toy_run(tmp_path_factory.mktemp("browser") / "run", n_per_class=60, epochs=4, record_samples=150)
    return write_report(folder)


def test_report_renders_and_the_slider_changes_the_frame(browser, report, tmp_path):
    page = browser.new_page(viewport={"width": 1000, "height": 1400})
    errors = []
    page.on("console", lambda msg: msg.type == "error" and errors.append(msg.text))
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(report.as_uri())
    page.wait_for_selector(".plotly-graph-div .main-svg", timeout=30_000)
    assert page.locator(".plotly-graph-div").count() == 3
    first_x = "Array.from(document.querySelectorAll('.plotly-graph-div')[0]._fullData[0].x.slice(0, 3)).join(',')"
    before = page.evaluate(first_x)
    assert before.count(",") == 2
    assert page.evaluate("document.querySelectorAll('.plotly-graph-div')[0].layout.sliders[0].active || 0") == 0
    rail = page.locator(".slider-rail-rect").first.bounding_box()
    page.mouse.click(rail["x"] + rail["width"] - 2, rail["y"] + rail["height"] / 2)  # the last epoch
    page.wait_for_function(f"{first_x} !== {before!r}", timeout=10_000)
    active = page.evaluate("document.querySelectorAll('.plotly-graph-div')[0]._fullLayout.sliders[0].active")
    assert active == 4
    shots = Path(os.environ.get("SDRC_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "report.png"), clip={"x": 0, "y": 0, "width": 760, "height": 700})
    assert not errors, errors
    page.close()
