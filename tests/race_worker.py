"""Helpers run in separate processes by tests/test_run_folder.py."""
import os
import signal
import sys
import time

from sdrc.data import make_domain_pair
from sdrc.recipe import Recipe, Runtime
from sdrc.snapshots import RunLock
from sdrc.train import Trainer


def start_at(folder: str, seed: int, when: float) -> str:
    "Wait until `when` (time.time()), then try to train a one-epoch toy run into `folder`; 'ok' or the error's text."
    pair = make_domain_pair(n_per_class=30, num_classes=3, dim=4, seed=0)
    trainer = Trainer(pair, Recipe(epochs=1, batch_size=32, record_samples=20, seed=seed),
                      Runtime(threads=1, workers=0, progress=False, log=None), out=folder)
    while time.time() < when:
        pass
    try:
        trainer.fit()
    except FileExistsError as err:  # RunFolderBusy is one too
        return f"{type(err).__name__}: {err}"
    return "ok"


if __name__ == "__main__":  # hold the lock of sys.argv[1] until killed
    lock = RunLock(sys.argv[1]).acquire()
    print("locked", flush=True)
    signal.pause()
