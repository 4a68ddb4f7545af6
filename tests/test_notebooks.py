"""Every notebook in nbs/ runs top to bottom with nbdev's runner, skipping cells flagged `notest`, `slow` or `gpu`."""
import os
from pathlib import Path

import pytest
from nbdev.config import get_config
from nbdev.test import test_nb as run_notebook

NBS = Path(__file__).resolve().parents[1] / "nbs"
NOTEBOOKS = sorted(p for p in NBS.rglob("*.ipynb") if not any(part.startswith((".", "_")) for part in p.relative_to(NBS).parts))


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebooks found under {NBS}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: str(p.relative_to(NBS)))
def test_notebook_runs(notebook, monkeypatch):
    skip = get_config(cfg_name="settings.ini", path=NBS.parent).tst_flags.split()
    if os.environ.get("SDRC_DATA"):  # notebooks run in their own folders: a relative data path must not break
        monkeypatch.setenv("SDRC_DATA", str(Path(os.environ["SDRC_DATA"]).resolve()))
    monkeypatch.chdir(NBS.parent)
    ok, _ = run_notebook(notebook, skip_flags=skip, showerr=True)
    assert ok, f"{notebook.name} failed (see the traceback above)"


def test_readme_and_index_show_the_same_commands():
    "README.md and the landing notebook open with the same two commands, so neither drifts."
    import json
    readme = (NBS.parent / "README.md").read_text()
    index = "\n".join("".join(c["source"]) for c in json.loads((NBS / "index.ipynb").read_text())["cells"])
    commands = [line for line in readme.splitlines() if line.startswith("python3 -m venv")]
    assert len(commands) == 2
    assert all(command in index for command in commands)
