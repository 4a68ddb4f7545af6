"""Tests of sdrc.core: golden values worked out by hand, properties on random inputs, and every failure case."""
import math
import re

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sdrc.core import (PRESETS, SDRCLoss, auxiliary_distribution, log_soft_assignment, make_config, rampup,
                       soft_assignment, source_weights, srdc_objective)

R3 = math.sqrt(3)
F64 = torch.float64


def t(x, dtype=F64):
    return torch.tensor(x, dtype=dtype)


# ---------------------------------------------------------------- strategies

@st.composite
def prob_matrices(draw, min_n=1, max_n=30, min_k=2, max_k=8):
    "Row-stochastic N×K float64 matrices from softmax of bounded logits (every entry positive)."
    n = draw(st.integers(min_n, max_n))
    k = draw(st.integers(min_k, max_k))
    logits = draw(arrays(np.float64, (n, k), elements=st.floats(-8, 8)))
    return torch.softmax(torch.from_numpy(logits), 1)


def row_entropy(p):
    return -(torch.xlogy(p, p)).sum(1)


# ---------------------------------------------------------------- Q: golden values

def test_srdc_q_golden():
    "m = (.5, 1.5): row 1 becomes (√3, 1)/(√3+1); the confident row stays put."
    q = auxiliary_distribution(t([[0.5, 0.5], [0.0, 1.0]]))
    torch.testing.assert_close(q, t([[(3 - R3) / 2, (R3 - 1) / 2], [0.0, 1.0]]))


def test_dec_q_golden():
    "DEC's target of [[.5,.5],[0,1]] is [[.75,.25],[0,1]] (pt-dec's hand-worked case)."
    torch.testing.assert_close(auxiliary_distribution(t([[0.5, 0.5], [0.0, 1.0]]), "dec"), t([[0.75, 0.25], [0, 1]]))


def test_srdc_exact_q_golden():
    "Fixed point q ∝ p/ρ(q): a/(1-a) = (2-a)/a gives a = 2/3."
    q = auxiliary_distribution(t([[0.5, 0.5], [0.0, 1.0]]), "srdc_exact")
    torch.testing.assert_close(q, t([[2 / 3, 1 / 3], [0, 1]]))


def test_srdc_q_three_classes_golden():
    "Column masses 2, 1, 1 (rows need not sum to one): only the first column is divided by more than 1."
    p = t([[0.5, 0.25, 0.25], [1.0, 0.0, 0.0], [0.5, 0.75, 0.0], [0.0, 0.0, 0.75]])
    z = 0.5 / math.sqrt(2) + 0.5
    torch.testing.assert_close(auxiliary_distribution(p)[0], t([0.5 / math.sqrt(2) / z, 0.25 / z, 0.25 / z]))
    torch.testing.assert_close(auxiliary_distribution(p)[3], t([0.0, 0.0, 1.0]))


def test_beta_mixes_onehot_labels_and_matrix():
    p = t([[0.5, 0.5], [0.0, 1.0]])
    expected = t([[0.5 + (3 - R3) / 4, (R3 - 1) / 4], [0, 1]])
    torch.testing.assert_close(auxiliary_distribution(p, beta=0.5, onehot=torch.tensor([0, 1])), expected)
    torch.testing.assert_close(auxiliary_distribution(p, beta=0.5, onehot=t([[1, 0], [0, 1]])), expected)
    torch.testing.assert_close(auxiliary_distribution(p, beta=0.0, onehot=torch.tensor([1, 0])), t([[0, 1], [1, 0]]))


def test_dec_can_raise_a_rows_entropy_when_masses_are_unequal():
    "A counterexample worked by hand: DEC's Q is not always sharper than P row by row."
    p = torch.cat([t([[0.9, 0.1]]), t([[1.0, 0.0]]).repeat(81, 1), t([[0.0, 1.0]])])
    # masses 81.9 and 1.1: q ∝ (.81/81.9, .01/1.1) ≈ (.521, .479), far flatter than (.9, .1)
    q = auxiliary_distribution(p, "dec")
    torch.testing.assert_close(q[0], t([0.81 / 81.9, 0.01 / 1.1]) / (0.81 / 81.9 + 0.01 / 1.1))
    assert row_entropy(q[:1]) > row_entropy(p[:1])


# ---------------------------------------------------------------- Q: properties

@given(prob_matrices(), st.sampled_from(["srdc", "srdc_exact", "dec"]))
def test_q_rows_are_distributions(p, kind):
    q = auxiliary_distribution(p, kind)
    assert q.shape == p.shape and bool((q >= 0).all())
    torch.testing.assert_close(q.sum(1), torch.ones(len(p), dtype=F64))


@given(prob_matrices())
def test_srdc_changes_odds_only_by_the_column_factor(p):
    "log q_ik - log p_ik + ½ log m_k is the same for every k of a row."
    q = auxiliary_distribution(p)
    c = q.log() - p.log() + 0.5 * p.sum(0).log()
    torch.testing.assert_close(c, c[:, :1].expand_as(c), atol=1e-9, rtol=0)


@given(prob_matrices(max_k=6), st.integers(1, 4))
def test_srdc_and_dec_with_equal_masses(p, _):
    "With every column of equal mass SRDC's Q is P itself, and DEC's Q is P squared: sharper in every row."
    k = p.shape[1]
    balanced = torch.cat([p.roll(s, dims=1) for s in range(k)])  # all column masses equal
    torch.testing.assert_close(auxiliary_distribution(balanced), balanced)
    q = auxiliary_distribution(balanced, "dec")
    torch.testing.assert_close(q, balanced.square() / balanced.square().sum(1, keepdim=True))
    assert bool((row_entropy(q) <= row_entropy(balanced) + 1e-12).all())


@given(prob_matrices(), st.sampled_from(["srdc", "srdc_exact", "dec"]), st.randoms(use_true_random=False))
def test_q_is_unchanged_by_permuting_samples(p, kind, rnd):
    perm = list(range(len(p)))
    rnd.shuffle(perm)
    perm = torch.tensor(perm)
    torch.testing.assert_close(auxiliary_distribution(p[perm], kind), auxiliary_distribution(p, kind)[perm])


@given(prob_matrices(min_n=2, max_n=12, max_k=5), st.integers(0, 2**31 - 1))
def test_exact_q_minimises_eq1(p, seed):
    "No feasible perturbation on the simplex lowers the paper's eq. 1 objective below `srdc_exact`."
    q = auxiliary_distribution(p, "srdc_exact")
    best = srdc_objective(q, p)
    g = torch.Generator().manual_seed(seed)
    for _ in range(20):
        d = torch.randn(p.shape, generator=g, dtype=F64)
        d = d - d.mean(1, keepdim=True)  # stays on the simplex: rows still sum to 1
        for eps in (1e-2, 1e-4):
            moved = q + eps * d
            if bool((moved > 0).all()):
                assert srdc_objective(moved, p) >= best - 1e-12


@given(prob_matrices(min_n=2))
def test_eq2_lowers_eq1_but_not_below_the_exact_minimiser(p):
    "Eq. 2 (the first damped step from Q=P) improves on Q = P and never beats the exact minimiser."
    f_p = srdc_objective(p, p)
    f_closed = srdc_objective(auxiliary_distribution(p), p)
    f_exact = srdc_objective(auxiliary_distribution(p, "srdc_exact"), p)
    assert f_exact <= f_closed + 1e-12
    assert f_closed <= f_p + 1e-12


@given(prob_matrices(min_n=2))
def test_exact_q_satisfies_the_stationarity_condition(p):
    "At the minimiser, q_ik ∝ p_ik / ρ_k: log q - log p + log ρ is constant along each row."
    q = auxiliary_distribution(p, "srdc_exact")
    c = q.log() - p.log() + q.mean(0).log()
    torch.testing.assert_close(c, c[:, :1].expand_as(c), atol=1e-7, rtol=0)


def test_q_handles_a_class_without_mass():
    p = t([[0.5, 0.5, 0.0], [0.2, 0.8, 0.0]])
    for kind in ("srdc", "srdc_exact", "dec"):
        q = auxiliary_distribution(p, kind)
        assert torch.isfinite(q).all() and bool((q[:, 2] == 0).all())


# ---------------------------------------------------------------- p-hat

def test_soft_assignment_golden():
    z, mu = torch.zeros(1, 2, dtype=F64), t([[0.0, 0.0], [1.0, 0.0]])
    torch.testing.assert_close(soft_assignment(z, mu, norm="sum"), t([[2 / 3, 1 / 3]]))
    s = 1 / (1 + math.exp(-0.5))
    torch.testing.assert_close(soft_assignment(z, mu), t([[s, 1 - s]]))
    k2 = 1.5 ** -1.5  # alpha = 2: (1 + 1/2)^(-3/2)
    torch.testing.assert_close(soft_assignment(z, mu, alpha=2.0, norm="sum"), t([[1 / (1 + k2), k2 / (1 + k2)]]))


@given(arrays(np.float64, st.tuples(st.integers(1, 20), st.just(3)), elements=st.floats(-50, 50)),
       arrays(np.float64, st.tuples(st.integers(2, 7), st.just(3)), elements=st.floats(-50, 50)),
       st.sampled_from(["softmax", "sum"]), st.floats(0.1, 10))
def test_soft_assignment_rows_sum_to_one(z, mu, norm, alpha):
    p = soft_assignment(torch.from_numpy(z), torch.from_numpy(mu), alpha, norm)
    assert bool((p >= 0).all()) and torch.isfinite(p).all()
    torch.testing.assert_close(p.sum(1), torch.ones(len(z), dtype=F64))


@given(arrays(np.float64, (10, 4), elements=st.floats(-20, 20)), arrays(np.float64, (5, 4), elements=st.floats(-20, 20)))
def test_softmax_caps_the_odds_at_e(z, mu):
    "The kernel lies in (0, 1], so a softmax over it can never favour one centre more than e times over another."
    p = soft_assignment(torch.from_numpy(z), torch.from_numpy(mu))
    assert bool((p.max(1).values / p.min(1).values <= math.e * (1 + 1e-9)).all())


def test_log_soft_assignment_stays_finite_far_away():
    z, mu = t([[1e6, 0.0]]), t([[0.0, 0.0], [1.0, 0.0]])
    assert torch.isfinite(log_soft_assignment(z, mu, norm="sum")).all()


# ---------------------------------------------------------------- source weights and ramp-up

def test_source_weights_golden():
    c = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    w = source_weights(torch.tensor([[2.0, 0], [1, 0], [0, -3], [0, 0], [1, 1]]), torch.tensor([0, 1, 1, 0, 0]), c)
    torch.testing.assert_close(w, torch.tensor([1.0, 0.5, 0.0, 0.5, 0.5 * (1 + 1 / math.sqrt(2))]))


@given(arrays(np.float64, (12, 5), elements=st.floats(-10, 10)), st.floats(0.01, 100))
def test_source_weights_in_unit_interval_and_scale_free(z, scale):
    z = torch.from_numpy(z)
    y, c = torch.arange(12) % 3, torch.randn(3, 5, dtype=F64)
    w = source_weights(z, y, c)
    assert bool(((w >= 0) & (w <= 1)).all())
    assume(bool((z.norm(dim=1) > 1e-3).all()))
    torch.testing.assert_close(source_weights(z * scale, y, c), w)


def test_rampup_golden():
    assert rampup(0, 200) == 0.0
    assert rampup(100, 200) == pytest.approx(math.tanh(2.5))
    assert rampup(200, 200) == pytest.approx(math.tanh(5))
    assert rampup(1, 2, gamma=2.0) == pytest.approx(2 / (1 + math.exp(-1)) - 1)


# ---------------------------------------------------------------- the loss: golden values

Z2, Y0 = torch.zeros(1, 2), torch.tensor([0])


def test_official_loss_golden():
    "All logits zero: every cross-entropy is log 2; official = src_out + λ tgt_out."
    out = SDRCLoss(2, "official")(Z2, Y0, Z2, lam=0.5)
    assert out.loss.item() == pytest.approx(1.5 * math.log(2))
    assert set(out.terms) == {"tgt_out", "src_out", "loss"}


def test_paper_loss_golden():
    "paper = tgt_out + λ·(w·src_out), with Q supplied: tgt_out = -(.3 log .5 + .7 log .5) = log 2."
    out = SDRCLoss(2, "paper")(Z2, Y0, Z2, q_t=torch.tensor([[0.3, 0.7]]), weights_s=torch.tensor([0.5]), lam=0.5)
    assert out.loss.item() == pytest.approx(1.25 * math.log(2))
    assert out.terms["src_out"].item() == pytest.approx(0.5 * math.log(2))


def test_loss_with_a_feature_space_golden():
    s = 1 / (1 + math.exp(-0.5))
    q = np.sqrt([s, 1 - s]) / np.sqrt([s, 1 - s]).sum()
    centres = [torch.tensor([[0.0, 0], [1, 0]])]
    out = SDRCLoss(2, "official")(Z2, Y0, Z2, feats_s=[torch.zeros(1, 2)], feats_t=[torch.zeros(1, 2)],
                                  centres=centres, lam=0.5)
    tgt_feat = -(q[0] * math.log(s) + q[1] * math.log(1 - s))
    assert out.terms["tgt_feat_0"].item() == pytest.approx(tgt_feat, rel=1e-6)
    assert out.terms["src_feat_0"].item() == pytest.approx(-math.log(s), rel=1e-6)
    # official: src_out + λ (tgt_out + tgt_feat + src_feat)
    assert out.loss.item() == pytest.approx(math.log(2) + 0.5 * (math.log(2) + tgt_feat - math.log(s)), rel=1e-6)


def test_paper_loss_with_feature_space_combines_as_eq11():
    centres = [torch.tensor([[0.0, 0], [1, 0]])]
    q = [torch.tensor([[0.5, 0.5]]), torch.tensor([[1.0, 0.0]])]
    out = SDRCLoss(2, "paper")(Z2, Y0, Z2, feats_s=[torch.zeros(1, 2)], feats_t=[torch.zeros(1, 2)], centres=centres,
                               q_t=q, weights_s=torch.ones(1), lam=0.25)
    s = 1 / (1 + math.exp(-0.5))
    assert out.terms["tgt_feat_0"].item() == pytest.approx(-math.log(s), rel=1e-6)
    expected = math.log(2) - math.log(s) + 0.25 * (math.log(2) - math.log(s))
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)


def test_single_tensor_q_t_covers_only_the_output_space():
    "With q_scope='batch' a tensor q_t replaces the output-space Q; feature spaces use their batch Q."
    loss = SDRCLoss(2, "official")
    kw = dict(feats_s=[torch.zeros(1, 2)], feats_t=[torch.zeros(1, 2)], centres=[torch.tensor([[0.0, 0], [1, 0]])])
    with_q = loss(Z2, Y0, Z2, q_t=torch.tensor([[1.0, 0.0]]), **kw)
    without = loss(Z2, Y0, Z2, **kw)
    assert with_q.terms["tgt_out"].item() == pytest.approx(math.log(2))
    assert with_q.terms["tgt_feat_0"] == without.terms["tgt_feat_0"]


# ---------------------------------------------------------------- the loss: presets and options

def test_presets_differ_exactly_as_the_spec_says():
    paper, official = PRESETS["paper"], PRESETS["official"]
    differing = {f for f in paper.__dataclass_fields__ if getattr(paper, f) != getattr(official, f)}
    assert differing == {"q_scope", "detach_q", "soft_select", "target_rampup", "accumulate_centre_grad",
                         "average_centres_with_source"}
    assert (paper.q_scope, paper.detach_q, paper.soft_select, paper.target_rampup) == ("dataset", True, True, False)
    assert official.kernel_norm == paper.kernel_norm == "softmax"


def test_overrides_switch_one_difference_at_a_time():
    loss = SDRCLoss(3, "official", detach_q=True)
    assert loss.config == make_config("official", detach_q=True)
    assert loss.config.q_scope == "batch" and loss.config.detach_q


def test_detach_q_controls_the_gradient_through_q():
    "With Q detached, d tgt_out/d logits is p - q; without, Q's own gradient is added."
    logits = torch.randn(6, 4, dtype=F64)
    y, src = torch.zeros(6, dtype=torch.long), torch.zeros(6, 4, dtype=F64)
    grads = {}
    for detach in (True, False):
        lt = logits.clone().requires_grad_()
        out = SDRCLoss(4, "official", detach_q=detach)(src, y, lt, lam=1.0)
        out.terms  # noqa: B018 - the graph is in out.loss
        out.loss.backward()
        grads[detach] = lt.grad
    p = torch.softmax(logits, 1)
    torch.testing.assert_close(grads[True], (p - auxiliary_distribution(p)) / 6)
    assert not torch.allclose(grads[False], grads[True])


def test_soft_select_uses_the_weights():
    logits_s = torch.randn(4, 3)
    y = torch.tensor([0, 1, 2, 0])
    loss = SDRCLoss(3, "official", soft_select=True)
    full = loss(logits_s, y, torch.randn(4, 3), weights_s=torch.ones(4), lam=0.0)
    zero = loss(logits_s, y, torch.randn(4, 3), weights_s=torch.zeros(4), lam=0.0)
    assert full.terms["src_out"] > 0 and zero.terms["src_out"] == 0


def test_source_feature_terms_switch():
    "Without eq. 8 the source feature-space terms disappear from the terms and from the total."
    kw = dict(feats_s=[torch.zeros(1, 2)], feats_t=[torch.zeros(1, 2)], centres=[torch.tensor([[0.0, 0], [1, 0]])])
    full = SDRCLoss(2, "official")(Z2, Y0, Z2, **kw, lam=1.0)
    cut = SDRCLoss(2, "official", source_feature_terms=False)(Z2, Y0, Z2, **kw, lam=1.0)
    assert "src_feat_0" not in cut.terms
    assert cut.loss.item() == pytest.approx(full.loss.item() - full.terms["src_feat_0"].item())


def test_sum_normalisation_changes_p_hat():
    kw = dict(feats_s=[torch.zeros(1, 2)], feats_t=[torch.zeros(1, 2)], centres=[torch.tensor([[0.0, 0], [1, 0]])])
    soft = SDRCLoss(2, "official")(Z2, Y0, Z2, **kw).terms["src_feat_0"]
    summed = SDRCLoss(2, "official", kernel_norm="sum")(Z2, Y0, Z2, **kw).terms["src_feat_0"]
    assert soft.item() == pytest.approx(math.log(1 + math.exp(-0.5)))
    assert summed.item() == pytest.approx(-math.log(2 / 3))


def test_beta_needs_target_labels_and_uses_them():
    loss = SDRCLoss(2, "official", beta=0.0)
    out = loss(Z2, Y0, Z2, labels_t=torch.tensor([1]))
    assert out.terms["tgt_out"].item() == pytest.approx(math.log(2))
    with pytest.raises(ValueError, match="onehot"):
        loss(Z2, Y0, Z2)


# ---------------------------------------------------------------- the loss: numerics

def _random_batch(k, d=(6, 4), n=5, dtype=torch.float32, requires_grad=False):
    g = torch.Generator().manual_seed(k)
    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=dtype).requires_grad_(requires_grad)
    return dict(logits_s=r(n, k), y_s=torch.arange(n) % k, logits_t=r(n, k),
                feats_s=[r(n, di) for di in d], feats_t=[r(n, di) for di in d], centres=[r(k, di) for di in d])


def test_gradcheck_float64_both_presets():
    b = _random_batch(3, n=4, dtype=F64, requires_grad=True)
    for preset in ("official", "paper"):
        loss = SDRCLoss(3, preset)
        extra = {} if preset == "official" else dict(q_t=[torch.softmax(torch.randn(4, 3, dtype=F64), 1)] * 3,
                                                     weights_s=torch.rand(4, dtype=F64))

        def f(ls, lt, zs0, zt0, mu0, zs1, zt1, mu1):
            return loss(ls, b["y_s"], lt, feats_s=[zs0, zs1], feats_t=[zt0, zt1], centres=[mu0, mu1],
                        lam=0.7, **extra).loss
        inputs = (b["logits_s"], b["logits_t"], b["feats_s"][0], b["feats_t"][0], b["centres"][0],
                  b["feats_s"][1], b["feats_t"][1], b["centres"][1])
        assert torch.autograd.gradcheck(f, inputs)


@pytest.mark.parametrize("kind", ["srdc", "srdc_exact", "dec"])
def test_detached_q_gradient_is_p_minus_q(kind):
    "With Q held fixed, d tgt_out / d logits_t = (p - q) / n for every kind of Q."
    logits = torch.randn(5, 3, dtype=F64, requires_grad=True)
    out = SDRCLoss(3, "official", q_kind=kind, detach_q=True)(torch.zeros(2, 3, dtype=F64), torch.tensor([0, 1]), logits)
    (grad,) = torch.autograd.grad(out.loss, logits)  # lam = 1: loss = src_out + tgt_out, src_out has no logits_t
    p = torch.softmax(logits.detach(), 1)
    torch.testing.assert_close(grad, (p - auxiliary_distribution(p, kind)) / 5)


@pytest.mark.parametrize("preset", ["official", "paper"])
def test_sgd_steps_lower_the_loss(preset):
    "A few SGD steps on a toy problem, with Q and weights held fixed for the paper preset."
    torch.manual_seed(1)
    k, d = 4, 6
    net, head = torch.nn.Linear(5, d), torch.nn.Linear(d, k)
    mu = torch.nn.Parameter(torch.randn(k, d))
    xs, ys, xt = torch.randn(64, 5), torch.randint(0, k, (64,)), torch.randn(64, 5)
    opt = torch.optim.SGD([*net.parameters(), *head.parameters(), mu], lr=0.1)
    loss_fn = SDRCLoss(k, preset)
    with torch.no_grad():
        q_t = [auxiliary_distribution(torch.softmax(head(net(xt)), 1)),
               auxiliary_distribution(soft_assignment(net(xt), mu))]
    extra = dict(q_t=q_t, weights_s=torch.rand(64)) if preset == "paper" else {}
    losses = []
    for _ in range(25):
        zs, zt = net(xs), net(xt)
        out = loss_fn(head(zs), ys, head(zt), feats_s=[zs], feats_t=[zt], centres=[mu], lam=1.0, **extra)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    assert losses[-1] < losses[0] - 0.02
    if preset == "paper":  # a fixed objective: plain gradient descent with a small step never goes up
        assert all(b <= a + 1e-6 for a, b in zip(losses, losses[1:]))


@pytest.mark.parametrize("k", [2, 3, 10, 31, 65, 345])
def test_many_classes_and_empty_classes_stay_finite(k):
    "K from 2 to 345, with most classes holding (almost) no mass in the batch: no NaN in loss or gradients."
    b = _random_batch(k, d=(16,), n=8, requires_grad=True)
    with torch.no_grad():
        b["logits_t"][:, 1:] -= 80.0  # every target sample is sure of class 0
    for preset in ("official", "paper"):
        extra = {} if preset == "official" else dict(
            q_t=[torch.softmax(b["logits_t"].detach(), 1)] * 2, weights_s=torch.rand(8))
        out = SDRCLoss(k, preset)(**b, lam=1.0, **extra)
        grads = torch.autograd.grad(out.loss, [b["logits_s"], b["logits_t"], b["centres"][0]])
        assert torch.isfinite(out.loss) and all(torch.isfinite(g).all() for g in grads)


def test_float64_and_float32_agree_and_keep_dtype():
    b64 = _random_batch(5, dtype=F64)
    b32 = {k: ([x.float() for x in v] if isinstance(v, list) else (v.float() if v.is_floating_point() else v))
           for k, v in b64.items()}
    out64, out32 = SDRCLoss(5, "official")(**b64), SDRCLoss(5, "official")(**b32)
    assert out64.loss.dtype == F64 and out32.loss.dtype == torch.float32
    assert out32.loss.item() == pytest.approx(out64.loss.item(), rel=1e-5)


def test_bf16_autocast_matches_float32():
    "Under bf16 autocast the loss upcasts its inputs, so it is close to the float32 loss of the same model."
    torch.manual_seed(0)
    net = torch.nn.Linear(10, 7)
    xs, xt, y = torch.randn(32, 10), torch.randn(32, 10), torch.randint(0, 7, (32,))
    mu = torch.randn(7, 7)
    loss_fn = SDRCLoss(7, "official")
    ref = loss_fn(net(xs), y, net(xt), feats_s=[net(xs)], feats_t=[net(xt)], centres=[mu]).loss
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ls, lt = net(xs), net(xt)
        assert ls.dtype == torch.bfloat16
        out = loss_fn(ls, y, lt, feats_s=[ls], feats_t=[lt], centres=[mu])
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    assert out.loss.item() == pytest.approx(ref.item(), rel=3e-2)
    out.loss.backward()
    assert torch.isfinite(net.weight.grad).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    b = _random_batch(6)
    cpu = SDRCLoss(6, "official")(**b).loss
    to = lambda v: [x.cuda() for x in v] if isinstance(v, list) else v.cuda()  # noqa: E731
    gpu = SDRCLoss(6, "official")(**{k: to(v) for k, v in b.items()}).loss
    assert gpu.item() == pytest.approx(cpu.item(), rel=1e-4)


def test_terms_are_detached():
    b = _random_batch(3, requires_grad=True)
    out = SDRCLoss(3, "official")(**b)
    assert out.loss.requires_grad and not any(v.requires_grad for v in out.terms.values())
    assert set(out.terms) == {"loss", "tgt_out", "src_out", "tgt_feat_0", "src_feat_0", "tgt_feat_1", "src_feat_1"}


# ---------------------------------------------------------------- bad input: one test per case

P2 = torch.tensor([[0.5, 0.5], [0.2, 0.8]])


@pytest.mark.parametrize("call, error, message", [
    (lambda: auxiliary_distribution(P2[0]), ValueError, "`p` must have 2 dimension"),
    (lambda: auxiliary_distribution(torch.empty(0, 3)), ValueError, "`p` is empty"),
    (lambda: auxiliary_distribution(torch.tensor([[0.5, float("nan")]])), ValueError, "`p` contains NaN"),
    (lambda: auxiliary_distribution(torch.tensor([[0.5, float("inf")]])), ValueError, "`p` contains NaN or Inf"),
    (lambda: auxiliary_distribution(torch.tensor([[1.5, -0.5]])), ValueError, "`p` has negative"),
    (lambda: auxiliary_distribution(torch.tensor([[0.0, 0.0]])), ValueError, "zero total mass"),
    (lambda: auxiliary_distribution(torch.ones(3, 1)), ValueError, "at least 2 classes"),
    (lambda: auxiliary_distribution(torch.tensor([[1, 0]])), TypeError, "`p` must be a floating-point"),
    (lambda: auxiliary_distribution([[0.5, 0.5]]), TypeError, "`p` must be a torch.Tensor"),
    (lambda: auxiliary_distribution(P2, kind="kl"), ValueError, "unknown kind 'kl'"),
    (lambda: auxiliary_distribution(P2, beta=1.5), ValueError, "`beta` must lie in"),
    (lambda: auxiliary_distribution(P2, beta=0.5), ValueError, "pass `onehot`"),
    (lambda: auxiliary_distribution(P2, beta=0.5, onehot=torch.tensor([0, 2])), ValueError, "`onehot` has labels outside"),
    (lambda: auxiliary_distribution(P2, beta=0.5, onehot=torch.ones(3, 2)), ValueError, "`onehot` must have the shape"),
    (lambda: soft_assignment(torch.zeros(2, 3), torch.zeros(4, 2)), ValueError, "feature dimension mismatch"),
    (lambda: soft_assignment(torch.zeros(2, 3), torch.zeros(4, 3), norm="l1"), ValueError, "unknown norm 'l1'"),
    (lambda: soft_assignment(torch.zeros(2, 3), torch.zeros(4, 3), alpha=0.0), ValueError, "`alpha`"),
    (lambda: soft_assignment(torch.zeros(3), torch.zeros(4, 3)), ValueError, "`z` must have 2 dimension"),
    (lambda: soft_assignment(torch.full((1, 3), float("nan")), torch.zeros(4, 3)), ValueError, "`z` contains NaN"),
    (lambda: source_weights(torch.zeros(2, 3), torch.tensor([0, 5]), torch.ones(4, 3)), ValueError, "`y_s` has labels outside"),
    (lambda: source_weights(torch.zeros(2, 3), torch.tensor([0.0, 1.0]), torch.ones(4, 3)), TypeError, "`y_s` must hold integer"),
    (lambda: source_weights(torch.zeros(2, 3), torch.tensor([0]), torch.ones(4, 3)), ValueError, "`y_s` must have shape (2,)"),
    (lambda: source_weights(torch.zeros(2, 3), torch.tensor([0, 1]), torch.ones(4, 2)), ValueError, "feature dimension"),
    (lambda: rampup(1, 0), ValueError, "`total_epochs` must be positive"),
    (lambda: rampup(-1, 10), ValueError, "`epoch` must lie in"),
    (lambda: rampup(float("nan"), 10), TypeError, "`epoch` must be a finite real"),
    (lambda: SDRCLoss(2, preset="tllib"), ValueError, "unknown preset 'tllib'"),
    (lambda: SDRCLoss(2, detach=True), TypeError, "unknown SDRC option(s) detach"),
    (lambda: SDRCLoss(1), ValueError, "`num_classes` must be an integer ≥ 2"),
    (lambda: SDRCLoss(2, kernel_norm="l2"), ValueError, "unknown kernel_norm 'l2'"),
    (lambda: SDRCLoss(2, q_scope="epoch"), ValueError, "unknown q_scope 'epoch'"),
    (lambda: SDRCLoss(2, q_kind="entropy"), ValueError, "unknown q_kind 'entropy'"),
    (lambda: SDRCLoss(2, detach_q="yes"), TypeError, "`detach_q` must be True or False"),
], ids=lambda x: x if isinstance(x, str) else "")
def test_bad_input_of_functions(call, error, message):
    with pytest.raises(error, match=_escape(message)):
        call()


def _escape(text):
    import re
    return re.escape(text)


def _batch(**changes):
    b = dict(logits_s=torch.randn(4, 3), y_s=torch.tensor([0, 1, 2, 0]), logits_t=torch.randn(5, 3),
             feats_s=[torch.randn(4, 6)], feats_t=[torch.randn(5, 6)], centres=[torch.randn(3, 6)])
    b.update(changes)
    return b


@pytest.mark.parametrize("changes, error, message", [
    (dict(logits_s=torch.randn(4)), ValueError, "`logits_s` must have 2 dimension"),
    (dict(logits_t=torch.randn(5, 4)), ValueError, "`logits_t` has 4 classes"),
    (dict(logits_t=torch.full((5, 3), float("nan"))), ValueError, "`logits_t` contains NaN"),
    (dict(logits_s=torch.full((4, 3), float("inf"))), ValueError, "`logits_s` contains NaN or Inf"),
    (dict(logits_s=torch.empty(0, 3), y_s=torch.empty(0, dtype=torch.long)), ValueError, "`logits_s` is empty"),
    (dict(logits_t=torch.empty(0, 3)), ValueError, "`logits_t` is empty"),
    (dict(y_s=torch.tensor([0, 1, 3, 0])), ValueError, "`y_s` has labels outside [0, 3)"),
    (dict(y_s=torch.tensor([0, 1, -1, 0])), ValueError, "`y_s` has labels outside"),
    (dict(y_s=torch.tensor([0, 1])), ValueError, "`y_s` must have shape (4,)"),
    (dict(y_s=torch.tensor([0.0, 1, 2, 0])), TypeError, "`y_s` must hold integer"),
    (dict(centres=[torch.randn(3, 7)]), ValueError, "feature dimension mismatch: `feats_s[0]` has 6"),
    (dict(centres=[torch.randn(4, 6)]), ValueError, "`centres[0]` has 4 centres"),
    (dict(feats_t=[torch.randn(6, 6)]), ValueError, "`feats_t[0]` has 6 rows"),
    (dict(feats_t=[]), ValueError, "one entry per feature space"),
    (dict(feats_s=[torch.full((4, 6), float("nan"))]), ValueError, "`feats_s[0]` contains NaN"),
    (dict(feats_s="z"), TypeError, "`feats_s` must be a tensor or a list"),
    (dict(q_t=torch.rand(4, 3)), ValueError, "`q_t[0]` must have shape (5, 3)"),
    (dict(q_t=[None, None, None]), ValueError, "expected 2, got 3"),
    (dict(q_t=-torch.rand(5, 3)), ValueError, "`q_t[0]` has negative"),
    (dict(q_t=torch.full((5, 3), 0.5)), ValueError, "`q_t[0]` rows must sum to 1"),
    (dict(weights_s=torch.ones(3)), ValueError, "`weights_s` has 3 entries"),
    (dict(lam=-1.0), ValueError, "`lam` must lie in"),
    (dict(lam=float("nan")), TypeError, "`lam` must be a finite real"),
    (dict(labels_t=torch.tensor([0, 1, 2, 3, 0])), ValueError, "`labels_t` has labels outside"),
], ids=lambda x: x if isinstance(x, str) else "")
def test_bad_input_of_the_loss(changes, error, message):
    with pytest.raises(error, match=_escape(message)):
        SDRCLoss(3, "official")(**_batch(**changes))


def test_paper_preset_asks_for_dataset_q():
    with pytest.raises(ValueError, match="q_scope='dataset' needs `q_t`"):
        SDRCLoss(3, "paper")(**_batch(), weights_s=torch.ones(4))


def test_paper_preset_asks_for_source_weights():
    q = [torch.softmax(torch.randn(5, 3), 1)] * 2
    with pytest.raises(ValueError, match="pass `weights_s`"):
        SDRCLoss(3, "paper")(**_batch(q_t=q))


def test_weights_without_soft_selection_are_refused():
    with pytest.raises(ValueError, match="soft_select=False would ignore it"):
        SDRCLoss(3, "official")(**_batch(weights_s=torch.ones(4)))


def test_source_weights_outside_the_unit_interval_are_refused():
    q = [torch.softmax(torch.randn(5, 3), 1)] * 2
    for w in (torch.tensor([0.5, -0.1, 1.0, 1.0]), torch.tensor([0.5, 1.2, 1.0, 1.0])):
        with pytest.raises(ValueError, match=r"`weights_s` must lie in \[0, 1\]"):
            SDRCLoss(3, "paper")(**_batch(q_t=q), weights_s=w)


@given(dtype=st.sampled_from([torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64]),
       seed=st.integers(0, 2**16))
def test_labels_of_any_integer_dtype_give_the_same_result(dtype, seed):
    "With as many samples as classes, uint8 labels once indexed as a boolean mask; every integer dtype is a label now."
    g = torch.Generator().manual_seed(seed)
    z, centroids = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    y = torch.randperm(3, generator=g)
    torch.testing.assert_close(source_weights(z, y.to(dtype), centroids), source_weights(z, y, centroids))
    batch = _batch(logits_s=torch.randn(3, 3, generator=g), feats_s=[torch.randn(3, 6, generator=g)])
    loss = SDRCLoss(3, "official")
    expected = loss(**dict(batch, y_s=y)).loss
    torch.testing.assert_close(loss(**dict(batch, y_s=y.to(dtype))).loss, expected)


@pytest.mark.parametrize("labels", [torch.tensor([True, False, True, False]), torch.tensor([0.0, 1.0, 2.0, 0.0])])
def test_labels_that_are_not_integers_are_refused(labels):
    with pytest.raises(TypeError, match="`y_s` must hold integer class indices"):
        SDRCLoss(3, "official")(**_batch(y_s=labels))


@pytest.mark.parametrize("preset", ["paper", "official"])
def test_without_any_source_term_only_the_target_terms_are_left(preset):
    "The other reading of 'w/o structural source regularisation': eqs. 7 and 8 both dropped."
    q = [torch.softmax(torch.randn(5, 3), 1)] * 2
    extra = dict(q_t=q, weights_s=torch.ones(4)) if preset == "paper" else {}
    batch = _batch()
    full = SDRCLoss(3, preset)(**batch, **extra, lam=0.7)
    bare = SDRCLoss(3, preset, source_feature_terms=False, source_output_term=False)(**batch, **extra, lam=0.7)
    target = full.terms["tgt_out"] + full.terms["tgt_feat_0"]
    expected = 0.7 * target if preset == "official" else target
    torch.testing.assert_close(bare.loss, expected)
    assert "src_out" in bare.terms and "src_feat_0" not in bare.terms  # still reported, no longer trained


@pytest.mark.parametrize("preset", ["paper", "official"])
def test_without_the_target_output_term_it_is_still_reported_but_not_trained(preset):
    "The control of tutorial 06: eq. 3 dropped, everything else kept, so the loss falls by exactly its (weighted) value."
    q = [torch.softmax(torch.randn(5, 3), 1)] * 2
    extra = dict(q_t=q, weights_s=torch.ones(4)) if preset == "paper" else {}
    batch = _batch(logits_t=torch.randn(5, 3, requires_grad=True))
    full = SDRCLoss(3, preset)(**batch, **extra, lam=0.7)
    bare = SDRCLoss(3, preset, target_output_term=False)(**batch, **extra, lam=0.7)
    weight = 0.7 if preset == "official" else 1.0
    torch.testing.assert_close(bare.loss, full.loss - weight * full.terms["tgt_out"])
    assert "tgt_out" in bare.terms
    feature_only = SDRCLoss(3, preset, target_output_term=False, source_output_term=False, source_feature_terms=False)
    feats_t = [batch["feats_t"][0].requires_grad_()]
    grad, = torch.autograd.grad(feature_only(**dict(batch, feats_t=feats_t), **extra, lam=0.7).loss,
                                batch["logits_t"], allow_unused=True)
    assert grad is None or not grad.abs().any()  # nothing left reaches the target's logits


def test_a_loss_that_does_not_check_its_inputs_never_makes_the_host_wait(host_waits):
    "With check_inputs=False (the trainer's loss), a forward and backward pass reads nothing back from the device."
    def step(preset, check):
        b = _batch(logits_s=torch.randn(4, 3, requires_grad=True), logits_t=torch.randn(5, 3, requires_grad=True),
                   labels_t=torch.tensor([0, 1, 2, 0, 1]))
        if preset == "paper":  # a dataset-level Q per space and eq. 12's source weights, as the trainer gives them
            b.update(q_t=[torch.softmax(torch.randn(5, 3), 1) for _ in range(2)], weights_s=torch.rand(4))
        SDRCLoss(3, preset, check_inputs=check)(**b, lam=0.5).loss.backward()
    for preset in ("official", "paper"):
        assert host_waits(lambda: step(preset, False)) == 0, preset
        assert host_waits(lambda: step(preset, True)) > 0, preset  # the checks do wait: the count sees them
    with pytest.raises(ValueError, match="outside"):  # and a checked loss still refuses bad labels
        SDRCLoss(3, "official")(**_batch(y_s=torch.tensor([0, 1, 3, 0])), lam=0.5)


def test_features_and_centres_on_two_devices_are_refused_before_any_work():
    "A user's tensors on two devices get one line naming both (the meta device stands in for a GPU here)."
    with pytest.raises(ValueError, match="`z` is on meta and `centres` on cpu: move them to one device"):
        soft_assignment(torch.zeros(3, 2, device="meta"), torch.zeros(2, 2))


@pytest.mark.parametrize("scale_logits, scale_feats, names", [(1.0, 1e20, "tgt_feat_0, src_feat_0"), (1e38, 1.0, "tgt_out")],
                         ids=["features of 1e20", "logits of 1e38"])
def test_a_loss_that_overflows_is_refused_not_returned_as_nan(scale_logits, scale_feats, names):
    "Inputs near float32's range make the loss overflow: a checked call names the terms and the sizes, never returns NaN."
    g = torch.Generator().manual_seed(0)
    logits_s, logits_t, y_s = torch.randn(8, 3, generator=g), torch.randn(8, 3, generator=g), torch.randint(0, 3, (8,), generator=g)
    feats = [torch.randn(8, 4, generator=g) * scale_feats for _ in range(2)]
    centres = [torch.randn(3, 4, generator=g) * scale_feats]
    loss = SDRCLoss(3, preset="official", kernel_norm="sum")
    with pytest.raises(ValueError, match=re.escape(f"the SRDC loss is not finite ({names})")):
        loss(logits_s * scale_logits, y_s, logits_t * scale_logits, feats_s=feats[:1], feats_t=feats[1:], centres=centres)
    out = SDRCLoss(3, preset="official", kernel_norm="sum", check_inputs=False)(
        logits_s * scale_logits, y_s, logits_t * scale_logits, feats_s=feats[:1], feats_t=feats[1:], centres=centres)
    assert not torch.isfinite(out.loss)  # unchecked (the trainer's way), the NaN is left to the caller's divergence check
