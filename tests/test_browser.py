"""The HTML report in a real browser: Debian's chromium driven by Playwright (never `playwright install`).

Skipped where /usr/bin/chromium or playwright is missing, unless SDRC_REQUIRE_BROWSER=1 (as in CI). Screenshots go
to $SDRC_SCREENSHOTS when set (README's pictures are made that way), else to a temporary folder."""
import os
from pathlib import Path

import pytest

from sdrc.report import write_report

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
def runs(tmp_path_factory):
    "Two toy runs of the same pair, trained with the official and the paper preset."
    from sdrc.data import make_domain_pair
    from sdrc.recipe import Recipe, Runtime
    from sdrc.train import train
    root = tmp_path_factory.mktemp("browser")
    toy = make_domain_pair(n_per_class=60, num_classes=3, dim=4, shift="translate", amount=1.5, seed=0)
    for preset in ("official", "paper"):
        train(toy, Recipe(preset=preset, epochs=4, batch_size=32, record_samples=150), Runtime(progress=False, log=None),
              out=root / preset)
    return root


def open_page(browser, path, width=1400):
    page = browser.new_page(viewport={"width": width, "height": 1000})
    errors, requests = [], []
    page.on("console", lambda msg: msg.type == "error" and errors.append(msg.text))
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.on("request", lambda req: req.url.startswith("file://") or requests.append(req.url))
    page.goto(path.as_uri())
    page.wait_for_selector("body[data-ready=yes]", timeout=30_000)
    return page, errors, requests


def set_epoch(page, index: int) -> None:
    page.locator("#epoch").evaluate(f"(el) => {{ el.value = {index}; el.dispatchEvent(new Event('input')); }}")


def test_report_explains_itself_in_a_real_browser(browser, runs, tmp_path):
    report = write_report(runs / "official", method="pca")
    page, errors, requests = open_page(browser, report)
    legend = page.locator("#scatter-0 .legendtext").all_text_contents()
    assert legend[:3] == ["class 0", "class 1", "class 2"] and "centres" in legend and "source points" in legend
    frame = "JSON.stringify([document.getElementById('scatter-0')._fullLayout.xaxis.range, " \
            "document.getElementById('scatter-0')._fullLayout.yaxis.range])"
    xs = "Array.from(document.getElementById('scatter-0')._fullData[0].x).slice(0, 5).join(',')"
    last_frame, last_x = page.evaluate(frame), page.evaluate(xs)
    set_epoch(page, 0)
    page.wait_for_function(f"{xs} !== {last_x!r}", timeout=10_000)  # the points moved ...
    assert page.evaluate(frame) == last_frame  # ... and the frame did not
    cursor = "document.getElementById('metrics').layout.shapes.filter(s => s.name === 'cursor').map(s => s.x0).join(',')"
    assert page.evaluate(cursor) == "0,0,0,0"  # the cursor of each panel (three and the scores below) follows the slider
    assert page.locator("#epoch-label").text_content() == "epoch 0"
    assert "accuracy of f on the target test split" in page.locator("#metrics .legendtext").all_text_contents()
    bars_title = "document.getElementById('bars').layout.title.text"
    expected = page.evaluate("D.runs[0].index[document.getElementById('scatter-0').data[1].customdata[0]]")
    box = page.locator("#scatter-0 .scatterlayer .trace").nth(1).locator(".point").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)  # a class-1 point, as a reader clicks it
    page.wait_for_function(f"{bars_title}.includes('target image {expected} ')", timeout=10_000)
    shown = page.evaluate("document.getElementById('bars').data.map(t => t.y.length)")
    assert shown == [3, 3, 3] and "true class" in page.evaluate(bars_title)
    assert not errors and not requests, (errors, requests)
    shots = Path(os.environ.get("SDRC_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    set_epoch(page, 4)
    page.screenshot(path=str(shots / "report.png"), full_page=True)
    page.close()


FOLLOWED = ("['path of the selected image', 'selected image'].map(name => "
            "document.getElementById('follow-{r}').data.find(t => t.name === name).x.length)")


def test_a_clicked_image_is_followed_and_the_view_shared(browser, runs, tmp_path):
    "A click rings the image in every run with its path so far; the page's address restores epoch, colouring and image."
    report = write_report([runs / "official", runs / "paper"], tmp_path / "both.html", method="pca")
    page, errors, requests = open_page(browser, report)
    set_epoch(page, 2)
    box = page.locator("#scatter-0 .scatterlayer .trace").nth(1).locator(".point").first.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_function("location.hash.includes('image=')", timeout=10_000)
    image = page.evaluate("state.image")
    for r in (0, 1):  # the same image, ringed in both runs, with its path over epochs 0, 1 and 2
        trail, ring = page.evaluate(FOLLOWED.format(r=r))
        assert (trail, ring) == (3, 1)
    set_epoch(page, 4)
    assert page.evaluate(FOLLOWED.format(r=1)) == [5, 1]
    page.select_option("#colouring", "true class")
    link = page.evaluate("document.getElementById('link').value")
    assert f"image={image}" in link and "epoch=4" in link and "colour=true+class" in link
    shared = browser.new_page(viewport={"width": 1400, "height": 1000})
    shared.goto(report.as_uri() + "#epoch=1&colour=true+class&run=1&image=" + str(image))
    shared.wait_for_selector("body[data-ready=yes]", timeout=30_000)
    assert shared.locator("#epoch-label").text_content() == "epoch 1"
    assert shared.evaluate("document.getElementById('colouring').value") == "true class"
    assert shared.evaluate(FOLLOWED.format(r=0)) == [2, 1]
    assert f"image {image} " in shared.evaluate("document.getElementById('bars').layout.title.text")
    assert not errors and not requests, (errors, requests)
    page.close(), shared.close()


def test_a_group_drawn_with_the_box_tool_is_counted_and_marked_in_every_run(browser, runs, tmp_path):
    "Box-select points in one run: the bars show the group's mean, its classes are counted, the other run marks them."
    report = write_report([runs / "official", runs / "paper"], tmp_path / "both.html", method="pca")
    page, errors, requests = open_page(browser, report)
    page.locator("#scatter-0 .modebar-btn[data-val='select']").first.click()
    plot = page.locator("#scatter-0 .nsewdrag").first.bounding_box()
    page.mouse.move(plot["x"] + 2, plot["y"] + 2)
    page.mouse.down()
    page.mouse.move(plot["x"] + plot["width"] / 2, plot["y"] + plot["height"] - 2, steps=8)
    page.mouse.up()
    page.wait_for_function("state.group.length > 0", timeout=10_000)
    group = page.evaluate("state.group.length")
    assert 0 < group < 150
    assert f"mean over the {group} selected images" in page.evaluate("document.getElementById('bars').layout.title.text")
    lines = page.locator("#group div").all_text_contents()
    assert len(lines) == 2 and all(f"of the {group} selected images" in line and "true class" in line for line in lines)
    counted = sum(int(part.split("×")[1]) for part in lines[0].split("; true class ")[1].split(";")[0].split(", "))
    assert counted == group  # the true classes counted add up to the group
    marked = page.evaluate("document.getElementById('follow-1').data.find(t => t.name === 'selected group').x.length")
    assert marked == group  # every selected image was recorded in the other run too (same pair, same sample)
    assert "group=" in page.evaluate("location.hash")
    assert not errors and not requests, (errors, requests)
    page.close()


def test_runs_side_by_side_in_a_real_browser(browser, runs, tmp_path):
    report = write_report([runs / "official", runs / "paper"], tmp_path / "both.html", method="pca")
    page, errors, _ = open_page(browser, report)
    titles = [page.evaluate(f"document.getElementById('scatter-{r}').layout.title.text") for r in (0, 1)]
    assert titles == ["official (srdc official): epoch 4", "paper (srdc paper): epoch 4"]
    set_epoch(page, 2)
    page.wait_for_function("document.getElementById('scatter-1').layout.title.text.endsWith('epoch 2')", timeout=10_000)
    legend = page.locator("#metrics .legendtext").all_text_contents()
    assert any(t.endswith("official (srdc official)") for t in legend) and any(t.endswith("paper (srdc paper)") for t in legend)
    assert not errors, errors
    page.close()


@pytest.mark.skipif(not os.environ.get("SDRC_SCREENSHOT_RUNS"), reason="set SDRC_SCREENSHOT_RUNS to real run folders")
def test_screenshots_of_real_runs(browser, tmp_path):
    "README's pictures: the report of a real run (the first folder), and the first two side by side."
    folders = [Path(p) for p in os.environ["SDRC_SCREENSHOT_RUNS"].split(",")]
    shots = Path(os.environ.get("SDRC_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    page, errors, requests = open_page(browser, write_report(folders[0], tmp_path / "report.html"))
    box = page.locator("#scatter-0 .scatterlayer .trace").nth(3).locator(".point").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_timeout(500)
    page.screenshot(path=str(shots / "report.png"), clip={"x": 0, "y": 0, "width": 1400, "height": 1500})
    assert not errors and not requests, (errors, requests)
    page.close()
    if len(folders) > 1:
        page, errors, _ = open_page(browser, write_report(folders[:2], tmp_path / "both.html"))
        page.screenshot(path=str(shots / "side_by_side.png"), clip={"x": 0, "y": 0, "width": 1400, "height": 900})
        assert not errors, errors
        page.close()


@pytest.fixture(scope="module")
def pictured(tmp_path_factory):
    "A run of any loop, recorded with pictures: three classes of 8×8 images, a bar whose row is the class."
    import numpy as np
    from sdrc.record import Recorder
    rng = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp("pictured") / "run"
    y_s, y_t = np.repeat(np.arange(3), 30), np.repeat(np.arange(3), 40)
    images = [np.zeros((len(y), 1, 8, 8), np.uint8) for y in (y_s, y_t)]
    for x, y in zip(images, (y_s, y_t)):
        x[np.arange(len(y)), 0, 2 * y + 1, :] = 255
    with Recorder(folder, classes=["a", "b", "c"], samples=120, images=tuple(images)) as rec:
        for epoch in range(3):
            spread = 1.0 / (epoch + 1)  # the classes draw apart over the epochs
            f_s, f_t = (np.eye(3)[y] * 3 + spread * rng.normal(size=(len(y), 3)) for y in (y_s, y_t))
            rec.epoch(epoch, source=(f_s.astype(np.float32), y_s), target=(f_t.astype(np.float32), 4 * f_t.astype(np.float32)),
                      target_labels=y_t)
    return folder


def test_a_clicked_image_shows_its_picture_and_its_neighbours_in_the_features(browser, pictured, tmp_path):
    "Click a point: its picture, its nearest target and source images in the features (as sdrc computes them), rings."
    import numpy as np
    from sdrc.snapshots import RunRecord
    from sdrc.viz import feature_neighbours
    report = write_report(pictured, tmp_path / "pictured.html", space=0, method="pca")
    page, errors, requests = open_page(browser, report)
    assert "by chance" in page.locator("#trust").text_content()  # how far to trust the picture, for the epoch shown
    box = page.locator("#scatter-0 .scatterlayer .trace").nth(0).locator(".point").first.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_function("state.image !== null", timeout=10_000)
    p = page.evaluate("D.runs[0].pos.get(state.image)")
    near_target, near_source = feature_neighbours(RunRecord.open(pictured).record(2), space=0)
    index = RunRecord.open(pictured).record(2).target_index
    listed = page.locator("#neighbours div").nth(1).text_content()
    assert [f"#{i}," in listed for i in index[near_target[p]]] == [True] * 5  # the page's neighbours are sdrc's
    ring = page.locator("#follow-0 .scatterlayer .trace").nth(1).locator(".point").first.bounding_box()
    centre = lambda b: (b["x"] + b["width"] / 2, b["y"] + b["height"] / 2)  # noqa: E731
    assert all(abs(a - b) < 2 for a, b in zip(centre(ring), centre(box)))  # the overlay's ring sits on the clicked point
    page.evaluate("Plotly.relayout('scatter-0', {'xaxis.range': [0, 1], 'yaxis.range': [0, 1]})")  # a reader zooms
    assert page.evaluate("document.getElementById('follow-0')._fullLayout.xaxis.range.join()") == "0,1"
    ringed = page.evaluate("document.getElementById('follow-0').data.find(t => t.name === "
                           "'nearest target images in the features').x.length")
    assert ringed == 5
    pictures = page.evaluate("Array.from(document.querySelectorAll('#neighbours .picture'), p => getComputedStyle(p).backgroundImage)")
    assert len(pictures) == 1 + 5 + 5 and all(p.startswith('url("data:image/png;base64,') for p in pictures)
    # the clicked image's own picture is the bar of its class: the sprite's tile, decoded in the page, says which row
    truth = int(RunRecord.open(pictured).record(2).target_y[p])
    tile = page.evaluate("""async () => { const run = D.runs[0], img = new Image(); img.src = run.pictures.target;
        await img.decode(); const c = document.createElement('canvas'); c.width = img.width; c.height = img.height;
        const g = c.getContext('2d'); g.drawImage(img, 0, 0); const p = run.pos.get(state.image), s = run.pictures.side;
        const x = (p % run.pictures.columns) * s, y = Math.floor(p / run.pictures.columns) * s;
        return Array.from({length: s}, (_, r) => g.getImageData(x, y + r, 1, 1).data[0]); }""")
    bright = [r for r, v in enumerate(tile) if v > 128]
    assert bright and np.mean(bright) // 2 // 2 == truth  # 16 rows from 8: the bar at row 2y+1 lands on rows 4y+2, 4y+3
    assert not errors and not requests, (errors, requests)
    page.close()


def test_a_group_shows_up_to_32_pictures_and_keeps_the_clicked_images_neighbours(browser, pictured, tmp_path):
    report = write_report(pictured, tmp_path / "pictured.html", space=0, method="pca")
    page, errors, requests = open_page(browser, report)
    page.evaluate("select(0, 3)")  # what a click on the fourth recorded point does
    listed = page.locator("#neighbours").text_content()
    assert "nearest target images" in listed
    page.evaluate("window.listedFirst = document.querySelector('#neighbours div')")
    page.evaluate("selectGroup(0, D.runs[0].index.slice(0, 40))")  # what a lasso around 40 points hands over
    assert page.locator("#group .picture").count() == 32
    assert "the first 32 pictures" in page.locator("#group").text_content()
    # a group leaves the clicked image's list of neighbours as it is: the same elements, not a rebuilt copy
    assert page.evaluate("window.listedFirst.isConnected") and page.locator("#neighbours").text_content() == listed
    page.evaluate("select(0, 5)")
    assert not page.evaluate("window.listedFirst.isConnected")  # a new click lists the new image's
    assert page.locator("#neighbours").text_content() != listed
    assert not errors and not requests, (errors, requests)
    page.close()
