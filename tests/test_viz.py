"""Tests of sdrc.viz: Procrustes alignment, cached embeddings, the explorer driven as a user would, the HTML report."""
import numpy as np
import pytest

from conftest import train_toy_run
from sdrc.snapshots import RunRecord
from sdrc.viz import (ClusterExplorer, embed_run, mean_displacement, metrics_figure, procrustes_align,
                      representative_points, write_report)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return RunRecord.open(train_toy_run(tmp_path_factory.mktemp("viz") / "run"))


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


def test_embedding_is_cached_and_extended(run):
    emb = embed_run(run, space=1, method="pca", progress=False)
    assert emb.epochs == [0, 1, 2, 3] and emb.coords.shape == (4, 200, 2) and emb.n_target == 100
    cache = run.folder / "embedding_pca_1.npz"
    assert cache.is_file()
    again = embed_run(run, space=1, method="pca", progress=False)
    np.testing.assert_array_equal(again.coords, emb.coords.astype(np.float32))


def test_umap_embedding_small(run):
    emb = embed_run(run, space=0, method="umap", progress=False)
    assert emb.coords.shape == (4, 200, 2) and np.isfinite(emb.coords).all()


def test_embedding_bad_arguments(run, tmp_path):
    with pytest.raises(ValueError, match="unknown method 'tsne'"):
        embed_run(run, method="tsne")
    with pytest.raises(ValueError, match="no features of space 5"):
        embed_run(run, space=5, method="pca", progress=False)


def test_explorer_follows_the_slider_and_colouring(run):
    ex = ClusterExplorer(run, space=1, method="pca")
    emb = ex.embedding
    assert ex.slider.value == 3  # opens at the last epoch
    ex.slider.value = 1
    np.testing.assert_allclose(np.array(ex.scatter.data[0].x), emb.coords[1, :100, 0])
    assert ex.scatter.layout.title.text.startswith("epoch 1")
    ex.colour.value = "true class"
    assert list(ex.scatter.data[0].marker.color) == list(run.record(1).target_y)
    ex.colour.value = "correct"
    record = run.record(1)
    assert list(ex.scatter.data[0].marker.color) == list((record.target_pred == record.target_y).astype(int))
    ex.show_source.value = True
    assert ex.scatter.data[1].visible and len(ex.scatter.data[1].x) == 100
    ex.show_centres.value = False
    assert ex.scatter.data[2].visible is False
    assert ex.metrics.layout.shapes[0].x0 == 1


def test_explorer_switches_clustering_space(run):
    ex = ClusterExplorer(run, space=1, method="pca")
    ex.slider.value = 2
    ex.space_choice.value = 0
    np.testing.assert_allclose(np.array(ex.scatter.data[0].x), ex.embeddings[0].coords[2, :100, 0])
    assert not np.allclose(ex.embeddings[0].coords[2], ex.embeddings[1].coords[2])
    ex.colour.value = "p-hat argmax"
    assert list(ex.scatter.data[0].marker.color) == list(run.record(2).target_phat[0].argmax(1))


def test_explorer_shows_the_image_when_given(run):
    images = np.arange(120 * 8 * 8, dtype=np.uint8).reshape(120, 8, 8)
    ex = ClusterExplorer(run, space=1, method="pca", images=images)
    ex.select(4)
    from io import BytesIO
    from PIL import Image
    shown = np.asarray(Image.open(BytesIO(ex.picture.value)))
    index = run.record(3).target_index[4]
    assert shown.shape == (96, 96) and shown[0, 0] == images[index][0, 0]


def test_explorer_shows_a_points_distributions(run):
    ex = ClusterExplorer(run, space=1, method="pca")
    ex.slider.value = 2
    ex.select(7)
    record = run.record(2)
    for trace, values in zip(ex.details.data, (record.target_p, record.target_q, record.target_phat[1])):
        np.testing.assert_allclose(np.array(trace.y), values[7].astype(float))
    assert f"target sample #{record.target_index[7]}" in ex.info.value


def test_explorer_colours_the_source_points_by_their_weight(run):
    "The source-weight colouring shows each recorded source point's weight (eq. 12), read from the record."
    ex = ClusterExplorer(run, space=1, method="pca")
    ex.slider.value = 2
    ex.colour.value = "source weight"
    np.testing.assert_allclose(np.array(ex.scatter.data[1].marker.color), run.record(2).source_weight.astype(float))
    assert ex.scatter.data[1].visible and np.isfinite(np.array(ex.scatter.data[1].marker.color)).all()


def test_report_is_self_contained(run, tmp_path):
    path = write_report(run, tmp_path / "report.html")
    text = path.read_text()
    assert text.startswith("<!DOCTYPE html>") and text.count("<script") >= 3
    assert 'src="http' not in text and "plotly.js v" in text  # the library is inlined, no script is fetched
    assert path.stat().st_size < 15_000_000


def test_representative_points():
    from types import SimpleNamespace
    record = SimpleNamespace(target_p=np.array([[0.9, 0.1], [0.5, 0.5], [0.6, 0.4], [0.99, 0.01]], np.float16),
                             target_pred=np.array([0, 0, 0, 0]), target_y=np.array([0, 1, 0, 0]))
    assert representative_points(record, n=1) == [3, 1]


def test_metrics_figure_plots_each_recorded_metric(run):
    fig = metrics_figure(run, space=1)
    lines = {t.name: list(t.y) for t in fig.data if t.showlegend is not False}
    assert list(lines) == ["acc_f", "acc_f_train", "acc_centre_1", "cluster_acc", "entropy_p", "entropy_q"]
    for name, y in lines.items():
        assert y == run.metric(name)
    shares = [list(t.y) for t in fig.data if t.showlegend is False]
    assert len(shares) == len(run.meta["classes"])  # one line per class
    assert [list(s) for s in zip(*shares)] == run.metric("pred_sizes")
