"""Training across processes (torchrun, gloo on the CPU) against one process on the same toy data."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, strategies as st

from sdrc.distributed import gather_rows, shard
from sdrc.snapshots import RunRecord

WORKER = Path(__file__).with_name("distributed_worker.py")


@given(n=st.integers(0, 500), world=st.integers(1, 9))
def test_shards_cover_every_index_once_in_order(n, world):
    shards = [shard(n, r, world) for r in range(world)]
    assert [i for s in shards for i in s] == list(range(n))
    sizes = [len(s) for s in shards]  # full shards first, then at most one partial one, then empty ones
    assert sizes == sorted(sizes, reverse=True) and sizes[0] == -(-n // world)
    assert len([size for size in sizes if 0 < size < sizes[0]]) <= 1


def test_one_process_needs_no_group():
    rows = torch.randn(7, 3)
    assert shard(7) == range(7) and gather_rows(rows, 7) is rows


@pytest.fixture(scope="module")
def seen(tmp_path_factory):
    "What one process and each of two torchrun processes saw (the worker's files), and the run folders."
    folder = tmp_path_factory.mktemp("distributed")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, str(WORKER), str(folder)], check=True, env=env, timeout=300)
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(WORKER),
                    str(folder)], check=True, env=env, timeout=300, capture_output=True)
    files = {name: torch.load(folder / f"seen_{name}.pt") for name in ("rank0_of_1", "rank0_of_2", "rank1_of_2")}
    return folder, files


def _equal(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_observation_equals_one_process(seen):
    "Centres, Q and source weights of epoch 0 (gathered features → K-means → Q) are bit for bit those of one process."
    _, files = seen
    one = files["rank0_of_1"]
    for rank in ("rank0_of_2", "rank1_of_2"):
        assert _equal(files[rank]["centres"], one["centres"])
        assert _equal(files[rank]["q"], one["q"])
        assert torch.equal(files[rank]["weights"], one["weights"])
        assert files[rank]["metrics"] == one["metrics"]


def test_processes_stay_in_step(seen):
    "After training, both processes hold the same model, centres and discriminator, and report the same metrics."
    _, files = seen
    r0, r1 = files["rank0_of_2"], files["rank1_of_2"]
    assert _equal(r0["params"], r1["params"]) and _equal(r0["dann_params"], r1["dann_params"])
    untimed = lambda history: [{k: v for k, v in m.items() if not k.endswith("_seconds")} for m in history]  # noqa: E731
    assert untimed(r0["history"]) == untimed(r1["history"])
    assert not _equal(r0["params"], files["rank0_of_1"]["params"])  # each process trained on its own batches


def test_batchnorm_statistics_agree_without_broadcasting_them(seen):
    """DDP does not broadcast buffers at every forward pass: batch-norm statistics are only used by the observation,
    which recomputes them alike on every process. Broadcasting them in place between the source and the target forward
    pass broke the backward pass on torch 2.11 ("modified by an inplace operation")."""
    _, files = seen
    r0, r1 = files["rank0_of_2"], files["rank1_of_2"]
    assert r0["broadcast_buffers"] is False and r1["broadcast_buffers"] is False
    assert len(r0["buffers"]) > 0 and _equal(r0["buffers"], r1["buffers"])


def test_only_rank_zero_writes_the_run(seen):
    folder, files = seen
    run = RunRecord.open(folder / "run_2")
    assert run.epoch_numbers() == [0, 1, 2]
    assert sorted(p.name for p in (folder / "run_2").iterdir()) == [
        ".lock", "checkpoint.pt", "epoch_000.npz", "epoch_001.npz", "epoch_002.npz", "run.json"]
    assert (folder / "run_2" / ".lock").read_text() == ""  # released at the end
    assert [m["acc_f"] for m in run.epochs] == [m["acc_f"] for m in files["rank0_of_2"]["history"]]
