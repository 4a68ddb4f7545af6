"""Run by tests/test_resume.py: train a toy run and kill this very process with SIGKILL at a chosen moment.

    python tests/kill_worker.py FOLDER METHOD PRESET ABLATION KIND N

KIND is `record` (while the N-th epoch record is half written), `checkpoint` (while the N-th checkpoint is half
written), `write` (while the N-th file of any kind is half written: run.json, a record or the checkpoint, in the order
the run writes them) or `step` (at the N-th optimisation step). The kill is real: no exception, no clean-up, no atexit.
"""
import os
import signal
import sys
from pathlib import Path

import sdrc.io as io
from sdrc.data import make_domain_pair
from sdrc.recipe import Recipe, Runtime
from sdrc.train import Trainer

RUNTIME = Runtime(threads=1, workers=0, progress=False, log=None)


def toy_pair():
    return make_domain_pair(n_per_class=40, num_classes=3, dim=4, shift="translate", amount=1.0, seed=0)


def recipe(method: str, preset: str, ablation: str) -> Recipe:
    return Recipe(method=method, preset=preset, ablation=ablation, epochs=4, batch_size=32, record_samples=50, seed=0)


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def arm_write(kind: str, n: int) -> None:
    "Kill the process halfway through the n-th write of an epoch record or of the checkpoint."
    real, seen = io.atomic_write, {"n": 0}
    wanted = {"record": lambda name: name.startswith("epoch_"), "checkpoint": lambda name: name == "checkpoint.pt",
              "write": lambda name: True}[kind]

    def atomic_write(path, write):
        if wanted(Path(path).name):
            seen["n"] += 1
            if seen["n"] == n:
                def half_then_die(tmp):
                    write(tmp)
                    os.truncate(tmp, os.path.getsize(tmp) // 2)
                    die()
                return real(path, half_then_die)
        return real(path, write)
    io.atomic_write = atomic_write


def arm_step(n: int) -> None:
    "Kill the process at the n-th optimisation step, before it is taken."
    real, seen = Trainer.step, {"n": 0}

    def step(self, loss):
        seen["n"] += 1
        if seen["n"] == n:
            die()
        real(self, loss)
    Trainer.step = step


if __name__ == "__main__":
    folder, method, preset, ablation, kind, n = sys.argv[1:]
    arm_step(int(n)) if kind == "step" else arm_write(kind, int(n))
    Trainer(toy_pair(), recipe(method, preset, ablation), RUNTIME, out=folder).fit()
    sys.exit(3)  # reaching here means the kill point was never met
