"""One optimization step: the warm-up step (SPEC §4) and the ProMix step (SPEC §6).

`train_step` reads next to SPEC §6: both peers' weak passes, the no-grad decisions (MHCS,
targets, LGA), then one generator, `peer_passes`, written once and run for each peer: it
forms the peer's loss terms pass by pass, and the step backpropagates each pass at once.
Every term over an empty set is 0, never NaN (SPEC §12.1).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Literal, NamedTuple

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
    Returns the named loss terms and each peer's final chosen mask over the batch (B,)."""
    autocast = autocast or contextlib.nullcontext()
    y = batch.label
    with autocast:  # §6.1: both peers' weak passes first, since LGA compares their predictions
        weak = [net(batch.weak) for net in nets]

    with torch.no_grad():  # §6.2-6.5: decisions use train-mode predictions of this step
        probs = [torch.softmax(out.logits.float(), 1) for out in weak]
        chosen, targets = [], []
        for k in range(2):
            s = clean[k][batch.index]
            m = matched_high_confidence(s, probs[k], y, cfg.tau) if cfg.mhcs else s
            guess = debiased_probs(weak[k].logits, priors.clean[k], cfg.debias_pl).argmax(1)
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

    # L = L_1 + L_2 is a sum of terms that each come from one forward pass, so each pass's share
    # is backpropagated as soon as it is formed: the gradients of one backward of L (up to float
    # summation order) with at most two batch-sized graphs alive (the other peer's weak pass and
    # the current one) instead of all twelve. Per net the forward order of §6.6 (weak, strong, the
    # mix passes), hence every BN update, and the order of the random draws are unchanged.
    terms, losses = {}, []
    optimizer.zero_grad(set_to_none=True)
    for k, net in enumerate(nets):
        peer = {}
        for pass_terms in peer_passes(
            net, weak[k], batch, F.one_hot(targets[k], probs[k].shape[1]).float(), chosen[k],
            priors.clean[k], priors.unclean[k], sched, cfg, random, autocast,
        ):
            share = weighted_sum(pass_terms.values())
            if share.requires_grad:  # not so only for a constant 0 share (CR ablated, no h_AP)
                share.backward()  # frees this pass's saved activations
            peer |= {name: t._replace(value=t.value.detach()) for name, t in pass_terms.items()}
        priors.update(k, probs[k], chosen[k])  # §6.7: after L_k is formed
        totals = peer_totals(peer, sched.w)
        losses += [totals["loss_h"], totals["loss_ap"]]  # L_k = L_h + L_ap
        terms |= {f"{name}_{k + 1}": v for name, v in totals.items()}
    optimizer.step()
    return floats(terms | {"loss": sum(losses)}), chosen  # L = L_1 + L_2


def floats(terms: dict[str, torch.Tensor]) -> dict[str, float]:
    """0-d tensors to Python floats with one device-to-host copy (one sync, not one per term)."""
    values = torch.stack([v.float() for v in terms.values()]).tolist()
    return dict(zip(terms, values, strict=True))


class Term(NamedTuple):
    """One loss term of a peer: the objective it belongs to and its weight there."""

    objective: Literal["h", "ap"]  # L_h (primary head) or L_ap (auxiliary pseudo head)
    weight: float  # 1, the ramp weight w, or λ_u (times w for the strong view's UNL)
    value: torch.Tensor  # 0-d


def weighted_sum(terms) -> torch.Tensor:
    return sum(t.weight * t.value for t in terms)


def peer_passes(
    net: TwoHeadNet,
    weak_out: Heads,
    batch: Batch,
    targets: torch.Tensor,
    chosen: torch.Tensor,
    prior_c: torch.Tensor,
    prior_u: torch.Tensor,
    sched: EpochSchedule,
    cfg: ProMixConfig,
    random: StepRandom,
    autocast,
):
    """Loss terms of one peer (SPEC §6.6), one forward pass at a time.

    targets: (B, K) one-hots t_k; chosen: (B,) L_k. Yields each pass's named `Term`s, whose
    weighted sum is the pass's share of the peer's loss L_h + L_ap, where
        L_h  = CE + w (CR + MIX + FMIX)
        L_ap = CE_ap + w (CR_ap + MIX_ap + FMIX_ap) + λ_u (UNL_w + w UNL_s)
    Each Term names its objective and carries its weight, written here only; `peer_totals`
    sums them for the log. The weak pass comes from the caller.
    """
    debias_strength = cfg.debias_output  # α of adj(z, π, α) = z + α log π
    w, lambda_u = sched.w, sched.lambda_u  # ramp weight of CR/MIX/FMIX; unlabeled weight
    unchosen = ~chosen
    with torch.no_grad():  # r = Sharpen(σ(z̄ - β log π^u), T): the primary head's guess
        r = sharpen(debiased_probs(weak_out.logits, prior_u, cfg.debias_pl), cfg.sharpen_t)

    def labeled(logits):
        adjusted = adjust_logits(logits, prior_c, debias_strength)
        return masked_mean(soft_ce(adjusted, targets), chosen)

    def main_pass(out: Heads, name: str, unl: str, weight: float,
                  on: bool = True) -> dict[str, Term]:
        """The weak (CE, UNL_w; weight 1) or strong (CR, UNL_s; weight w) pass."""
        zero = torch.zeros((), device=out.logits.device)
        terms = {name: Term("h", weight, labeled(out.logits) if on else zero)}
        if cfg.pseudo_head:
            terms[f"{name}_ap"] = Term("ap", weight, labeled(out.pseudo_logits) if on else zero)
            guess = soft_ce(adjust_logits(out.pseudo_logits, prior_u, debias_strength), r)
            terms[unl] = Term("ap", lambda_u * weight, masked_mean(guess, unchosen))
        return terms

    yield main_pass(weak_out, "ce", "unl_w", 1.0)
    with autocast:
        strong_out = net(batch.strong)
    # the consistency ablation drops CR, not UNL_s
    yield main_pass(strong_out, "cr", "unl_s", w, on=cfg.consistency)
    yield from mixed_passes(net, batch.weak[chosen], targets[chosen], prior_c, w, cfg, random,
                            autocast)


def peer_totals(terms: dict[str, Term], w: float) -> dict[str, torch.Tensor]:
    """A peer's logged terms: each term's value (0 for a pass that did not run), L_h and L_ap
    as their terms' weighted sums (what was backpropagated), and UNL = UNL_w + w UNL_s."""
    zero = torch.zeros_like(terms["ce"].value)
    out = {name: zero for name in ("ce", "cr", "mix", "fmix")}
    if "ce_ap" in terms:  # the pseudo head is on
        out |= {name: zero for name in ("ce_ap", "cr_ap", "mix_ap", "fmix_ap")}
        out["unl"] = terms["unl_w"].value + w * terms["unl_s"].value
    out |= {name: t.value for name, t in terms.items() if name not in UNL_PARTS}
    h = [t for t in terms.values() if t.objective == "h"]
    ap = [t for t in terms.values() if t.objective == "ap"]
    return out | {"loss_h": weighted_sum(h), "loss_ap": weighted_sum(ap) if ap else zero}


UNL_PARTS = ("unl_w", "unl_s")  # logged together, as UNL = UNL_w + w UNL_s


def mixed_passes(net, x, t, prior_c, w: float, cfg: ProMixConfig, random: StepRandom, autocast):
    """Mixup and FMix passes on the chosen samples x (n, C, H, W), t (n, K), one at a time.

    faithful: four passes (mix-h, fmix-h, mix-AP, fmix-AP), each with its own draws.
    efficient: one mixup pass and one FMix pass feed both heads.
    Yields each pass's `Term`s, as peer_passes; none with fewer than two chosen samples.
    """
    if x.shape[0] < 2:  # nothing to mix (and train-mode BN cannot run on a single sample)
        return
    kinds = [("mix", cfg.mixup, mixup, {"alpha": cfg.mixup_alpha}),
             ("fmix", cfg.fmix, fmix, {"decay": cfg.fmix_decay})]
    heads = ["h", "ap"] if cfg.pseudo_head else ["h"]
    passes = [(heads, kind) for kind in kinds] if cfg.passes == "efficient" else [
        ([head], kind) for head in heads for kind in kinds
    ]
    for pass_heads, (name, enabled, mix, kwargs) in passes:
        if not enabled:
            continue
        mixed = mix(x, t, rng=random.rng, generator=random.generator, **kwargs)
        with autocast:
            out = net(mixed.images)
        terms = {}
        for head in pass_heads:
            logits = out.logits if head == "h" else out.pseudo_logits
            loss = soft_ce(adjust_logits(logits, prior_c, cfg.debias_output), mixed.targets)
            terms[name if head == "h" else f"{name}_ap"] = Term(head, w, loss.mean())
        yield terms
