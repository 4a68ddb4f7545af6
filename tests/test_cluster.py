"""Tests of sdrc.cluster: K-means against hand-worked cases and scikit-learn, centre initialisation, metrics."""
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from sklearn.cluster import KMeans

from sdrc.cluster import (accuracy, assign_to_nearest, class_means, cluster_accuracy, cluster_sizes, contingency,
                          epoch_centres, initial_centroids, kmeans, nmi)


def test_kmeans_golden():
    x = torch.tensor([[0.0], [1.0], [10.0], [11.0]])
    centroids, labels = kmeans(x, torch.tensor([[0.0], [2.0]]), iters=3)
    assert centroids.flatten().tolist() == [0.5, 10.5] and labels.tolist() == [0, 0, 1, 1]


def test_kmeans_matches_scikit_learn_lloyd():
    """Five steps give scikit-learn's centroids after five; the labels are those of the last assignment, made to the
    centroids of four steps (scikit-learn assigns afresh to its returned centroids, the released SRDC code does not)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 8)) + rng.integers(0, 4, 500)[:, None] * 3
    init = x[:4]
    ours, labels = kmeans(torch.from_numpy(x), torch.from_numpy(init), iters=5)
    ref = KMeans(4, init=init, n_init=1, max_iter=5, tol=0, algorithm="lloyd").fit(x)
    np.testing.assert_allclose(ours.numpy(), ref.cluster_centers_, rtol=1e-10, atol=1e-10)
    four = KMeans(4, init=init, n_init=1, max_iter=4, tol=0, algorithm="lloyd").fit(x)
    assert (labels.numpy() == four.labels_).all()
    assert (labels.numpy() != ref.labels_).any()  # this case tells the two apart


def test_kmeans_centroids_are_the_means_of_the_returned_clusters():
    x = torch.randn(300, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    centroids, labels = kmeans(x, x[:6], iters=2)
    for k in range(6):
        assert torch.allclose(centroids[k], x[labels == k].mean(0))


@given(st.integers(2, 6), st.integers(0, 10_000))
def test_kmeans_recovers_separated_blobs(k, seed):
    g = torch.Generator().manual_seed(seed)
    means = torch.arange(k, dtype=torch.float64)[:, None] * 20 * torch.ones(1, 3, dtype=torch.float64)
    y = torch.arange(k).repeat_interleave(30)
    x = means[y] + torch.randn(len(y), 3, generator=g, dtype=torch.float64)
    _, labels = kmeans(x, means + torch.randn(k, 3, generator=g, dtype=torch.float64) * 3)
    assert cluster_accuracy(labels, y, k) == 1.0


def test_empty_clusters_are_reseeded_at_far_points():
    x = torch.tensor([[0.0], [1.0], [10.0], [11.0]])
    centroids, labels = kmeans(x, torch.tensor([[0.0], [100.0], [200.0]]), iters=3)
    assert torch.isfinite(centroids).all() and sorted(torch.bincount(labels, minlength=3).tolist()) == [1, 1, 2]
    assert all(c in x.flatten().tolist() + [0.5, 10.5] for c in centroids.flatten().tolist())


def test_kmeans_is_deterministic_and_chunking_changes_nothing():
    x = torch.randn(1000, 16)
    a, la = kmeans(x, x[:7])
    b, lb = kmeans(x, x[:7])
    assert torch.equal(a, b) and torch.equal(la, lb)
    full = assign_to_nearest(x, a)
    chunked = assign_to_nearest(x, a, chunk=33)
    assert torch.equal(full[0], chunked[0]) and torch.allclose(full[1], chunked[1])


def test_kmeans_bad_input():
    with pytest.raises(ValueError, match="feature dimension mismatch"):
        kmeans(torch.randn(5, 3), torch.randn(2, 4))
    with pytest.raises(ValueError, match="`iters` must be at least 1"):
        kmeans(torch.randn(5, 3), torch.randn(2, 3), iters=0)
    with pytest.raises(ValueError, match="`x` contains NaN"):
        kmeans(torch.full((5, 3), float("nan")), torch.randn(2, 3))


def test_class_means_initial_centroids_and_epoch_centres():
    x = torch.tensor([[0.0], [1.0], [10.0], [11.0]])
    assert class_means(x, torch.tensor([0, 0, 1, 1]), 3).flatten().tolist() == [0.5, 10.5, 5.5]
    src = torch.tensor([[0.0], [10.0]])
    assert initial_centroids(src).flatten().tolist() == [0.0, 10.0]
    pred = torch.tensor([0, 0, 1, 1])
    assert initial_centroids(src, x, pred).flatten().tolist() == [0.5, 10.5]  # the start is never averaged
    c_t = torch.tensor([[1.0], [12.0]])
    assert epoch_centres(c_t, src, average_with_source=True).flatten().tolist() == [0.5, 11.0]
    assert epoch_centres(c_t, src, average_with_source=False).flatten().tolist() == [1.0, 12.0]
    assert epoch_centres(c_t, src, False) is not c_t  # a copy: resetting the centres never aliases the centroids
    with pytest.raises(ValueError, match="`y` has labels outside"):
        class_means(x, torch.tensor([0, 0, 1, 5]), 3)


def test_metrics_golden():
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    pred = torch.tensor([2, 2, 0, 0, 1, 0])
    assert cluster_accuracy(pred, y, 3) == pytest.approx(5 / 6)
    assert accuracy(pred, y) == 0.0 and accuracy(y, y) == 1.0
    assert contingency(pred, y, 3).tolist() == [[0, 2, 1], [0, 0, 1], [2, 0, 0]]
    assert nmi(torch.tensor([1, 1, 0, 0, 2, 2]), y) == pytest.approx(1.0)
    assert nmi(torch.zeros(6, dtype=torch.long), y) == pytest.approx(0.0)
    assert cluster_sizes(pred, 3) == pytest.approx([0.5, 1 / 6, 1 / 3])


@given(st.lists(st.integers(0, 3), min_size=1, max_size=40), st.permutations([0, 1, 2, 3]))
def test_cluster_accuracy_ignores_cluster_names(labels, perm):
    y = torch.tensor(labels)
    renamed = torch.tensor(perm)[y]
    assert cluster_accuracy(renamed, y, 4) == 1.0
    assert nmi(renamed, y) == pytest.approx(nmi(y, y))
