"""`official` is the released code. The start of every epoch (SRDC-CVPR2020's main.py with validate_compute_cen,
k_means and source_select of its trainer.py) is transcribed here in plain numpy, step by step, and compared with what
sdrc's trainer does at three consecutive epochs of a real training run: the K-means centroids and labels in every
feature space, the value the learnable centres are reset to, and the source weights."""
import numpy as np
import pytest
import torch

import sdrc.train
from sdrc.data import make_domain_pair
from sdrc.recipe import Recipe, Runtime
from sdrc.train import Trainer

EPS = 1e-6  # the released code's args.eps


def released_class_centroids(feats: np.ndarray, labels: np.ndarray, k: int, eps: float = 0.0) -> np.ndarray:
    "validate_compute_cen: sum of the one-hot-weighted features / count (+ eps for the target's predictions)."
    onehot = np.eye(k)[labels]
    return (onehot.T @ feats) / (onehot.sum(0)[:, None] + eps)


def released_kmeans(features: np.ndarray, c: np.ndarray, iters: int = 5) -> tuple[np.ndarray, np.ndarray]:
    "trainer.k_means: assign by squared distance, then the means; the labels handed on are the last assignment's."
    c_tar = c.copy()
    for _ in range(iters):
        dist = ((features[:, None, :] - c_tar[None, :, :]) ** 2).sum(2)
        idx_sim = (-dist).argmax(1)
        c_tar_temp = np.zeros_like(c_tar)
        count = np.zeros((len(c_tar), 1))
        for k in range(len(c_tar)):
            c_tar_temp[k] += features[idx_sim == k].sum(0)
            count[k] += (idx_sim == k).sum()
        assert (count > 0).all(), "an empty cluster: the case sdrc re-seeds on purpose; pick another test case"
        c_tar = c_tar_temp / (count + EPS)
    return c_tar, idx_sim


def released_source_weights(source_features: np.ndarray, source_targets: np.ndarray, cen: np.ndarray) -> np.ndarray:
    "trainer.source_select: ½(1 + cos) of each source feature with the centroid of its class."
    dots = source_features @ cen.T
    norms = np.linalg.norm(source_features, axis=1, keepdims=True) * np.linalg.norm(cen, axis=1, keepdims=True).T
    return (0.5 * (1 + dots / (norms + EPS)))[np.arange(len(source_targets)), source_targets]


def released_epoch_start(source_feats: list, source_y: np.ndarray, target_feats: list, target_logits: np.ndarray,
                         first_epoch: bool, target_is_amazon: bool) -> dict:
    "main.py at the start of an epoch, in each feature space (the release has two: learn_cen and learn_cen_2)."
    k = target_logits.shape[1]
    pseudo = target_logits.argmax(1)
    out = dict(c_t=[], labels=[], learn_cen=[])
    for zs, zt in zip(source_feats, target_feats):
        c_s = released_class_centroids(zs, source_y, k)
        c_p = released_class_centroids(zt, pseudo, k, eps=EPS)  # validate_compute_cen's c_t, before K-means
        cen = c_s if first_epoch else c_p  # args.src_cen_first
        c_t, labels = released_kmeans(zt, cen)
        out["c_t"].append(c_t)
        out["labels"].append(labels)
        out["learn_cen"].append(c_t if target_is_amazon else (c_t + c_s) / 2)  # args.init_cen_on_st
    out["weights"] = released_source_weights(source_feats[0], source_y, out["c_t"][0])  # c_t.data.clone()
    return out


@pytest.mark.parametrize("preset", ["official", "paper"])
def test_the_epoch_start_is_the_released_codes_at_three_consecutive_epochs(preset, monkeypatch):
    "`official` is the release for every target but Amazon; `paper` sets the centres as the release does for Amazon."
    observations, centres_trained = [], []
    observe = sdrc.train.observe
    monkeypatch.setattr(sdrc.train, "observe", lambda *a, **kw: observations.append(observe(*a, **kw)) or observations[-1])
    train_epoch = Trainer.train_epoch
    def spy(self, obs, epoch):
        centres_trained.append([mu.detach().clone() for mu in self.centres])
        return train_epoch(self, obs, epoch)
    monkeypatch.setattr(Trainer, "train_epoch", spy)
    pair = make_domain_pair(n_per_class=40, num_classes=3, dim=4, shift="translate", amount=1.0, seed=0)
    recipe = Recipe(preset=preset, epochs=3, batch_size=32, record_samples=0, overrides=dict(soft_select=True))
    Trainer(pair, recipe, Runtime(progress=False, log=None)).fit()
    assert len(observations) == 4 and len(centres_trained) == 3
    for epoch, (obs, trained) in enumerate(zip(observations[:3], centres_trained)):
        numpy = lambda ts: [t.double().numpy() for t in ts]  # noqa: E731
        ref = released_epoch_start(numpy(obs.source.feats), obs.source.y.numpy(), numpy(obs.target.feats),
                                   obs.target.logits.double().numpy(), first_epoch=epoch == 0,
                                   target_is_amazon=preset == "paper")
        for j in range(2):
            np.testing.assert_allclose(obs.centroids[j].numpy(), ref["c_t"][j], rtol=1e-4, atol=1e-5)
            np.testing.assert_array_equal(obs.kmeans_labels[j].numpy(), ref["labels"][j])
            np.testing.assert_allclose(trained[j].numpy(), ref["learn_cen"][j], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(obs.weights.numpy(), ref["weights"], rtol=1e-4, atol=1e-5)
    # the case is not degenerate: the centres move between epochs, and averaging with the source means moves them
    assert not np.allclose(centres_trained[0][0].numpy(), centres_trained[2][0].numpy(), atol=1e-3)
    c_t = observations[1].centroids[0].numpy()
    assert np.allclose(centres_trained[1][0].numpy(), c_t, atol=1e-4) == (preset == "paper")


def test_the_transcription_itself_on_a_hand_worked_case():
    "Two 1-d clusters, the source one unit to the left: c_s = (0, 10), c_t = (1, 11), μ = (0.5, 10.5)."
    zs, ys = np.array([[-0.5], [0.5], [9.5], [10.5]]), np.array([0, 0, 1, 1])
    zt, logits = np.array([[0.5], [1.5], [10.5], [11.5]]), np.array([[1, 0], [1, 0], [0, 1], [0, 1]], float)
    ref = released_epoch_start([zs], ys, [zt], logits, first_epoch=True, target_is_amazon=False)
    np.testing.assert_allclose(ref["c_t"][0].ravel(), [1, 11], rtol=1e-5)
    np.testing.assert_array_equal(ref["labels"][0], [0, 0, 1, 1])
    np.testing.assert_allclose(ref["learn_cen"][0].ravel(), [0.5, 10.5], rtol=1e-5)
    np.testing.assert_allclose(ref["weights"], [0.0, 1.0, 1.0, 1.0], atol=1e-5)  # -0.5 points away from c_t = 1
