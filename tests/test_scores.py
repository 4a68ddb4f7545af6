"""Tests of sdrc.scores and sdrc.select: hand-worked values, properties on random predictions, the failure cases."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sdrc.scores import ami_score, bnm_score, dev_risk, entropy_score, im_score, snd_score
from sdrc.select import choices, pick, weighted_spearman


@st.composite
def predictions(draw, min_rows=2, max_rows=30):
    n, k = draw(st.integers(min_rows, max_rows)), draw(st.integers(2, 6))
    logits = draw(arrays(np.float64, (n, k), elements=st.floats(-6, 6)))
    return torch.softmax(torch.from_numpy(logits), 1)


@given(predictions())
def test_scores_lie_in_their_ranges(p):
    n, k = p.shape
    assert -math.log(k) - 1e-9 <= entropy_score(p) <= 1e-9
    assert entropy_score(p) - 1e-9 <= im_score(p) <= math.log(k) + 1e-9
    assert 0 < bnm_score(p) <= math.sqrt(min(n, k) * n) / n + 1e-9  # ‖P‖_* ≤ √rank · ‖P‖_F ≤ √(min(n,k)·n)


@given(predictions(min_rows=3), st.randoms())
def test_scores_do_not_depend_on_the_order_of_points_or_classes(p, rnd):
    rows, cols = list(range(len(p))), list(range(p.shape[1]))
    rnd.shuffle(rows), rnd.shuffle(cols)
    q = p[rows][:, cols]
    for score in (entropy_score, im_score, bnm_score):
        assert score(q) == pytest.approx(score(p), abs=1e-9)
    assert snd_score(q, chunk=2) == pytest.approx(snd_score(p), abs=1e-4)


def test_hand_worked_values_and_bad_input():
    assert im_score(torch.eye(3)) == pytest.approx(math.log(3))
    assert bnm_score(torch.eye(3)) == pytest.approx(1.0)  # three one-hot rows, three classes: ‖I‖_* / 3
    assert dev_risk([1, 1, 1], [0.2, 0.4, 0.6]) == pytest.approx(0.4)  # equal weights: the plain mean
    with pytest.raises(ValueError, match="negative entries"):
        entropy_score(torch.tensor([[1.5, -0.5]]))
    with pytest.raises(ValueError, match="at least two points"):
        snd_score(torch.tensor([[1.0, 0.0]]))
    with pytest.raises(ValueError, match="as many points as classes"):
        ami_score(torch.randn(2, 3), torch.tensor([0, 1]), 3)


@given(st.lists(st.floats(0, 1), min_size=3, max_size=20, unique=True))
@settings(max_examples=50)
def test_weighted_spearman_is_one_for_the_same_order_and_minus_one_for_the_reverse(values):
    increasing = sorted(values)
    assert weighted_spearman(increasing, increasing) == pytest.approx(1.0)
    assert weighted_spearman(increasing, increasing[::-1]) == pytest.approx(-1.0)


def test_choices_pick_after_epoch_0_and_say_when_there_are_no_labels():
    history = dict(epoch=[0, 1, 2, 3], acc_f=[0.9, 0.5, 0.7, 0.6], score_im=[5.0, 1.0, 3.0, 2.0])
    rows = {r["score"]: r for r in choices(history)}
    assert rows["im"]["epoch"] == 2 and rows["im"]["acc"] == 0.7 and rows["im"]["best"] == 0.7  # epoch 0 excluded
    assert rows["last epoch"]["acc"] == 0.6
    assert pick([1.0]) is None and "acc" not in choices(dict(epoch=[0, 1], score_im=[0.0, 1.0]))[0]
