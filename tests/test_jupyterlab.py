"""The cluster explorer as a person meets it: JupyterLab in Debian's chromium, driven by Playwright.

A notebook that trains a small toy run and opens `ClusterExplorer` is run in a real JupyterLab (started on
127.0.0.1 with an empty token, stopped by its PID); the test checks that the widget renders and that moving
the epoch slider redraws the scatter. Skipped like the other browser test."""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from test_browser import CHROMIUM, FLAGS, browser  # noqa: F401  (the shared browser fixture)

NOTEBOOK_CELLS = [
    "from sdrc.data import make_domain_pair\nfrom sdrc.recipe import Recipe, Runtime\nfrom sdrc.train import train\n"
    "from sdrc.viz import ClusterExplorer",
    "toy = make_domain_pair(n_per_class=40, num_classes=3, dim=4, shift='translate', amount=1.5, seed=0)\n"
    "_ = train(toy, Recipe(epochs=3, batch_size=32, record_samples=100), Runtime(progress=False, log=None), out='run')",
    "ClusterExplorer('run', space=1, method='pca')",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    "A JupyterLab server on 127.0.0.1 serving a folder with the explorer notebook; stopped by PID afterwards."
    cells = [dict(cell_type="code", source=src, metadata={}, outputs=[], execution_count=None) for src in NOTEBOOK_CELLS]
    nb = dict(cells=cells, metadata=dict(kernelspec=dict(name="python3", display_name="Python 3", language="python")),
              nbformat=4, nbformat_minor=5)
    (tmp_path / "explorer.ipynb").write_text(json.dumps(nb))
    port = _free_port()
    log = open(tmp_path / "lab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--allow-root", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
         "--IdentityProvider.token=", "--ServerApp.password=", f"--ServerApp.root_dir={tmp_path}"],
        stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/api/status", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"JupyterLab did not start: {(tmp_path / 'lab.log').read_text()[-2000:]}")
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def test_explorer_renders_in_jupyterlab_and_follows_the_slider(browser, lab, tmp_path):  # noqa: F811
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.goto(f"{lab}/lab/tree/explorer.ipynb?reset")
    page.wait_for_selector(".jp-Notebook", timeout=60_000)
    page.get_by_text("| Idle").first.wait_for(timeout=90_000)  # the kernel is connected and ready
    page.locator(".jp-Cell .jp-InputArea-editor").first.click()
    for _ in NOTEBOOK_CELLS:  # run each cell and move to the next, as a person would
        page.keyboard.press("Shift+Enter")
    title = page.locator(".js-plotly-plot .gtitle").first
    title.wait_for(timeout=120_000)
    assert title.text_content().startswith("epoch 3")
    handle = page.locator(".widget-slider .noUi-handle, .widget-slider input[type=range]").first
    handle.focus()
    page.keyboard.press("ArrowLeft")
    page.wait_for_function("document.querySelector('.js-plotly-plot .gtitle').textContent.startsWith('epoch 2')",
                           timeout=20_000)
    shots = Path(os.environ.get("SDRC_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "explorer.png"), clip={"x": 0, "y": 0, "width": 1400, "height": 1100})
    page.close()
