"""Tests of sdrc.snapshots: round trips, atomic writes, and refusal of bad, newer or pickled files."""
import json

import numpy as np
import pytest

from sdrc.io import write_arrays, write_json
from sdrc.snapshots import FORMAT_VERSION, RECORD_FIELDS, EpochRecord, RunRecord, RunWriter, record_from_arrays


def tiny_record(k: int = 2, spaces: int = 2, n_target: int = 3, n_source: int = 2, seed: int = 0,
                learned: bool = True) -> EpochRecord:
    """A random record of `n_target` target and `n_source` source points, K = `k`, `spaces` spaces of width 4 and 3;
    with the learned centres of the epoch before unless `learned` is False (a first epoch)."""
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(k), n_target)
    dims = [4, 3][:spaces]
    return EpochRecord(target_index=np.arange(n_target), target_y=rng.integers(0, k, n_target), target_p=p, target_q=p,
                       target_pred=p.argmax(1), target_cluster=rng.integers(0, k, n_target),
                       source_index=np.arange(n_source), source_y=rng.integers(0, k, n_source),
                       source_weight=rng.random(n_source), target_feat=[rng.normal(size=(n_target, d)) for d in dims],
                       source_feat=[rng.normal(size=(n_source, d)) for d in dims],
                       target_phat=[rng.dirichlet(np.ones(k), n_target) for _ in dims],
                       centres=[rng.normal(size=(k, d)) for d in dims],
                       kmeans_centroids=[rng.normal(size=(k, d)) for d in dims],
                       learned_centres=[rng.normal(size=(k, d)) for d in dims] if learned else None)


def _run(tmp_path):
    writer = RunWriter.create(tmp_path / "run", {"config": {"epochs": 2}})
    writer.add_epoch(0, {"acc_f": 0.25}, tiny_record(seed=0))
    writer.add_epoch(1, {"acc_f": 0.5}, tiny_record(seed=1))
    return writer


def test_round_trip(tmp_path):
    _run(tmp_path)
    run = RunRecord.open(tmp_path / "run")
    assert run.meta["config"] == {"epochs": 2} and run.meta["format_version"] == FORMAT_VERSION
    assert run.metric("acc_f") == [0.25, 0.5] and run.epoch_numbers() == [0, 1]
    record, written = run.record(0), tiny_record(seed=0)
    assert record.target_p.dtype == np.float16 and record.target_phat[1].dtype == np.float32
    assert record.target_y.tolist() == written.target_y.tolist() and record.num_spaces == 2
    np.testing.assert_allclose(record.target_feat[1], written.target_feat[1], rtol=1e-3, atol=1e-3)


def test_re_adding_an_epoch_replaces_it(tmp_path):
    writer = _run(tmp_path)
    writer.add_epoch(1, {"acc_f": 0.75})
    assert RunRecord.open(tmp_path / "run").metric("acc_f") == [0.25, 0.75]


def test_run_json_is_written_after_the_arrays(tmp_path, monkeypatch):
    "If writing an epoch's arrays fails, run.json does not mention that epoch."
    writer = _run(tmp_path)
    import sdrc.snapshots as S

    def fail(path, arrays):
        raise OSError("disk full")
    monkeypatch.setattr(S, "write_arrays", fail)
    with pytest.raises(OSError):
        writer.add_epoch(2, {"acc_f": 1.0}, tiny_record())
    assert RunRecord.open(tmp_path / "run").metric("acc_f") == [0.25, 0.5]
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
    with pytest.raises(ValueError, match="no valid format_version"):
        RunRecord.open(tmp_path)


def test_truncated_epoch_file(tmp_path):
    _run(tmp_path)
    path = tmp_path / "run" / "epoch_001.npz"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ValueError, match="epoch_001.npz could not be read"):
        RunRecord.open(tmp_path / "run").record(1)


def test_missing_epoch_file(tmp_path):
    _run(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"epoch_007.npz not found: epoch 7 has no record \(recorded: \[0, 1\]\)"):
        RunRecord.open(tmp_path / "run").record(7)


def test_crafted_pickle_is_refused(tmp_path):
    "An .npz holding a pickled object (which could run code when loaded) is refused, not unpickled."
    _run(tmp_path)
    np.savez(tmp_path / "run" / "epoch_001.npz", p=np.array([{"payload": 1}], dtype=object))
    with pytest.raises(ValueError, match="could not be read"):
        RunRecord.open(tmp_path / "run").record(1)


def test_object_arrays_are_not_written(tmp_path):
    with pytest.raises(TypeError, match="dtype object"):
        write_arrays(tmp_path / "x.npz", {"bad": np.array([None], dtype=object)})
    assert not (tmp_path / "x.npz").exists()


def test_a_first_epoch_and_an_older_record_lack_only_the_optional_fields():
    first = tiny_record(learned=False).to_arrays()
    assert not any(key.startswith("learned_centres") for key in first)
    assert record_from_arrays(first).learned_centres is None
    older = {key: a for key, a in first.items() if not key.startswith("kmeans_centroids")}  # written before they existed
    assert record_from_arrays(older).kmeans_centroids is None
    with pytest.raises(ValueError, match="missing kmeans_centroids_1"):  # present in one space only: damaged
        record_from_arrays({key: a for key, a in first.items() if key != "kmeans_centroids_1"})


def test_record_round_trip_keeps_every_field(tmp_path):
    "Every field of the schema is written and read back, cast to its stored type."
    written = tiny_record(k=4, spaces=2, n_target=5, n_source=3)
    back = record_from_arrays(written.to_arrays())
    for f in RECORD_FIELDS:
        mine, theirs = getattr(back, f.name), getattr(written, f.name)
        for a, b in zip(mine, theirs) if f.per_space else [(mine, theirs)]:
            assert a.dtype == np.dtype(f.dtype) and a.shape == np.shape(b)
            np.testing.assert_allclose(a.astype(float), np.asarray(b, float), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("key, value, message", [
    ("target_p", np.ones((3, 5)), "'target_p' should be 3×2"),
    ("source_weight", np.ones(7), r"'source_weight' has 7 rows, expected 2 \(source\)"),
    ("centres_1", np.zeros((5, 3)), r"'centres_1' has 5 rows, expected 2 \(classes\)"),
    ("target_phat_0", np.array(["a", "b", "c"]), "'target_phat_0' should be a numeric array"),
])
def test_malformed_record_is_refused_naming_the_field(key, value, message):
    arrays = dict(tiny_record().to_arrays(), **{key: value})
    with pytest.raises(ValueError, match=message):
        record_from_arrays(arrays, "epoch_004.npz")


def test_unknown_metric_is_refused(tmp_path):
    with pytest.raises(KeyError, match="unknown metric 'accuracy'"):
        _run(tmp_path).add_epoch(2, {"accuracy": 1.0})
