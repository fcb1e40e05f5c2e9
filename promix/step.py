"""One optimization step: the warm-up step (SPEC §4) and the ProMix step (SPEC §6).

`train_step` reads next to SPEC §6: two main passes per peer, the no-grad decisions (MHCS,
targets, LGA), then one function, `peer_losses`, written once and called for each peer.
Every term over an empty set is 0, never NaN (SPEC §12.1).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from .config import ProMixConfig
from .debias import PriorState, adjust_logits, debiased_probs, sharpen
from .losses import confidence_penalty, masked_mean, soft_ce
from .mixing import fmix, mixup
from .models import Heads, TwoHeadNet
from .schedules import EpochSchedule
from .selection import agreement_candidates, lga_cap, matched_high_confidence


class Batch(NamedTuple):
    weak: torch.Tensor  # (B, C, H, W) normalized weak view x^w
    strong: torch.Tensor  # (B, C, H, W) normalized strong view x^s (None in warm-up)
    label: torch.Tensor  # (B,) noisy labels ỹ
    index: torch.Tensor  # (B,) dataset indices, to look up the clean masks


@dataclass
class StepRandom:
    """The step's sources of randomness: scalar draws (λ, μ) and device tensors."""

    rng: np.random.Generator
    generator: torch.Generator


def warmup_step(
    nets: list[TwoHeadNet], optimizer, batch: Batch, *, penalty: str = "none", autocast=None
) -> dict[str, float]:
    """Cross-entropy on every sample's weak view for each net's primary head (SPEC §4).

    penalty: "faithful" adds the reference's clamped confidence penalty (Q4), "fixed" the
    intended negative entropy, "none" nothing. Also the `--method ce` baseline's step.
    """
    terms = {}
    for k, net in enumerate(nets, start=1):
        with autocast or contextlib.nullcontext():
            logits = net(batch.weak).logits
        terms[f"ce_{k}"] = F.cross_entropy(logits.float(), batch.label)
        if penalty != "none":
            terms[f"penalty_{k}"] = confidence_penalty(logits, faithful=penalty == "faithful")
    total = sum(terms.values())
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    optimizer.step()
    return floats({name: v.detach() for name, v in terms.items()} | {"loss": total.detach()})


def train_step(
    nets: list[TwoHeadNet],
    optimizer,
    batch: Batch,
    *,
    clean: list[torch.Tensor],
    priors: PriorState,
    sched: EpochSchedule,
    cfg: ProMixConfig,
    random: StepRandom,
    autocast=None,
) -> tuple[dict[str, float], list[torch.Tensor]]:
    """One ProMix step. clean[k]: (N,) bool CSS mask s_k of peer k over the whole dataset.

    Returns the named loss terms and each peer's final chosen mask over the batch (B,).
    """
    autocast = autocast or contextlib.nullcontext()
    y = batch.label
    with autocast:  # §6.1: net1-weak, net1-strong, net2-weak, net2-strong
        outs = [(net(batch.weak), net(batch.strong)) for net in nets]

    with torch.no_grad():  # §6.2-6.5: decisions use train-mode predictions of this step
        probs = [torch.softmax(weak.logits.float(), 1) for weak, _ in outs]
        chosen, targets = [], []
        for k in range(2):
            s = clean[k][batch.index]
            m = matched_high_confidence(s, probs[k], y, cfg.tau) if cfg.mhcs else s
            guess = debiased_probs(outs[k][0].logits, priors.clean[k], cfg.debias_pl).argmax(1)
            chosen.append(m)
            targets.append(torch.where(m, y, guess))
        if sched.lga:
            agreed = probs[0].argmax(1)
            for k in range(2):
                cap = lga_cap(int(chosen[k].sum()), len(y), cfg.lga_threshold)
                added = agreement_candidates(chosen[k], probs[0], probs[1], cfg.tau, cap)
                if cfg.lga_label == "agreed":
                    targets[k] = torch.where(added, agreed, targets[k])
                chosen[k] = chosen[k] | added

    # L = L_1 + L_2 is a plain sum over disjoint parameters, so each peer's backward runs as
    # soon as its loss is formed: the same gradients, and one peer's graph in memory at a time.
    # The forward order of §6.1/§6.6 (and so every BN update and random draw) is unchanged.
    terms, total = {}, 0.0
    optimizer.zero_grad(set_to_none=True)
    for k, net in enumerate(nets):
        peer = peer_losses(
            net, outs[k], batch.weak, F.one_hot(targets[k], probs[k].shape[1]).float(),
            chosen[k], priors.clean[k], priors.unclean[k], sched, cfg, random, autocast,
        )
        priors.update(k, probs[k], chosen[k])  # §6.7: after L_k is formed, before backward
        (peer["loss_h"] + peer["loss_ap"]).backward()  # frees this peer's saved activations
        peer = {name: v.detach() for name, v in peer.items()}
        total = total + peer["loss_h"] + peer["loss_ap"]
        terms |= {f"{name}_{k + 1}": v for name, v in peer.items()}
    optimizer.step()
    return floats(terms | {"loss": total}), chosen


def floats(terms: dict[str, torch.Tensor]) -> dict[str, float]:
    """0-d tensors to Python floats with one device-to-host copy (one sync, not one per term)."""
    values = torch.stack([v.float() for v in terms.values()]).tolist()
    return dict(zip(terms, values, strict=True))


def peer_losses(
    net: TwoHeadNet,
    outs: tuple[Heads, Heads],
    weak: torch.Tensor,
    targets: torch.Tensor,
    chosen: torch.Tensor,
    prior_c: torch.Tensor,
    prior_u: torch.Tensor,
    sched: EpochSchedule,
    cfg: ProMixConfig,
    random: StepRandom,
    autocast,
) -> dict[str, torch.Tensor]:
    """Loss terms of one peer (SPEC §6.6). targets: (B, C) one-hots t_k; chosen: (B,) L_k."""
    (z_w, u_w), (z_s, u_s) = outs
    alpha = cfg.debias_output
    unchosen = ~chosen

    def labeled(logits_w, logits_s, mix_terms):  # CE + w(CR + MIX + FMIX) for one head
        ce = masked_mean(soft_ce(adjust_logits(logits_w, prior_c, alpha), targets), chosen)
        cr = masked_mean(soft_ce(adjust_logits(logits_s, prior_c, alpha), targets), chosen)
        cr = cr if cfg.consistency else torch.zeros_like(ce)
        return ce, cr, ce + sched.w * (cr + mix_terms[0] + mix_terms[1])

    mix_h, mix_ap = mixed_losses(net, weak[chosen], targets[chosen], prior_c, cfg, random, autocast)
    ce, cr, loss_h = labeled(z_w, z_s, mix_h)
    out = {"ce": ce, "cr": cr, "mix": mix_h[0], "fmix": mix_h[1], "loss_h": loss_h}
    if not cfg.pseudo_head:
        return out | {"loss_ap": torch.zeros_like(loss_h)}

    ce_ap, cr_ap, loss_ap = labeled(u_w, u_s, mix_ap)
    with torch.no_grad():  # r = Sharpen(σ(z̄ - β log π^u), T): the primary head's guess
        r = sharpen(debiased_probs(z_w, prior_u, cfg.debias_pl), cfg.sharpen_t)
    unl = masked_mean(soft_ce(adjust_logits(u_w, prior_u, alpha), r), unchosen)
    unl = unl + sched.w * masked_mean(soft_ce(adjust_logits(u_s, prior_u, alpha), r), unchosen)
    loss_ap = loss_ap + sched.lambda_u * unl
    return out | {"ce_ap": ce_ap, "cr_ap": cr_ap, "mix_ap": mix_ap[0], "fmix_ap": mix_ap[1],
                  "unl": unl, "loss_ap": loss_ap}


def mixed_losses(net, x, t, prior_c, cfg: ProMixConfig, random: StepRandom, autocast):
    """Mixup and FMix losses of both heads on the chosen samples x (n, C, H, W), t (n, K).

    faithful: four extra passes (mix-h, fmix-h, mix-AP, fmix-AP), each with its own draws.
    efficient: one mixup pass and one FMix pass feed both heads.
    Returns ((mix_h, fmix_h), (mix_ap, fmix_ap)); zeros with fewer than two chosen samples.
    """
    zero = torch.zeros((), device=x.device)
    result = {"h": [zero, zero], "ap": [zero, zero]}
    if x.shape[0] < 2:  # nothing to mix (and train-mode BN cannot run on a single sample)
        return tuple(result["h"]), tuple(result["ap"])
    kinds = [(0, cfg.mixup, mixup, {"alpha": cfg.mixup_alpha}),
             (1, cfg.fmix, fmix, {"decay": cfg.fmix_decay})]
    heads = ["h", "ap"] if cfg.pseudo_head else ["h"]
    passes = [(heads, kind) for kind in kinds] if cfg.passes == "efficient" else [
        ([head], kind) for head in heads for kind in kinds
    ]
    for pass_heads, (slot, enabled, mix, kwargs) in passes:
        if not enabled:
            continue
        mixed = mix(x, t, rng=random.rng, generator=random.generator, **kwargs)
        with autocast:
            out = net(mixed.images)
        for head in pass_heads:
            logits = out.logits if head == "h" else out.pseudo_logits
            loss = soft_ce(adjust_logits(logits, prior_c, cfg.debias_output), mixed.targets)
            result[head][slot] = loss.mean()
    return tuple(result["h"]), tuple(result["ap"])
