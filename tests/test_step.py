"""The training step on a tiny model: finite terms, gradient routing, empty-set guards."""

import copy
import dataclasses
import math
import weakref

import numpy as np
import pytest
import torch

from promix.config import ProMixConfig
from promix.debias import PriorState
from promix.models import create_model
from promix.schedules import EpochSchedule
from promix.step import Batch, StepRandom, train_step, warmup_step

B, C = 8, 3


def _setup(seed=0):
    torch.manual_seed(seed)
    nets = [create_model("small_cnn", num_classes=C, in_channels=3, width=4) for _ in range(2)]
    opt = _sgd(nets)
    g = torch.Generator().manual_seed(seed)
    batch = Batch(torch.randn(B, 3, 8, 8, generator=g), torch.randn(B, 3, 8, 8, generator=g),
                  torch.randint(0, C, (B,), generator=g), torch.arange(B))
    return nets, opt, batch


def _sgd(nets):
    return torch.optim.SGD([{"params": n.parameters()} for n in nets], lr=0.01, momentum=0.9,
                           weight_decay=5e-4)


def _sched(**kw):
    base = dict(epoch=5, lr=0.01, warmup=False, rho=0.5, w=1.0, lambda_u=0.1, lga=False)
    return EpochSchedule(**(base | kw))


def _step(nets, opt, batch, clean, cfg=None, sched=None, priors=None):
    priors = priors or PriorState.uniform(C, 0.99)
    return train_step(
        nets, opt, batch, clean=clean, priors=priors, sched=sched or _sched(),
        cfg=cfg or ProMixConfig(tau=0.99), random=StepRandom(np.random.default_rng(0),
                                                             torch.Generator().manual_seed(0)),
    )


def _grad_norm(module):
    return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)


@pytest.mark.parametrize("fraction_clean", [0.0, 0.5, 1.0])
def test_terms_finite_and_priors_stay_distributions(fraction_clean):
    nets, opt, batch = _setup()
    clean = [torch.arange(B) < int(B * fraction_clean) for _ in range(2)]
    priors = PriorState.uniform(C, 0.9)
    terms, chosen = _step(nets, opt, batch, clean, priors=priors)
    assert all(np.isfinite(v) for v in terms.values()), terms
    assert all(torch.isfinite(p).all() for n in nets for p in n.parameters())
    assert torch.allclose(priors.clean.sum(1), torch.ones(2))
    assert torch.allclose(priors.unclean.sum(1), torch.ones(2))
    assert [m.shape for m in chosen] == [(B,), (B,)]


def test_primary_head_gets_no_gradient_from_the_unlabeled_loss():
    nets, opt, batch = _setup()
    clean = [torch.zeros(B, dtype=torch.bool)] * 2  # nothing chosen: only UNL remains
    terms, chosen = _step(nets, opt, batch, clean)
    assert not chosen[0].any()
    assert terms["unl_1"] > 0 and terms["ce_1"] == 0
    for net in nets:
        assert _grad_norm(net.linear) == 0.0
        assert _grad_norm(net.pseudo_linear) > 0.0


def test_pseudo_head_trains_on_the_chosen_set_too():
    nets, opt, batch = _setup()
    clean = [torch.ones(B, dtype=torch.bool)] * 2  # everything chosen: U is empty
    terms, _ = _step(nets, opt, batch, clean)
    assert terms["unl_1"] == 0.0
    for net in nets:
        assert _grad_norm(net.linear) > 0 and _grad_norm(net.pseudo_linear) > 0


def test_without_pseudo_head_it_receives_nothing():
    nets, opt, batch = _setup()
    cfg = ProMixConfig(pseudo_head=False)
    _step(nets, opt, batch, [torch.arange(B) < 4] * 2, cfg=cfg)
    for net in nets:
        assert _grad_norm(net.pseudo_linear) == 0.0


def test_warmup_trains_only_the_primary_head():
    nets, opt, batch = _setup()
    terms = warmup_step(nets, opt, batch)
    assert set(terms) == {"ce_1", "ce_2", "loss"}
    for net in nets:
        assert net.pseudo_linear.weight.grad is None
        assert _grad_norm(net.linear) > 0


def test_warmup_penalty_terms():
    nets, opt, batch = _setup()
    terms = warmup_step(nets, opt, batch, penalty="fixed")
    assert terms["loss"] == pytest.approx(sum(v for k, v in terms.items() if k != "loss"))
    assert terms["penalty_1"] < 0


@pytest.mark.parametrize("penalty", ["faithful", "fixed"])
def test_warmup_penalty_is_the_chosen_variant(penalty):
    # Heads with all-negative logits: the faithful clamp (Q4) sees zeros, so its penalty is
    # exactly -log C; the fixed one is Σ p log p of softmax(bias).
    nets, opt, batch = _setup()
    bias = torch.tensor([-1.0, -2.0, -4.0])
    with torch.no_grad():
        for net in nets:
            net.linear.weight.zero_()
            net.linear.bias.copy_(bias)
    terms = warmup_step(nets, opt, batch, penalty=penalty)
    p = torch.softmax(bias, 0)
    expected = -math.log(C) if penalty == "faithful" else float((p * p.log()).sum())
    assert terms["penalty_1"] == pytest.approx(expected, rel=1e-5)
    assert terms["penalty_2"] == pytest.approx(expected, rel=1e-5)


class _Counter:
    def __init__(self, net):
        self.n = 0
        net.backbone.register_forward_hook(lambda *a: setattr(self, "n", self.n + 1))


@pytest.mark.parametrize("passes, expected", [("faithful", 6), ("efficient", 4)])
def test_forward_passes_per_peer(passes, expected):
    nets, opt, batch = _setup()
    counters = [_Counter(n) for n in nets]
    _step(nets, opt, batch, [torch.arange(B) < 4] * 2, cfg=ProMixConfig(passes=passes))
    assert [c.n for c in counters] == [expected, expected]


@pytest.mark.parametrize("n_chosen, expected", [(0, 2), (1, 2), (2, 6)])
def test_no_mix_passes_with_fewer_than_two_chosen(n_chosen, expected):
    nets, opt, batch = _setup()
    counters = [_Counter(n) for n in nets]
    _step(nets, opt, batch, [torch.arange(B) < n_chosen] * 2)  # τ = 0.99: MHCS adds none
    assert [c.n for c in counters] == [expected, expected]


def _biased(nets, classes):
    """Zero each primary head and bias it by 50 towards its class: p[class] ≈ 1 > τ = 0.99."""
    with torch.no_grad():
        for net, c in zip(nets, classes, strict=True):
            net.linear.weight.zero_()
            net.linear.bias.zero_()
            if c is not None:
                net.linear.bias[c] = 50.0
    return nets


def test_mhcs_adds_confident_matching_samples():
    nets, opt, batch = _setup()
    _biased(nets, [int(batch.label[0]), None])  # peer 1 is sure of sample 0's label
    expected = batch.label == batch.label[0]
    assert 0 < int(expected.sum()) < B  # the batch has samples of other labels too
    same = copy.deepcopy(nets)
    clean = [torch.zeros(B, dtype=torch.bool)] * 2
    _, chosen = _step(nets, opt, batch, clean)
    assert chosen[0].tolist() == expected.tolist()
    assert not chosen[1].any()  # peer 2 decides on its own predictions
    # The same confident nets without MHCS choose nothing: the check above is MHCS's doing.
    _, chosen = _step(same, _sgd(same), batch, clean, cfg=ProMixConfig(mhcs=False))
    assert not chosen[0].any()


def test_lga_adds_agreed_samples_up_to_the_cap():
    nets, opt, batch = _setup()
    _biased(nets, [0, 0])  # both peers confidently predict class 0 for every sample
    same = copy.deepcopy(nets)
    clean = [torch.zeros(B, dtype=torch.bool)] * 2
    cfg = dataclasses.replace(ProMixConfig(), mhcs=False, lga_threshold=0.5)
    _, chosen = _step(nets, opt, batch, clean, cfg=cfg, sched=_sched(lga=True))
    assert [int(m.sum()) for m in chosen] == [4, 4]  # ⌊0.5 * 8⌋ - 0
    # The same agreeing nets outside the LGA window add nothing.
    _, chosen = _step(same, _sgd(same), batch, clean, cfg=cfg, sched=_sched(lga=False))
    assert [int(m.sum()) for m in chosen] == [0, 0]


def test_pass_by_pass_backward_equals_one_backward_of_the_loss(monkeypatch):
    """The step backpropagates each pass's share of L at once. Deferring every share to one
    backward of their sum must give the same gradients, and the sum must be the logged loss."""
    cfg, sched = ProMixConfig(tau=0.34), _sched(lga=True, w=0.7, lambda_u=0.3)
    clean = [torch.arange(B) < 5, torch.arange(B) >= 2]
    nets, opt, batch = _setup(3)
    _step(nets, opt, batch, clean, cfg=cfg, sched=sched)
    per_pass = [p.grad.clone() for net in nets for p in net.parameters()]

    nets, opt, batch = _setup(3)
    shares, real_step = [], opt.step
    monkeypatch.setattr(torch.Tensor, "backward", lambda share, *a, **k: shares.append(share))

    def deferred_step():
        monkeypatch.undo()
        sum(shares).backward()
        real_step()

    opt.step = deferred_step
    terms, _ = _step(nets, opt, batch, clean, cfg=cfg, sched=sched)
    assert len(shares) == 2 * 6  # every pass of both peers (faithful), each its own share
    assert float(sum(shares).detach()) == pytest.approx(terms["loss"], rel=1e-6)
    once = [p.grad for net in nets for p in net.parameters()]
    for a, b in zip(per_pass, once, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


class _Held:
    def __init__(self, t):
        self.t = t


class _SavedBytes:
    """Bytes of the activations autograd holds for backward, and their peak."""

    def __init__(self):
        self.now = self.peak = 0

    def pack(self, t):
        holder = _Held(t)
        size = t.numel() * t.element_size()
        self.now += size
        self.peak = max(self.peak, self.now)
        weakref.finalize(holder, self._free, size)
        return holder

    def _free(self, size):
        self.now -= size

    def __enter__(self):
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self.pack, lambda h: h.t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self._hooks.__exit__(*exc)


@pytest.mark.parametrize("passes", ["faithful", "efficient"])
def test_at_most_two_passes_are_held_for_backward(passes):
    """Peak saved activations of a whole step (12 or 8 passes) stay near two weak passes."""
    nets, opt, batch = _setup()
    with _SavedBytes() as one:
        out = nets[0](batch.weak)
    del out
    with _SavedBytes() as step:
        _step(nets, opt, batch, [torch.ones(B, dtype=torch.bool)] * 2,
              cfg=ProMixConfig(passes=passes))
    assert one.peak > 0 and step.now == 0
    assert step.peak <= 2.2 * one.peak


def test_a_batch_without_the_last_class_still_has_c_wide_targets():
    # Every sample chosen, with labels 0 and 1: the targets never name class C - 1 = 2, yet
    # they are one-hot over all C classes (the mixed soft cross-entropies need (B, C) targets).
    nets, opt, batch = _setup()
    batch = batch._replace(label=torch.arange(B) % 2)
    clean = [torch.ones(B, dtype=torch.bool)] * 2
    terms, chosen = _step(nets, opt, batch, clean)
    assert all(np.isfinite(v) for v in terms.values()), terms
    assert all(m.all() for m in chosen)
