"""One writer per run folder: two runs started at once into the same folder, many times over, and a lock left by a
process killed with SIGKILL."""
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from race_worker import start_at
from sdrc.snapshots import RunLock, RunRecord

ROUNDS = 12


@pytest.fixture(scope="module")
def pool():
    "Two worker processes that import torch once and then race each other round after round."
    with multiprocessing.get_context("spawn").Pool(2) as workers:
        yield workers


def test_two_writers_started_at_once_never_share_a_folder(pool, tmp_path):
    outcomes = []
    for round_ in range(ROUNDS):
        folder, when = str(tmp_path / f"run{round_}"), time.time() + 0.3
        results = pool.starmap(start_at, [(folder, 1, when), (folder, 2, when)])
        winners = [seed for seed, result in zip((1, 2), results) if result == "ok"]
        assert len(winners) == 1, results  # exactly one run owns the folder
        loser = next(r for r in results if r != "ok")
        assert f"{folder} is being written by another process (pid " in loser or "exists and is not empty" in loser
        run = RunRecord.open(folder)
        assert run.meta["config"]["seed"] == winners[0] and run.epoch_numbers() == [0, 1]
        outcomes.append("busy" if "another process" in loser else "not empty")
    print(f"{ROUNDS} races: the loser found the folder {outcomes.count('busy')} times locked, "
          f"{outcomes.count('not empty')} times already written")


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path):
    holder = subprocess.Popen([sys.executable, str(Path(__file__).with_name("race_worker.py")), str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(FileExistsError, match=f"being written by another process \\(pid {holder.pid}\\)"):
            RunLock(tmp_path).acquire()
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    lock = RunLock(tmp_path).acquire()  # the kernel released the dead holder's lock
    assert (tmp_path / ".lock").read_text().strip() == str(os.getpid())
    lock.release()
