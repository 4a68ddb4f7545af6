"""Exact resume after a real `kill -9`, for every method and preset, at any moment: while an epoch record is being
written, while the checkpoint is being written, and in the middle of a training epoch, all after the warm-up epoch
(when the `official` preset's centre gradients have started to accumulate)."""
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from kill_worker import RUNTIME, recipe, toy_pair
from sdrc.snapshots import RunRecord
from sdrc.train import CHECKPOINT, Trainer, load_checkpoint

WORKER = Path(__file__).with_name("kill_worker.py")
RUNS = [("srdc", "official", "none"), ("srdc", "paper", "none"), ("srdc", "official-sum", "none"),
        ("srdc", "official", "no-source-reg"), ("dann", "official", "none"), ("source-only", "official", "none")]
# a toy epoch is 4 steps; warm-up is epoch 0. Kill while writing epoch 2's record (the 3rd), while writing the
# checkpoint after epoch 2 (the 3rd), and at the 2nd step of epoch 2 (the 10th step).
KILLS = [("record", 3), ("checkpoint", 3), ("step", 10)]
# and at every write of the first two epochs (run.json created, epoch 0's record, run.json, the first checkpoint, epoch 1's
# record, run.json, the second checkpoint), and at a step of the first epoch, for the three presets: the first four leave no
# checkpoint, so the run starts again in its folder
EARLY_RUNS = RUNS[:3]
EARLY_KILLS = [("write", n) for n in range(1, 8)] + [("step", 2)]


def untimed(history):
    return [{k: v for k, v in m.items() if not k.endswith("_seconds")} for m in history]


def final_state(trainer: Trainer) -> dict:
    state = {f"model.{k}": v for k, v in trainer.model.state_dict().items()}
    state.update({f"centres.{k}": v for k, v in trainer.centres.state_dict().items()})
    state.update({f"centre_grad.{j}": mu.grad for j, mu in enumerate(trainer.centres) if mu.grad is not None})
    if trainer.extra is not None:
        state.update({f"extra.{k}": v for k, v in trainer.extra.state_dict().items()})
    return state


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    "Every (run, kill point) trained in a subprocess that was killed with SIGKILL; two at a time."
    root = tmp_path_factory.mktemp("killed")
    jobs = [(run, kill) for run in RUNS for kill in KILLS] + [(run, kill) for run in EARLY_RUNS for kill in EARLY_KILLS]

    def launch(job):
        (method, preset, ablation), (kind, n) = job
        folder = root / f"{method}-{preset}-{ablation}-{kind}-{n}"
        done = subprocess.run([sys.executable, str(WORKER), str(folder), method, preset, ablation, kind, str(n)],
                              capture_output=True, text=True, timeout=300)
        return job, folder, done
    with ThreadPoolExecutor(2) as pool:
        return {job: (folder, done) for job, folder, done in pool.map(launch, jobs)}


@pytest.mark.parametrize("run, kill", [(r, k) for r in RUNS for k in KILLS] + [(r, k) for r in EARLY_RUNS for k in EARLY_KILLS],
                         ids=lambda x: "-".join(map(str, x)))
def test_a_run_killed_at_any_moment_resumes_bit_for_bit(run, kill, killed, tmp_path):
    folder, done = killed[run, kill]
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]  # it really was killed, at the chosen moment
    left = sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))
    if kill[0] != "step":
        assert left, "the kill should have left a half-written file"
    torch.set_num_threads(1)
    straight = Trainer(toy_pair(), recipe(*run), RUNTIME, out=tmp_path / "straight")
    expected = straight.fit()
    resumed = Trainer(toy_pair(), recipe(*run), RUNTIME, out=folder)
    history = resumed.fit(resume=True)
    assert untimed(history) == untimed(expected)
    assert untimed(RunRecord.open(folder).epochs) == untimed(RunRecord.open(tmp_path / "straight").epochs)
    a, b = final_state(resumed), final_state(straight)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    mine, theirs = RunRecord.open(folder).record(4).to_arrays(), RunRecord.open(tmp_path / "straight").record(4).to_arrays()
    assert all(np.array_equal(mine[k], theirs[k]) for k in theirs)
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]  # leftovers removed when the folder was opened
    assert load_checkpoint(folder / CHECKPOINT)["next_epoch"] == 4
