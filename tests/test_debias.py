"""Class priors, logit adjustment, debiased pseudo-labels and sharpening (SPEC §6.2, §6.7)."""

import pytest
import torch

from promix.debias import PriorState, adjust_logits, debiased_probs, sharpen


def test_adjust_logits_adds_scaled_log_prior():
    z = torch.zeros(2, 3)
    prior = torch.tensor([0.5, 0.25, 0.25])
    out = adjust_logits(z, prior, 0.8)
    assert torch.allclose(out, 0.8 * prior.log().expand(2, 3))


def test_debiased_probs_remove_the_prior():
    prior = torch.tensor([0.7, 0.2, 0.1])
    z = prior.log()[None]  # a head that only predicts the prior
    q = debiased_probs(z, prior, 1.0)
    assert torch.allclose(q, torch.full((1, 3), 1 / 3))
    assert torch.allclose(debiased_probs(z, prior, 0.0), prior[None])


def test_debiased_probs_in_fp32_under_bf16_logits():
    prior = torch.tensor([1e-30, 1 - 1e-30])
    q = debiased_probs(torch.zeros(1, 2, dtype=torch.bfloat16), prior, 0.5)
    assert q.dtype == torch.float32 and torch.isfinite(q).all()


@pytest.mark.parametrize("t", [0.5, 0.25])
def test_sharpen(t):
    q = torch.tensor([[0.6, 0.3, 0.1]])
    out = sharpen(q, t)
    expected = q ** (1 / t) / (q ** (1 / t)).sum()
    assert torch.allclose(out, expected)
    assert out[0, 0] > q[0, 0]


def test_prior_ema_stays_a_distribution_of_shape_c():
    state = PriorState.uniform(4, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        probs = torch.softmax(torch.randn(8, 4, generator=g), 1)
        chosen = torch.rand(8, generator=g) < 0.5
        state.update(0, probs, chosen)
    for prior in (state.clean, state.unclean):
        assert prior.shape == (2, 4)
        assert torch.allclose(prior.sum(1), torch.ones(2))
        assert (prior > 0).all()
    assert torch.allclose(state.clean[1], torch.full((4,), 0.25))  # peer 2 untouched


def test_prior_ema_value():
    state = PriorState.uniform(2, momentum=0.9)
    probs = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    state.update(0, probs, torch.tensor([True, False, True]))
    assert state.clean[0].tolist() == pytest.approx([0.9 * 0.5 + 0.1 * 1.0, 0.9 * 0.5])
    assert state.unclean[0].tolist() == pytest.approx([0.45, 0.55])


@pytest.mark.parametrize("chosen", [[True, True], [False, False]])
def test_empty_set_skips_the_update(chosen):
    state = PriorState.uniform(2, momentum=0.5)
    state.update(0, torch.tensor([[1.0, 0.0], [1.0, 0.0]]), torch.tensor(chosen))
    assert torch.isfinite(state.clean).all() and torch.isfinite(state.unclean).all()
    untouched = state.unclean[0] if all(chosen) else state.clean[0]
    assert untouched.tolist() == [0.5, 0.5]


def test_prior_state_dict_roundtrip():
    a = PriorState.uniform(3, momentum=0.99)
    a.update(1, torch.tensor([[0.2, 0.3, 0.5]]), torch.tensor([True]))
    b = PriorState.uniform(3, momentum=0.5)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.clean, b.clean) and b.momentum == 0.99


def test_uniform_priors_on_the_requested_device():
    state = PriorState.uniform(3, momentum=0.9, device="meta")  # "meta" stands in for a GPU
    assert state.clean.device.type == "meta" and state.unclean.device.type == "meta"
    assert state.clean.shape == state.unclean.shape == (2, 3)
