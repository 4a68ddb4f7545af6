"""Every notebook in nbs/ runs top to bottom with nbdev's runner, skipping cells flagged `notest`, `slow` or `gpu`.
The reading-group notebooks run with their exercises: every ```python snippet in their text runs as a code cell right
where the text shows it, against the notebook's state at that point, so a snippet that fails fails the test."""
import os
import re
import sys
from pathlib import Path

import pytest
from execnb.nbio import mk_cell
from execnb.shell import CaptureShell
from fastcore.foundation import working_directory
from nbdev.config import get_config
from nbdev.frontmatter import FrontmatterProc
from nbdev.process import NBProcessor

NBS = Path(__file__).resolve().parents[1] / "nbs"
NOTEBOOKS = sorted(p for p in NBS.rglob("*.ipynb") if not any(part.startswith((".", "_")) for part in p.relative_to(NBS).parts))


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebooks found under {NBS}"


SNIPPET = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def snippets(markdown: str) -> list[str]:
    "The ```python blocks of a markdown text, in order."
    return SNIPPET.findall(markdown)


def with_exercises(nb):
    "`nb` with each ```python snippet of its text inserted as a code cell just after the text that shows it."
    cells = []
    for cell in nb.cells:
        cells.append(cell)
        if cell.cell_type == "markdown":
            cells += [mk_cell(code) for code in snippets(cell.source)]
    nb.cells = cells
    return nb


def run_notebook(path: Path, skip_flags: list[str], exercises: bool) -> bool:
    "Run `path` top to bottom in its own folder as nbdev's runner does (IN_TEST set, flagged cells skipped)."
    os.environ["IN_TEST"] = "1"
    nb = NBProcessor(path, procs=FrontmatterProc, process=True).nb
    if exercises:
        nb = with_exercises(nb)
    skipped = lambda cell: cell.cell_type != "code" or "nbdev_export(" in cell.source or bool(  # noqa: E731
        set(skip_flags) & (getattr(cell, "directives_", {}) or {}).keys())
    shell = CaptureShell(path)
    try:
        with working_directory(path.parent):
            shell.run_all(nb, exc_stop=True, preproc=skipped)
    except Exception:
        sys.stderr.write(shell.prettytb(fname=path) + "\n")
        return False
    return True


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: str(p.relative_to(NBS)))
def test_notebook_runs(notebook, monkeypatch):
    skip = get_config(cfg_name="settings.ini", path=NBS.parent).tst_flags.split()
    if os.environ.get("SDRC_DATA"):  # notebooks run in their own folders: a relative data path must not break
        monkeypatch.setenv("SDRC_DATA", str(Path(os.environ["SDRC_DATA"]).resolve()))
    monkeypatch.chdir(NBS.parent)
    monkeypatch.setenv("IN_TEST", "1")
    ok = run_notebook(notebook, skip, exercises=notebook.parent.name == "tutorials")
    assert ok, f"{notebook.name} failed (see the traceback above)"


def test_a_failing_exercise_fails_its_notebook(tmp_path, monkeypatch):
    "The runner itself: a snippet that raises in a tutorial's text fails the run; one that works does not."
    import nbformat
    good = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("labels = [1, 2]"),
                                           nbformat.v4.new_markdown_cell("Predict, then run:\n\n```python\nlen(labels)\n```\n")])
    bad = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("def f():\n    cents = 1"),
                                          nbformat.v4.new_markdown_cell("```python\ncents\n```")])
    for name, nb in (("good", good), ("bad", bad)):
        nbformat.write(nb, tmp_path / f"{name}.ipynb")
    monkeypatch.setenv("IN_TEST", "1")
    assert run_notebook(tmp_path / "good.ipynb", [], exercises=True)
    assert not run_notebook(tmp_path / "bad.ipynb", [], exercises=True)
    assert run_notebook(tmp_path / "bad.ipynb", [], exercises=False)  # the snippet is what fails


def test_readme_and_index_show_the_same_commands():
    "README.md and the landing notebook open with the same two commands, so neither drifts."
    import json
    readme = (NBS.parent / "README.md").read_text()
    index = "\n".join("".join(c["source"]) for c in json.loads((NBS / "index.ipynb").read_text())["cells"])
    commands = [line for line in readme.splitlines() if line.startswith("python3 -m venv")]
    assert len(commands) == 2
    assert all(command in index for command in commands)


TUTORIALS = sorted(p for p in (NBS / "tutorials").glob("0[1-9]_*.ipynb"))


@pytest.mark.parametrize("notebook", TUTORIALS, ids=lambda p: p.name)
def test_a_tutorial_installs_sdrc_where_it_is_missing(notebook, monkeypatch):
    "The first cell of each reading-group notebook installs sdrc from its repository where it cannot be imported."
    import importlib.util
    import json
    import subprocess
    first = next("".join(c["source"]) for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code")
    ran = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: ran.append(cmd))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sdrc" else object())
    exec(compile(first, "first cell", "exec"), {})
    assert len(ran) == 1 and ran[0][-1] == "sdrc @ git+https://github.com/sdrc/sdrc" and "pip" in ran[0]
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())
    exec(compile(first, "first cell", "exec"), {})
    assert len(ran) == 1  # importable: nothing is installed
