"""Tests of sdrc.record: a run recorded from any loop is measured by the trainer's own functions, opens in every viewer,
can be followed while it is written, and takes features from a user's model and loaders."""
import time

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import sdrc.train
from sdrc.data import make_domain_pair
from sdrc.recipe import Recipe, Runtime
from sdrc.record import Recorder, extract_features
from sdrc.snapshots import RunRecord
from sdrc.train import Trainer

COMMON = ("acc_f", "acc_f_train", "cluster_acc", "nmi", "entropy_p", "entropy_q", "largest_pred", "weight_mean",
          "weight_min", "weight_max", "acc_centre_0", "acc_centre_1", "agree_centre_0", "agree_centre_1",
          "entropy_phat_0", "entropy_phat_1", "pred_sizes", "kmeans_sizes")


@pytest.mark.parametrize("preset", ["official", "paper"])
def test_a_recorded_run_is_measured_as_the_trainer_measures_its_own(preset, monkeypatch, tmp_path):
    "The trainer's features, handed to a recorder as a user's loop would hand them, give the trainer's metrics."
    seen = []
    observe = sdrc.train.observe
    monkeypatch.setattr(sdrc.train, "observe", lambda *a, **kw: seen.append(observe(*a, **kw)) or seen[-1])
    toy = make_domain_pair(n_per_class=40, num_classes=3, dim=4, shift="translate", amount=1.0, seed=0)
    recipe = Recipe(preset=preset, epochs=2, batch_size=32, record_samples=0)
    history = Trainer(toy, recipe, Runtime(progress=False, log=None)).fit()
    with Recorder(tmp_path / "again", toy.classes, loss=recipe.loss, samples=50) as rec:
        for obs in seen:
            mine = rec.epoch(obs.epoch, source=(obs.source.feats, obs.source.y), target=(obs.target.feats, obs.target.logits),
                             target_labels=obs.target.y, test=(obs.test.feats, obs.test.logits, obs.test.y))
            theirs = history[obs.epoch]
            assert {k: mine[k] for k in COMMON} == {k: theirs[k] for k in COMMON}, obs.epoch
    assert RunRecord.open(tmp_path / "again").epoch_numbers() == [0, 1, 2]


def _inputs(seed: int, n: int = 60, k: int = 3):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % k
    feats = [torch.eye(k)[y] * 4 + torch.randn(n, k, generator=g), torch.randn(n, 5, generator=g)]
    return feats, y, torch.eye(k)[y] * 2 + torch.randn(n, k, generator=g)


def test_arrays_of_any_float_type_and_integer_labels_are_taken(tmp_path):
    feats, y, logits = _inputs(0)
    with Recorder(tmp_path / "np", ["a", "b", "c"], samples=30) as rec:
        metrics = rec.epoch(3, source=([f.numpy().astype(np.float16) for f in feats], y.numpy().astype(np.uint8)),
                            target=([f.numpy() for f in feats], logits.double().numpy()), target_labels=y.numpy())
    assert metrics["cluster_acc"] > 0.9 and RunRecord.open(tmp_path / "np").epoch_numbers() == [3]


def test_a_recorded_run_can_be_followed_while_it_is_written(tmp_path):
    from sdrc.explorer import ClusterExplorer
    rec = Recorder(tmp_path / "live", ["a", "b", "c"], samples=30)
    for epoch in range(2):
        feats, y, logits = _inputs(epoch)
        rec.epoch(epoch, source=(feats, y), target=(feats, logits))
    explorer = ClusterExplorer(tmp_path / "live", method="pca", follow=True, poll_seconds=0.1)
    try:
        assert explorer.epochs == [0, 1]
        feats, y, logits = _inputs(2)
        rec.epoch(2, source=(feats, y), target=(feats, logits))
        deadline = time.monotonic() + 30
        while explorer.epochs != [0, 1, 2] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert explorer.epochs == [0, 1, 2]
        assert "true class" not in explorer.colour.options  # recorded without the target's labels
    finally:
        explorer.stop()
        rec.close()


class TupleNet(nn.Module):
    "A model that returns (logits, features), as many research models do."
    def __init__(self):
        super().__init__()
        self.body, self.head = nn.Linear(4, 8), nn.Linear(8, 3)

    def forward(self, x):
        z = torch.relu(self.body(x))
        return self.head(z), z


def test_extract_features_with_a_hook_or_a_callable_restores_the_mode():
    torch.manual_seed(0)
    net, x, y = TupleNet().train(), torch.randn(50, 4), torch.arange(50) % 3
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    feats, logits, labels = extract_features(net, loader, feature=net.body)
    assert feats[0].shape == (50, 8) and logits.shape == (50, 3) and torch.equal(labels, y) and net.training
    by_call, _, _ = extract_features(net, loader, feature=lambda batch: torch.relu(net.body(batch)))
    assert torch.allclose(by_call[0], torch.relu(feats[0]))
    with pytest.raises(ValueError, match="no batch"):
        extract_features(net, DataLoader(TensorDataset(x[:0], y[:0]), batch_size=4), feature=net.body)
