"""Co-teaching (Han et al., NeurIPS 2018), the small-loss baseline (`--method=coteaching`).

Two peers see the same batch. Each ranks the batch by its own per-sample cross-entropy and
keeps the R(T) fraction with the smallest losses; each peer is then trained on the samples
its PEER kept (the cross update), so the two filter each other's errors instead of
confirming their own. The fraction kept shrinks from 1 to 1 - τ_f over the first T_k epochs:

    R(T) = 1 - min(T / T_k · τ_f, τ_f)     (paper: T_k = 10 of 200 epochs, τ_f = noise rate)

Everything else is shared with ProMix and cross-entropy so comparisons are fair: the data,
the weak view, the model (primary head), SGD with the cosine schedule, and the evaluation
(the two peers' averaged logits). The paper's Adam schedule is not used (docs/baselines.md).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from .config import CoteachingConfig
from .models import TwoHeadNet
from .schedules import ramp
from .step import Batch

DEFAULT_FORGET_RATE = 0.2  # τ_f when nothing is known about the noise (user data)


def resolve_forget_rate(cfg: CoteachingConfig, noise: dict | None) -> float:
    """τ_f: as configured, else the noise report's realized rate, else DEFAULT_FORGET_RATE.

    Co-teaching assumes the noise rate is known (τ_f = ε). On benchmarks the dataset's noise
    report knows the realized fraction of wrong labels, which gives the baseline its best case.
    """
    if cfg.forget_rate is not None:
        rate = cfg.forget_rate
    elif noise and noise.get("realized_rate") is not None:
        rate = float(noise["realized_rate"])
    else:
        rate = DEFAULT_FORGET_RATE
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"coteaching.forget_rate={rate}: must be in [0, 1)")
    return rate


def forget_rate_at(epoch: int, epochs: int, *, tau_f: float, ramp_frac: float) -> float:
    """1 - R(T) at epoch T: τ_f · min(T / T_k, 1) with T_k = ramp_frac · epochs."""
    return tau_f * ramp(epoch, ramp_frac * epochs)


def small_loss(loss: torch.Tensor, keep: int) -> torch.Tensor:
    """Bool mask (B,) of the `keep` smallest losses of loss (B,); ties keep the first."""
    mask = torch.zeros_like(loss, dtype=torch.bool)
    order = torch.argsort(loss.detach(), stable=True)
    mask[order[:keep]] = True
    return mask


def coteaching_step(
    nets: list[TwoHeadNet], optimizer, batch: Batch, *, forget_rate: float, autocast=None
) -> dict[str, float]:
    """One Co-teaching step on the weak view. Returns the named terms.

    Peer k keeps ⌊(1 - forget_rate) B⌋ samples (at least 1) by its own loss; peer k's loss
    is its mean CE over the samples its peer kept. ce_k is peer k's CE over the whole batch
    (a diagnostic, no gradient); kept_k the fraction of the batch peer k kept.
    """
    with autocast or contextlib.nullcontext():
        logits = [net(batch.weak).logits for net in nets]
    losses = [F.cross_entropy(z.float(), batch.label, reduction="none") for z in logits]  # (B,)
    keep = max(int((1.0 - forget_rate) * len(batch.label)), 1)
    kept = [small_loss(loss, keep) for loss in losses]
    terms = {}
    for k, loss in enumerate(losses):
        terms[f"update_{k + 1}"] = loss[kept[1 - k]].mean()  # cross update: the peer's choice
    total = terms["update_1"] + terms["update_2"]
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    optimizer.step()
    out = {name: float(v.detach()) for name, v in terms.items()}
    for k, loss in enumerate(losses, start=1):
        out[f"ce_{k}"] = float(loss.detach().mean())
        out[f"kept_{k}"] = keep / len(batch.label)
    return out | {"loss": float(total.detach())}
