"""How fast the offline report answers: the report of a 30-epoch run with pictures, opened in Chromium.

Builds a synthetic run folder (no training; bench/embed.py's records: 2,048 target and 500 source points, 128-d, 10
clusters tightening over the epochs) with 16×16 pictures of its points (digits from the bundle when it is found, else
noise), writes its report (PCA layouts: the layout method does not change what the page loads), then, median of
--repeats fresh page loads:
  (a) first paint (first contentful paint) and ready (every figure drawn, the page answering);
  (b) a selection of 500 points: from handing the group over (what a lasso does) to the next frame painted.
Targets on the 2-core machine: (a) first paint <= 1.5 s, (b) <= 100 ms. Needs /usr/bin/chromium and playwright.

    python bench/report_speed.py [--epochs 30] [--repeats 5] [--folder RUN]
"""
import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from embed import SyntheticRun  # noqa: E402

from sdrc.data import find_digits_bundle  # noqa: E402
from sdrc.report import write_report  # noqa: E402
from sdrc.snapshots import RunRecord  # noqa: E402

READY = """new MutationObserver((_, watcher) => { if (document.body && document.body.dataset.ready === 'yes') {
  window.readyAt = performance.now(); watcher.disconnect(); } }).observe(document, {attributes: true, subtree: true});"""
SELECT = """async () => { const t0 = performance.now(); selectGroup(0, D.runs[0].index.slice(0, 500));
  await new Promise(done => requestAnimationFrame(() => setTimeout(done))); return performance.now() - t0; }"""


def pictures(n: int, seed: int) -> np.ndarray:
    "n 16×16 grey pictures: digits from the bundle (every second pixel of 28×28, cut to 16×16 rows) or noise."
    rng = np.random.default_rng(seed)
    try:
        with np.load(find_digits_bundle()) as bundle:
            x = bundle["usps_x"][:n]  # USPS is 16×16 already
        return x.reshape(len(x), 16, 16, 1).astype(np.uint8)
    except (FileNotFoundError, KeyError, ValueError):
        return rng.integers(0, 256, (n, 16, 16, 1), dtype=np.uint8)


def synthetic_folder(root: Path, epochs: int) -> Path:
    "A synthetic run of `epochs` epochs with pictures."
    run = SyntheticRun(root / "run", 2048, epochs)
    for e in range(epochs):
        run.write(e)
    run.writer.add_thumbnails(pictures(2048, 0), pictures(500, 1))
    run.writer.close()
    return root / "run"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--folder", type=Path, default=None, help="a run folder to report instead of the synthetic one")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.folder or synthetic_folder(Path(tmp), args.epochs)
        report = write_report(folder, Path(tmp) / "report.html", space=0 if args.folder is None else 1, method="pca")
        size = report.stat().st_size / 1e6
        paints, readies, selections = [], [], []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                        args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
            for _ in range(args.repeats):
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.add_init_script(READY)
                page.goto(report.as_uri())
                page.wait_for_function("window.readyAt !== undefined", timeout=60_000)
                paints.append(page.evaluate("performance.getEntriesByName('first-contentful-paint')[0].startTime"))
                readies.append(page.evaluate("window.readyAt"))
                selections.append(page.evaluate(SELECT))
                assert page.evaluate("state.group.length") == 500
                page.close()
            browser.close()
        run = RunRecord.open(folder)
        print(f"report of {len(run.epoch_numbers())} epochs, {size:.1f} MB, pictures "
              f"{'kept' if run.thumbnails() is not None else 'none'}; median of {args.repeats} loads (min–max):")
    for name, values in (("first paint", paints), ("ready (every figure drawn)", readies), ("selection of 500 points", selections)):
        print(f"  {name}: {statistics.median(values):.0f} ms ({min(values):.0f}–{max(values):.0f})")


if __name__ == "__main__":
    main()
