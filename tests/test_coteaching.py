"""Co-teaching: small-loss selection, the cross update, the forget-rate schedule, end to end."""

import pytest
import torch
import torch.nn.functional as F

from promix.api import train_config
from promix.config import Config, CoteachingConfig, apply_overrides
from promix.coteaching import (
    DEFAULT_FORGET_RATE,
    coteaching_step,
    forget_rate_at,
    resolve_forget_rate,
    small_loss,
)
from promix.models import create_model
from promix.runs import read_metrics
from promix.step import Batch

B, C = 8, 3


@pytest.mark.parametrize("loss, keep, expected", [
    ([0.9, 0.1, 0.5, 0.3, 0.7, 0.2], 3, [0, 1, 0, 1, 0, 1]),
    ([0.9, 0.1, 0.5, 0.3, 0.7, 0.2], 6, [1, 1, 1, 1, 1, 1]),
    ([0.9, 0.1, 0.5, 0.3, 0.7, 0.2], 1, [0, 1, 0, 0, 0, 0]),
    ([0.4, 0.4, 0.4, 0.1, 0.4, 0.4], 2, [1, 0, 0, 1, 0, 0]),  # ties: the first in order
])
def test_small_loss_keeps_the_smallest(loss, keep, expected):
    assert small_loss(torch.tensor(loss), keep).tolist() == [bool(e) for e in expected]


@pytest.mark.parametrize("epoch, epochs, ramp_frac, expected", [
    (0, 200, 10 / 200, 0.0),  # R(0) = 1: nothing forgotten at the start
    (5, 200, 10 / 200, 0.25),  # half way up the ramp: τ_f / 2
    (10, 200, 10 / 200, 0.5),  # T = T_k: τ_f reached
    (150, 200, 10 / 200, 0.5),  # and kept
    (1, 28, 10 / 200, 0.5 / 1.4),  # T_k = 1.4 epochs on a 28-epoch run
    (3, 10, 0.0, 0.5),  # no ramp: τ_f from the start
])
def test_forget_rate_schedule(epoch, epochs, ramp_frac, expected):
    got = forget_rate_at(epoch, epochs, tau_f=0.5, ramp_frac=ramp_frac)
    assert got == pytest.approx(expected)


@pytest.mark.parametrize("cfg, noise, expected", [
    (CoteachingConfig(forget_rate=0.3), {"realized_rate": 0.45}, 0.3),  # explicit wins
    (CoteachingConfig(), {"realized_rate": 0.45}, 0.45),  # the data's noise report
    (CoteachingConfig(), {}, DEFAULT_FORGET_RATE),  # user data: nothing known
    (CoteachingConfig(), None, DEFAULT_FORGET_RATE),
])
def test_resolve_forget_rate(cfg, noise, expected):
    assert resolve_forget_rate(cfg, noise) == pytest.approx(expected)


def test_forget_rate_out_of_range_is_refused():
    with pytest.raises(ValueError, match="forget_rate"):
        resolve_forget_rate(CoteachingConfig(forget_rate=1.0), None)


def _setup(seed=0):
    torch.manual_seed(seed)
    nets = [create_model("small_cnn", num_classes=C, in_channels=3, width=4) for _ in range(2)]
    opt = torch.optim.SGD([{"params": n.parameters()} for n in nets], lr=0.1)
    g = torch.Generator().manual_seed(seed)
    batch = Batch(torch.randn(B, 3, 8, 8, generator=g), None,
                  torch.randint(0, C, (B,), generator=g), torch.arange(B))
    return nets, opt, batch


def _grads(net):
    return torch.cat([torch.zeros_like(p).flatten() if p.grad is None else p.grad.flatten()
                      for p in net.parameters()])


def test_each_net_learns_only_from_the_samples_its_peer_kept():
    nets, opt, batch = _setup()
    for net in nets:
        net.eval()  # BN on running stats: a sample's loss depends only on that sample
    with torch.no_grad():
        losses = [F.cross_entropy(n(batch.weak).logits, batch.label, reduction="none")
                  for n in nets]
    keep = B // 2
    kept = [small_loss(loss, keep) for loss in losses]
    # Expected gradient of net k: mean CE over the peer's kept samples, computed by hand.
    expected = []
    for k, net in enumerate(nets):
        net.zero_grad()
        peer = kept[1 - k]
        F.cross_entropy(net(batch.weak[peer]).logits, batch.label[peer]).backward()
        expected.append(_grads(net).clone())
    lr = opt.param_groups[0]["lr"]
    before = [[p.detach().clone() for p in n.parameters()] for n in nets]
    terms = coteaching_step(nets, opt, batch, forget_rate=0.5)
    for k, net in enumerate(nets):
        step = torch.cat([(b - p.detach()).flatten() / lr
                          for b, p in zip(before[k], net.parameters(), strict=True)])
        assert torch.allclose(step, expected[k], atol=1e-5), k
        own = kept[k]
        assert not torch.equal(own, kept[1 - k]), "the test needs peers that disagree"
    assert terms["kept_1"] == terms["kept_2"] == 0.5
    assert terms["update_1"] == pytest.approx(float(losses[0][kept[1]].mean()), abs=1e-5)
    assert terms["update_2"] == pytest.approx(float(losses[1][kept[0]].mean()), abs=1e-5)


def test_forget_rate_zero_trains_on_everything():
    nets, opt, batch = _setup(1)
    terms = coteaching_step(nets, opt, batch, forget_rate=0.0)
    assert terms["kept_1"] == 1.0
    assert terms["update_1"] == pytest.approx(terms["ce_1"], abs=1e-6)


def test_end_to_end_through_the_api(tmp_path):
    cfg = apply_overrides(Config(), [
        "--per_class=20", "--epochs=4", "--warmup_epochs=1", "--width=4", "--batch_size=32",
        "--progress=false", "--method=coteaching", "--checkpoint_every=0",
    ])
    result = train_config(cfg, run_dir=tmp_path).result
    assert result.method == "coteaching" and result.epochs == 4
    assert 0.0 <= result.test_accuracy <= 1.0
    metrics = read_metrics(tmp_path)
    assert [m["phase"] for m in metrics] == ["coteaching"] * 4
    kept = [m["loss/kept_1"] for m in metrics]
    # τ_f = the realized rate (≈ 0.45 at sym 50%); T_k = 0.2 epochs: all at τ_f from epoch 1.
    assert kept[0] == 1.0 and all(0.4 < k < 0.7 for k in kept[1:]), kept
    assert "test/acc_net2" in metrics[-1] and "selected/css_1" not in metrics[-1]
