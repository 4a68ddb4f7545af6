"""Every notebook in nbs/ runs top to bottom with nbdev's runner, skipping cells flagged `notest`, `slow` or `gpu`."""
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
    monkeypatch.chdir(NBS.parent)
    ok, _ = run_notebook(notebook, skip_flags=skip, showerr=True)
    assert ok, f"{notebook.name} failed (see the traceback above)"
