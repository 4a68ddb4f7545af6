"""The offline book: every page opened in Debian's chromium, with no request leaving the machine, every figure drawn,
every link resolving and the notebook's text shown; and the build's handling of failed and unreadable notebooks."""
import json
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from sdrc.book import book_pages, build_book
from test_browser import browser  # noqa: F401  (the shared browser fixture)

NBS = Path(__file__).resolve().parents[1] / "nbs"


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    out = tmp_path_factory.mktemp("book")
    return out, build_book(NBS, out)


def test_every_page_works_offline(browser, book):  # noqa: F811
    out, built = book
    pages = book_pages(NBS)
    assert [p.href for p in pages] == list(built) and built["index.html"] is False
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    outside, errors = [], []
    page.on("request", lambda req: req.url.startswith(("file://", "data:")) or outside.append(req.url))
    page.on("pageerror", lambda err: errors.append(str(err)))
    for p in pages:
        page.goto((out / p.href).as_uri())
        page.wait_for_load_state("load")
        figures = page.locator(".plotly-figure")
        for i in range(figures.count()):  # every interactive figure is drawn
            figures.nth(i).locator(".main-svg").first.wait_for(timeout=20_000)
        assert p.title.split("`")[-1].strip() in page.locator("main h1").first.text_content(), p.href
        for href in page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)"):
            url = urlparse(href)
            if url.scheme == "file":
                assert Path(unquote(url.path)).is_file(), (p.href, href)  # the navigation resolves
    assert not outside, outside[:5]
    assert not errors, errors[:5]
    page.close()


def _notebook(cells) -> str:
    return json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


def test_a_notebook_with_an_error_output_is_built_and_marked(tmp_path):
    nbs = tmp_path / "nbs"
    (nbs / "tutorials").mkdir(parents=True)
    (nbs / "index.ipynb").write_text(_notebook([{"cell_type": "markdown", "metadata": {}, "source": ["# Home"]}]))
    failing = {"cell_type": "code", "metadata": {}, "execution_count": None, "source": ["1 / 0"],
               "outputs": [{"output_type": "error", "ename": "ZeroDivisionError", "evalue": "division by zero",
                            "traceback": ["\x1b[31mZeroDivisionError\x1b[0m: division by zero"]}]}
    (nbs / "01_broken.ipynb").write_text(_notebook([{"cell_type": "markdown", "metadata": {}, "source": ["# Broken"]}, failing]))
    built = build_book(nbs, tmp_path / "book")
    assert built == {"index.html": False, "01_broken.html": True}
    text = (tmp_path / "book" / "01_broken.html").read_text()
    assert "holds an error output" in text and "ZeroDivisionError: division by zero" in text


def test_what_is_not_a_notebooks_folder_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no index.ipynb"):
        build_book(tmp_path, tmp_path / "book")
    (tmp_path / "index.ipynb").write_text("{not json")
    with pytest.raises(ValueError, match="index.ipynb could not be read as a notebook"):
        build_book(tmp_path, tmp_path / "book")


def test_reading_group_pages_open_in_a_hosted_notebook(tmp_path):
    "Each runnable reading-group page links to its notebook in a hosted notebook service; library pages do not."
    from sdrc.book import book_pages, render_page
    nbs = Path(__file__).resolve().parents[1] / "nbs"
    pages = book_pages(nbs)
    for i, page in enumerate(pages):
        html_text, _ = render_page(pages, i)
        runnable = page.section == "reading group" and not page.notebook.name.startswith("00_")
        assert (f"blob/main/nbs/tutorials/{page.notebook.name}" in html_text) == runnable, page.notebook.name
