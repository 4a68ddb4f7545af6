"""Tests of sdrc.snapshots: round trips, atomic writes, and refusal of bad, newer or pickled files."""
import json

import numpy as np
import pytest

from sdrc.snapshots import FORMAT_VERSION, RunRecord, RunWriter, write_arrays, write_json


def _run(tmp_path):
    writer = RunWriter(tmp_path / "run", {"config": {"epochs": 2}}).start()
    writer.add_epoch(0, {"acc": 0.25}, {"p": np.eye(2, dtype=np.float16), "y": np.array([0, 1], np.int16)})
    writer.add_epoch(1, {"acc": 0.5}, {"p": np.ones((2, 2), np.float16)})
    return writer


def test_round_trip(tmp_path):
    _run(tmp_path)
    run = RunRecord.open(tmp_path / "run")
    assert run.meta["config"] == {"epochs": 2} and run.meta["format_version"] == FORMAT_VERSION
    assert run.metric("acc") == [0.25, 0.5] and run.epoch_numbers() == [0, 1]
    arrays = run.arrays(0)
    assert arrays["p"].dtype == np.float16 and arrays["y"].tolist() == [0, 1]


def test_re_adding_an_epoch_replaces_it(tmp_path):
    writer = _run(tmp_path)
    writer.add_epoch(1, {"acc": 0.75})
    assert RunRecord.open(tmp_path / "run").metric("acc") == [0.25, 0.75]


def test_run_json_is_written_after_the_arrays(tmp_path, monkeypatch):
    "If writing an epoch's arrays fails, run.json does not mention that epoch."
    writer = _run(tmp_path)
    import sdrc.snapshots as S

    def fail(path, arrays):
        raise OSError("disk full")
    monkeypatch.setattr(S, "write_arrays", fail)
    with pytest.raises(OSError):
        writer.add_epoch(2, {"acc": 1.0}, {"p": np.zeros(1)})
    assert RunRecord.open(tmp_path / "run").metric("acc") == [0.25, 0.5]
    assert not list((tmp_path / "run").glob("*.tmp"))


def test_missing_folder_or_run_json(tmp_path):
    with pytest.raises(FileNotFoundError, match="run.json not found"):
        RunRecord.open(tmp_path)


def test_truncated_run_json(tmp_path):
    _run(tmp_path)
    path = tmp_path / "run" / "run.json"
    path.write_text(path.read_text()[:30])
    with pytest.raises(ValueError, match="run.json is not valid JSON"):
        RunRecord.open(tmp_path / "run")


def test_newer_format_is_refused(tmp_path):
    write_json(tmp_path / "run.json", {"format_version": FORMAT_VERSION + 1, "epochs": []})
    with pytest.raises(ValueError, match=f"format version {FORMAT_VERSION + 1}, newer"):
        RunRecord.open(tmp_path)


def test_not_a_run_record(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(ValueError, match="no format_version"):
        RunRecord.open(tmp_path)


def test_truncated_epoch_file(tmp_path):
    _run(tmp_path)
    path = tmp_path / "run" / "epoch_001.npz"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ValueError, match="epoch_001.npz could not be read"):
        RunRecord.open(tmp_path / "run").arrays(1)


def test_missing_epoch_file(tmp_path):
    _run(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"epoch_007.npz not found: epoch 7 has no record \(recorded: \[0, 1\]\)"):
        RunRecord.open(tmp_path / "run").arrays(7)


def test_crafted_pickle_is_refused(tmp_path):
    "An .npz holding a pickled object (which could run code when loaded) is refused, not unpickled."
    _run(tmp_path)
    np.savez(tmp_path / "run" / "epoch_001.npz", p=np.array([{"payload": 1}], dtype=object))
    with pytest.raises(ValueError, match="could not be read"):
        RunRecord.open(tmp_path / "run").arrays(1)


def test_object_arrays_are_not_written(tmp_path):
    with pytest.raises(TypeError, match="dtype object"):
        write_arrays(tmp_path / "x.npz", {"bad": np.array([None], dtype=object)})
    assert not (tmp_path / "x.npz").exists()
