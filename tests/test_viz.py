"""Tests of the viewers: aligned layouts and their cache, fixed frames, the explorer driven as a user would (one run,
two side by side, one followed while it trains), the report, and the errors for runs that cannot be shown."""
import json
import shutil
import threading
import time

import numpy as np
import pytest

from sdrc.data import make_domain_pair
from sdrc.explorer import ClusterExplorer
from sdrc.recipe import Recipe, Runtime
from sdrc.report import write_report
from sdrc.snapshots import RunRecord
from sdrc.train import train
from sdrc.viz import (embed_run, frame, mean_displacement, metrics_figure, open_runs, procrustes_align, scatter_figure,
                      settle_epoch, view_run)

QUIET = Runtime(progress=False, log=None, workers=0)


def toy_pair(classes: int = 3):
    return make_domain_pair(n_per_class=60, num_classes=classes, dim=4, shift="translate", amount=1.5, seed=0)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    "Two finished 3-epoch toy runs of the same pair (official and paper presets)."
    root = tmp_path_factory.mktemp("viz")
    for preset in ("official", "paper"):
        train(toy_pair(), Recipe(preset=preset, epochs=3, batch_size=32, record_samples=100), QUIET, out=root / preset)
    return root


@pytest.fixture
def run(runs):
    return RunRecord.open(runs / "official")


def test_procrustes_undoes_rotation_reflection_scale_and_shift():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(40, 2))
    moved = (ref * np.array([1, -1])) @ np.array([[0.6, -0.8], [0.8, 0.6]]) * 0.2 - 4
    np.testing.assert_allclose(procrustes_align(moved, ref), ref, atol=1e-9)


def test_alignment_reduces_displacement():
    rng = np.random.default_rng(2)
    base = rng.normal(size=(200, 2))
    flipped = np.stack([base, base @ np.array([[0.0, 1.0], [1.0, 0.0]]) * 5])
    aligned = np.stack([base, procrustes_align(flipped[1], base)])
    assert mean_displacement(aligned) < 1e-9 < mean_displacement(flipped)


def test_embedding_is_cached(run):
    emb = embed_run(run, space=1, method="pca", progress=False)
    assert emb.epochs == [0, 1, 2, 3] and emb.coords.shape == (4, 200, 2) and emb.n_target == 100
    assert (run.folder / "embedding_pca_1.npz").is_file()
    np.testing.assert_array_equal(embed_run(run, space=1, method="pca", progress=False).coords, emb.coords.astype(np.float32))


def test_umap_is_the_default_layout(run):
    view = view_run(run, space=0)
    assert view.embedding.method == "umap" and view.embedding.coords.shape == (4, 200, 2)
    assert np.isfinite(view.embedding.coords).all() and view.note.startswith("UMAP layout")


def test_without_umap_the_layout_falls_back_to_pca_with_a_note(run, monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "umap" else real(name, *a))
    view = view_run(run)
    assert view.embedding.method == "pca" and "umap-learn is not installed" in view.note


def test_embedding_bad_arguments(run):
    with pytest.raises(ValueError, match="unknown layout 'tsne'"):
        embed_run(run, method="tsne")
    with pytest.raises(ValueError, match="no features of space 5"):
        embed_run(run, space=5, method="pca", progress=False)


def test_the_frame_holds_every_epoch_and_stays_the_same(run):
    view = view_run(run, method="pca")
    xs, ys = view.frame
    coords = view.embedding.coords
    assert xs[0] < coords[..., 0].min() and coords[..., 0].max() < xs[1] and ys[0] < coords[..., 1].min()
    first, last = scatter_figure(view, 0), scatter_figure(view, 3)
    assert list(first.layout.xaxis.range) == list(last.layout.xaxis.range) == xs
    assert first.layout.xaxis.autorange is False
    assert frame(np.zeros((2, 5, 2)))[0][0] < 0 < frame(np.zeros((2, 5, 2)))[0][1]  # a point still gets a frame


def test_the_scatter_names_each_class_and_holds_each_point_once(run):
    view = view_run(run, method="pca")
    fig = scatter_figure(view, 2, colouring="true class")
    assert [t.name for t in fig.data[:3]] == ["class 0", "class 1", "class 2"]
    assert sorted(np.concatenate([t.customdata for t in fig.data[:3]]).tolist()) == list(range(100))
    record = view.records[2]
    for k, trace in enumerate(fig.data[:3]):
        assert (record.target_y[np.asarray(trace.customdata)] == k).all()
    assert list(fig.data[-1].text) == view.classes  # the centres are labelled with their class


def test_settle_epoch():
    class R:
        def __init__(self, pred):
            self.target_pred = np.array(pred)
    records = [R([0] * 50), R([1] * 50), R([1] * 49 + [2]), R([1] * 49 + [2])]
    assert settle_epoch(records, [0, 1, 2, 3]) == 2  # 1 of 50 (2 %) changes after epoch 1: not fewer than 2 %
    assert settle_epoch(records, [0, 1, 2, 3], tolerance=0.03) == 1
    assert settle_epoch(records[:2], [0, 1]) is None  # still changing at the end


def test_metrics_figure_plots_each_recorded_metric_with_its_label(runs):
    views = [view_run(runs / name, method="pca") for name in ("official", "paper")]
    fig = metrics_figure(views, epoch=1)
    curves = {t.name: list(t.y) for t in fig.data if t.name and t.name.startswith("accuracy of f on the target test split")}
    assert curves == {f"accuracy of f on the target test split: {v.label}": v.run.metric("acc_f") for v in views}
    assert {t.legend or "legend" for t in fig.data} == {"legend", "legend2", "legend3", "legend4"}
    assert [s.x0 for s in fig.layout.shapes if s.name == "cursor"] == [1, 1, 1, 1]
    scores = {t.name: t.y for t in fig.data if t.legend == "legend4"}
    im = views[0].run.metric("score_im")
    low, high = min(im[1:]), max(im[1:])
    assert scores[f"IM: {views[0].label}"] == tuple([None] + [(v - low) / (high - low) for v in im[1:]])  # scaled over epochs ≥ 1


def test_runs_recorded_before_the_scores_existed_show_no_score_panel(run, tmp_path):
    import json
    import shutil
    old = tmp_path / "old"
    shutil.copytree(run.folder, old)
    data = json.loads((old / "run.json").read_text())
    data["epochs"] = [{k: v for k, v in m.items() if not k.startswith("score_")} for m in data["epochs"]]
    (old / "run.json").write_text(json.dumps(data))
    fig = metrics_figure([view_run(old, method="pca")])
    assert not any(t.legend == "legend4" for t in fig.data) and len([s for s in fig.layout.shapes if s.name == "cursor"]) == 3


def test_explorer_follows_the_slider_and_colouring(run):
    ex = ClusterExplorer(run, space=1, method="pca")
    assert ex.slider.value == 3  # opens at the last epoch
    ex.slider.value = 1
    view = ex.shown[0]
    shown = np.concatenate([t.x for t in ex.scatters[0].data[:3]])
    np.testing.assert_allclose(np.sort(shown), np.sort(view.embedding.coords[1, :100, 0]))
    assert ex.scatters[0].layout.title.text.startswith("official (srdc official): epoch 1")
    assert list(ex.scatters[0].layout.xaxis.range) == view.frame[0]
    ex.colour.value = "correct"
    record = run.record(1)
    np.testing.assert_array_equal(ex.scatters[0].data[3].marker.color, (record.target_pred == record.target_y).astype(float))
    assert [s.x0 for s in ex.metrics.layout.shapes if s.name == "cursor"] == [1, 1, 1, 1]


def test_the_static_picture_shows_the_widgets_colouring_and_every_class(run):
    """What a reader without a kernel sees: the colouring the cell chose, and each class in the legend even when no point
    of it is drawn (here class 2 is removed from every picture)."""
    ex = ClusterExplorer(run, space=1, method="pca")
    ex.colour.value = "true class"
    for view in ex.shown:
        for record in view.records:
            record.target_y[record.target_y == 2] = 0
    static = ex._static_figure()
    assert static.layout.legend.title.text == "true class"
    assert [t.name for t in static.data if t.showlegend is not False] == list(ex.shown[0].classes)
    drawn = [t for t in static.data if t.showlegend is False and t.name == ex.shown[0].classes[2]]
    assert drawn and all(len(t.x) == 0 for t in drawn)
    ex.colour.value = "correct"
    static = ex._static_figure()
    assert static.layout.legend.title.text == "correct" and sum(bool(t.marker.showscale) for t in static.data) == 1


def test_explorer_switches_clustering_space(run):
    ex = ClusterExplorer(run, space=1, method="pca")
    ex.slider.value = 2
    ex.space_choice.value = 0
    ex.colour.value = "p̂ argmax"
    record = run.record(2)
    for k, trace in enumerate(ex.scatters[0].data[:3]):
        assert (record.target_phat[0][np.asarray(trace.customdata)].argmax(1) == k).all()


def test_explorer_colours_the_source_points_by_their_weight(run):
    ex = ClusterExplorer(run, space=1, method="pca")
    ex.slider.value = 2
    ex.colour.value = "source weight"
    np.testing.assert_allclose(np.array(ex.scatters[0].data[4].marker.color), run.record(2).source_weight.astype(float))
    assert ex.scatters[0].data[4].visible is True


def test_explorer_shows_a_points_distributions_and_image(run):
    images = np.arange(180 * 8 * 8, dtype=np.uint8).reshape(180, 8, 8)
    ex = ClusterExplorer(run, space=1, method="pca", images=images)
    ex.slider.value = 2
    ex.select(0, 7)
    record = run.record(2)
    for trace, values in zip(ex.details.data, (record.target_p, record.target_q, record.target_phat[1])):
        np.testing.assert_allclose(np.array(trace.y), values[7].astype(float))
    assert f"target image #{record.target_index[7]}" in ex.info.value
    from io import BytesIO
    from PIL import Image
    image = images[record.target_index[7]].astype(float)
    scaled = np.round((image - image.min()) / (image.max() - image.min()) * 255)  # each picture scaled to 0-255 on its own
    np.testing.assert_array_equal(np.asarray(Image.open(BytesIO(ex.picture.value)))[::12, ::12], scaled)  # 8 px -> 96 px


def test_two_runs_side_by_side_share_one_slider(runs):
    ex = ClusterExplorer([runs / "official", runs / "paper"], method="pca")
    ex.slider.value = 2
    assert [fig.layout.title.text for fig in ex.scatters] == ["official (srdc official): epoch 2 (space 1)",
                                                              "paper (srdc paper): epoch 2 (space 1)"]
    ex.select(1, 4)
    np.testing.assert_allclose(np.array(ex.details.data[0].y), RunRecord.open(runs / "paper").record(2).target_p[4].astype(float))


def test_runs_that_cannot_be_compared_are_refused_with_the_reason(runs, tmp_path):
    train(toy_pair(4), Recipe(epochs=3, batch_size=32, record_samples=20), QUIET, out=tmp_path / "four")
    with pytest.raises(ValueError, match="have different classes"):
        open_runs([runs / "official", tmp_path / "four"])
    other = make_domain_pair(n_per_class=60, num_classes=3, dim=4, seed=0)
    other.target_train.name = "elsewhere"
    train(other, Recipe(epochs=3, batch_size=32, record_samples=20), QUIET, out=tmp_path / "other")
    with pytest.raises(ValueError, match="trained on different pairs"):
        open_runs([runs / "official", tmp_path / "other"])
    train(toy_pair(), Recipe(epochs=1, batch_size=32, record_samples=20), QUIET, out=tmp_path / "short")
    with pytest.raises(ValueError, match="different recorded epochs"):
        write_report([runs / "official", tmp_path / "short"], tmp_path / "r.html", method="pca")
    with pytest.raises(FileNotFoundError, match="run.json not found"):
        open_runs([tmp_path])


def test_a_run_still_being_written_opens_with_its_complete_epochs(run, tmp_path):
    "A half-written last epoch (its temporary file, no metrics yet) and no report: the complete epochs are shown."
    partial = tmp_path / "partial"
    shutil.copytree(run.folder, partial)
    data = json.loads((partial / "run.json").read_text())
    data["epochs"] = data["epochs"][:3]  # epoch 3's record is on disk, its metrics are not
    (partial / "run.json").write_text(json.dumps(data))
    (partial / ".epoch_004.npz.x1.tmp").write_bytes(b"half")
    ex = ClusterExplorer(partial, method="pca")
    assert ex.epochs == [0, 1, 2]


def test_a_followed_run_adds_each_epoch_as_it_is_written(tmp_path):
    folder = tmp_path / "live"
    slow = Runtime(progress=False, log=lambda line: time.sleep(0.3), workers=0)
    trainer = threading.Thread(target=train, args=(toy_pair(), Recipe(epochs=3, batch_size=32, record_samples=50), slow),
                               kwargs=dict(out=folder))
    trainer.start()
    ex = ClusterExplorer(folder, method="pca", follow=True, poll_seconds=0.05)
    first = len(ex.epochs)
    trainer.join()
    ex._thread.join(timeout=30)
    assert first < 4 and ex.epochs == [0, 1, 2, 3] and ex.slider.max == 3 and ex.slider.value == 3
    assert not ex._thread.is_alive()  # it stops once the run has written its last epoch
    ex.slider.value = 0  # still usable
    assert ex.scatters[0].layout.title.text.endswith("epoch 0 (space 1)")


def test_report_is_self_contained(runs, tmp_path):
    path = write_report(runs / "official", tmp_path / "report.html", method="pca")
    text = path.read_text()
    assert text.startswith("<!DOCTYPE html>") and 'src="http' not in text and "plotly.js v" in text
    assert "What to look for" in text and "PCA layout" in text
    assert path.stat().st_size < 15_000_000


def test_report_escapes_hostile_names(runs, tmp_path):
    hostile = tmp_path / "<script>alert(1)<"
    shutil.copytree(runs / "official", hostile)
    text = write_report(hostile, tmp_path / "r.html", method="pca").read_text()
    assert "<script>alert(1)" not in text
