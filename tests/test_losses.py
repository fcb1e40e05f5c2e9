"""Loss helpers: soft CE, empty-set guard, confidence penalty (SPEC §4, §12.1)."""

import math

import pytest
import torch
import torch.nn.functional as F

from promix.losses import confidence_penalty, masked_mean, soft_ce


def test_soft_ce_equals_ce_for_one_hot():
    z = torch.randn(5, 4)
    y = torch.tensor([0, 1, 2, 3, 1])
    expected = F.cross_entropy(z, y, reduction="none")
    assert torch.allclose(soft_ce(z, F.one_hot(y, 4).float()), expected)


def test_masked_mean_empty_is_zero_not_nan():
    values = torch.tensor([1.0, float("nan"), 3.0])
    assert masked_mean(values, torch.zeros(3, dtype=torch.bool)).item() == 0.0
    assert masked_mean(values, torch.tensor([True, False, True])).item() == 2.0


def test_masked_mean_gradient_flows_only_to_masked():
    values = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    masked_mean(values, torch.tensor([True, False, False])).backward()
    assert values.grad.tolist() == [1.0, 0.0, 0.0]


def test_confidence_penalty_fixed_is_negative_entropy():
    z = torch.tensor([[0.0, 0.0]])
    assert math.isclose(confidence_penalty(z, faithful=False).item(), -math.log(2), rel_tol=1e-6)


def test_faithful_penalty_clamps_logits_q4():
    # All-negative logits are clamped to ~0, so the faithful penalty sits at its minimum -log C
    # whatever the logits (its gradient vanishes), unlike the intended penalty.
    z = torch.tensor([[-5.0, -1.0, -3.0]], requires_grad=True)
    p = confidence_penalty(z, faithful=True)
    assert math.isclose(p.item(), -math.log(3), rel_tol=1e-5)
    p.backward()
    assert torch.allclose(z.grad, torch.zeros_like(z))
    assert confidence_penalty(z.detach(), faithful=False).item() > -math.log(3) + 0.1


def test_soft_ce_is_computed_in_fp32_under_bf16_logits():
    # The same bf16 values: a log-softmax in bf16 would be off by ~1e-2; fp32 is not.
    z = (torch.randn(64, 10, generator=torch.Generator().manual_seed(0)) * 4).bfloat16()
    t = torch.softmax(torch.randn(64, 10, generator=torch.Generator().manual_seed(1)), 1)
    out = soft_ce(z, t)
    expected = -(t.double() * torch.log_softmax(z.double(), 1)).sum(1)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), expected, rtol=1e-6, atol=1e-5)


def test_faithful_penalty_clamps_only_the_negative_logits():
    # max(z, 1e-12): 2 and 0.5 are kept, -1 becomes (about) 0.
    z = torch.tensor([[2.0, 0.5, -1.0]])
    p = torch.softmax(torch.tensor([2.0, 0.5, 0.0]), 0)
    assert confidence_penalty(z, faithful=True).item() == pytest.approx(float((p * p.log()).sum()))
