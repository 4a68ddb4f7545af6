"""What a reader sees without a kernel: every saved figure has a static image beside it (GitHub and nbviewer draw no
Plotly JSON and no widgets), and the library notebooks are saved with the outputs of their worked examples."""
import ast
import json
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NBS = Path(__file__).resolve().parents[1] / "nbs"
ALL = sorted(p for p in NBS.rglob("*.ipynb") if not any(part.startswith((".", "_")) for part in p.relative_to(NBS).parts))
LIBRARY = sorted(NBS.glob("*.ipynb"))
PLOTLY, WIDGET, IMAGES = "application/vnd.plotly.v1+json", "application/vnd.jupyter.widget-view+json", ("image/png", "image/svg+xml")


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


@pytest.mark.parametrize("notebook", ALL, ids=lambda p: str(p.relative_to(NBS)))
def test_every_figure_and_widget_has_a_static_image(notebook):
    missing = []
    for i, cell in enumerate(cells(notebook)):
        outputs = cell.get("outputs", [])
        for output in outputs:
            data = output.get("data", {})
            if PLOTLY in data and not any(kind in data for kind in IMAGES):
                missing.append(f"cell {i}: a Plotly figure without its image")
        if any(WIDGET in o.get("data", {}) for o in outputs) and not any(
                kind in o.get("data", {}) for o in outputs for kind in IMAGES):
            missing.append(f"cell {i}: a widget without a static picture")
    assert not missing, missing


def shows_a_value(source: str) -> bool:
    "Whether a code cell ends in an expression that Jupyter displays (not a check, not an assignment, not a print)."
    if re.search(r"^#\|\s*(export|hide|slow|gpu|notest)", source, re.M):
        return False
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return False
    if not body or not isinstance(body[-1], ast.Expr):
        return False
    call = body[-1].value
    name = getattr(getattr(call, "func", None), "id", getattr(getattr(call, "func", None), "attr", ""))
    return not (isinstance(call, ast.Call) and (name.startswith(("test_", "assert", "check")) or name in ("print", "display")))


@pytest.mark.parametrize("notebook", ALL, ids=lambda p: str(p.relative_to(NBS)))
def test_no_widget_state_is_saved(notebook):
    "A widget's state (megabytes of figure data) is not kept: its static picture is what a reader without a kernel sees."
    assert "widgets" not in json.loads(notebook.read_text(encoding="utf-8"))["metadata"]


def test_the_notebooks_stay_small():
    total = sum(p.stat().st_size for p in ALL) + sum(p.stat().st_size for p in (NBS / "images").glob("*"))
    assert total < 25e6, f"nbs/ holds {total / 1e6:.1f} MB"


@pytest.mark.parametrize("notebook", LIBRARY, ids=lambda p: p.name)
def test_library_notebooks_are_saved_with_their_worked_examples(notebook):
    unshown = [i for i, cell in enumerate(cells(notebook)) if cell["cell_type"] == "code"
               and shows_a_value("".join(cell["source"])) and not cell.get("outputs")]
    assert not unshown, f"{notebook.name}: cells {unshown} show a value but were saved without it"
    code = [cell for cell in cells(notebook) if cell["cell_type"] == "code"]  # a notebook of prose alone has none to keep
    assert not code or any(cell.get("outputs") for cell in code), f"{notebook.name} was saved with no output at all"


LINK = re.compile(r"\]\(([^)#\s]+\.(?:ipynb|png|md))(?:#[^)]*)?\)")


@pytest.mark.parametrize("notebook", ALL, ids=lambda p: str(p.relative_to(NBS)))
def test_links_between_notebooks_lead_somewhere(notebook):
    "Every relative link in a notebook's text (to a notebook, an image or a page) names a file that exists."
    text = "".join("".join(c["source"]) for c in cells(notebook) if c["cell_type"] == "markdown")
    broken = [link for link in LINK.findall(text) if "://" not in link and not (notebook.parent / link).exists()]
    assert not broken, f"{notebook.name}: broken links {broken}"


def test_a_figure_that_cannot_be_drawn_stops_the_save(tmp_path, monkeypatch):
    "With the pictures renderer on and no browser for kaleido, executing a notebook fails: never a save without its image."
    code = "import os, plotly.io as pio, plotly.graph_objects as go\npio.renderers.default = os.environ['PLOTLY_RENDERER']\ngo.Figure(go.Bar(y=[1, 2]))"
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    monkeypatch.setenv("PLOTLY_RENDERER", "plotly_mimetype+png")
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "no-browser"))
    with pytest.raises(CellExecutionError, match="Chrome|browser"):
        NotebookClient(notebook, timeout=120, kernel_name="python3").execute()


PLACEHOLDER = re.compile(r"\b(?:RUNTIME_(?:FULL|TEST)|(?:EXERCISE_)?ANSWERS?(?:_[A-Z0-9]+)?|WHAT_WE_MEASURED|FAULT_TALLY|"
                         r"RECORD_OVERHEAD)\b")
TEXTS = [*ALL, NBS.parent / "README.md", *sorted((NBS.parent / "bench").glob("*.md"))]


@pytest.mark.parametrize("path", TEXTS, ids=lambda p: p.name)
def test_no_placeholder_is_left_in_what_readers_see(path):
    "Text written before its figures were measured holds a capitalised placeholder; none may reach a reader."
    found = sorted(set(PLACEHOLDER.findall(path.read_text(encoding="utf-8"))))
    assert not found, f"{path.name} still holds {found}"
