"""Which samples count as clean: pure functions from tensors to boolean masks.

- `class_small_loss`: CSS, the per-epoch class-wise small-loss selection (SPEC §5).
- `matched_high_confidence`: MHCS inside the step (SPEC §6.3).
- `agreement_candidates`: LGA, label guessing by agreement, with its cap (SPEC §6.5).
- `auto_rho`: per-class clean fractions from the loss distribution (no noise rate needed).
- `lenient_rho`: per-class ratios that drop only the loss mixture's upper half of its noisy
  component (over-selecting costs ProMix less than under-selecting; docs/baselines.md).
- `gmm_clean`: DivideMix's two-component Gaussian mixture on the losses (an ablation), fitted
  by `fit_gmm`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch


def class_quotas(
    labels: torch.Tensor, rho: float | torch.Tensor, num_classes: int, *, rule: str = "uniform"
) -> torch.Tensor:
    """k_j per class, shape (C,).

    uniform (reference, Q5): k_j = max(1, min(n_j, ceil(ρ N / C))) for every class with n_j > 0.
    per_class: k_j = max(1, ceil(ρ_j n_j)); ρ may be a (C,) tensor of per-class ratios.
    Classes with n_j = 0 get 0.
    """
    counts = torch.bincount(labels, minlength=num_classes)
    rho = torch.as_tensor(rho, dtype=torch.float64, device=labels.device).expand(num_classes)
    if rule == "uniform":
        quota = torch.ceil(rho * labels.numel() / num_classes)
    elif rule == "per_class":
        quota = torch.ceil(rho * counts)
    else:
        raise ValueError(f"unknown quota rule {rule!r}")
    quota = quota.long().clamp_min(1).minimum(counts)
    return torch.where(counts > 0, quota, 0)


def rank_within_class(loss: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """0-based rank of each sample's loss among the samples of its class, shape (N,)."""
    order = torch.argsort(loss, stable=True)
    order = order[torch.argsort(labels[order], stable=True)]  # by class, then by loss
    sorted_labels = labels[order]
    class_start = torch.searchsorted(sorted_labels, sorted_labels, side="left")
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order), device=loss.device) - class_start
    return rank


def class_small_loss(
    loss: torch.Tensor, labels: torch.Tensor, quota: torch.Tensor
) -> torch.Tensor:
    """CSS: the quota[j] smallest-loss samples of each class j (SPEC §5).

    loss: (N,) per-sample CE of the primary head on the test view; labels: (N,) noisy labels;
    quota: (C,) from `class_quotas`. Returns a bool mask (N,).
    """
    return rank_within_class(loss, labels) < quota[labels]


def high_confidence(probs: torch.Tensor, labels: torch.Tensor, tau: float) -> torch.Tensor:
    """MHCS's test: p_i[ỹ_i] > τ (strict), SPEC §6.3. probs (B, C), labels (B,) -> (B,) bool."""
    return probs.gather(1, labels[:, None]).squeeze(1) > tau


def matched_high_confidence(
    clean: torch.Tensor, probs: torch.Tensor, labels: torch.Tensor, tau: float
) -> torch.Tensor:
    """MHCS: m_i = s_i or p_i[ỹ_i] > τ, SPEC §6.3. probs: (B, C) raw primary probs."""
    return clean | high_confidence(probs, labels, tau)


def agreement_candidates(
    chosen: torch.Tensor, probs_1: torch.Tensor, probs_2: torch.Tensor, tau: float, cap: int
) -> torch.Tensor:
    """LGA for one peer: unchosen samples both peers predict confidently and identically.

    chosen: (B,) this peer's chosen mask L_k; probs_k: (B, C) raw probs of each peer.
    cap = ⌊θB⌋ - |L_k|; no candidate when cap <= 0 (the |L_k|/B >= θ skip of SPEC §6.5).
    Over the cap, keep those with the largest mean confidence. Returns the added mask (B,).
    """
    conf_1, pred_1 = probs_1.max(1)
    conf_2, pred_2 = probs_2.max(1)
    candidates = ~chosen & (conf_1 > tau) & (conf_2 > tau) & (pred_1 == pred_2)
    if cap <= 0:
        return torch.zeros_like(candidates)
    n = int(candidates.sum())
    if n > cap:
        score = torch.where(candidates, (conf_1 + conf_2) / 2, -math.inf)
        keep = torch.zeros_like(candidates)
        keep[score.topk(cap).indices] = True
        candidates = keep
    return candidates


def lga_cap(num_chosen: int, batch_size: int, threshold: float) -> int:
    """How many LGA additions fit: ⌊θB⌋ - |L_k| (SPEC §6.5, 230 - |L_k| at B = 256)."""
    return math.floor(threshold * batch_size) - num_chosen


def auto_rho(
    loss: torch.Tensor, labels: torch.Tensor, num_classes: int, *, low: float, high: float,
    threshold: float = 0.5,
) -> torch.Tensor:
    """Per-class clean fractions estimated from the loss distribution, clipped to [low, high].

    For each class with at least 8 samples, a two-component 1-d Gaussian mixture on its
    normalized losses (`gmm_clean` on the class's samples); the share of the class whose
    low-loss posterior exceeds `threshold` is the class's selection ratio. Shape (C,). Used
    with the per_class quota rule. 0.5 is the most probable split (rho_mode = auto); a lower
    threshold keeps a sample unless the mixture is fairly sure it is noisy (rho_mode = bayes).
    (The mixture's own weight of the low-loss component is `GaussianMixture.clean_weight`;
    benchmarks/rho_estimators.py compares the two.)
    """
    if not 0 < threshold < 1:
        raise ValueError(f"threshold={threshold}: a posterior threshold lies strictly between "
                         "0 and 1")
    return per_class_share(
        loss, labels, num_classes, lambda x: gmm_clean(x, threshold=threshold).float().mean(),
        low=low, high=high)


def lenient_rho(
    loss: torch.Tensor, labels: torch.Tensor, num_classes: int, *, low: float, high: float
) -> torch.Tensor:
    """Per-class selection ratios that lean high, clipped to [low, high]. Shape (C,).

    For each class with at least 8 samples, a two-component 1-d Gaussian mixture on its
    min-max normalized losses; the class keeps the share of its samples whose loss is below
    the mean of the high-loss (noisy) component. With separated components that is the clean
    share plus half the noisy one, 1 - ν_j/2 for a noise rate ν_j; with overlapping ones it
    stays high, where `auto_rho`'s posterior rule falls to about one half whatever the truth.
    """
    def below_noisy_mean(members: torch.Tensor) -> torch.Tensor:
        x = min_max(members)
        gmm = fit_gmm(x)
        return (x < gmm.mean[1 - gmm.clean]).double().mean()

    return per_class_share(loss, labels, num_classes, below_noisy_mean, low=low, high=high)


def per_class_share(
    loss: torch.Tensor, labels: torch.Tensor, num_classes: int, share, *, low: float,
    high: float,
) -> torch.Tensor:
    """`share(losses of class j)` for each class with at least 8 samples (too few to fit a
    mixture otherwise; those keep `high`), clipped to [low, high]. Shape (C,), float64."""
    rho = torch.full((num_classes,), high, dtype=torch.float64)
    for c in range(num_classes):
        members = loss[labels == c]
        if members.numel() >= 8:
            rho[c] = float(share(members))
    return rho.clamp(low, high)


class GaussianMixture(NamedTuple):
    """A two-component 1-d Gaussian mixture fitted by `fit_gmm` (each field has shape (2,),
    except `posterior`, (N, 2))."""

    weight: torch.Tensor
    mean: torch.Tensor
    var: torch.Tensor
    posterior: torch.Tensor

    @property
    def clean(self) -> int:
        """Index of the low-mean (clean) component."""
        return int(self.mean.argmin())

    @property
    def clean_weight(self) -> float:
        """The mixture's estimate of the clean fraction: the low-mean component's weight."""
        return float(self.weight[self.clean])


def fit_gmm(x: torch.Tensor, *, iters: int = 50) -> GaussianMixture:
    """EM for a two-component 1-d Gaussian mixture on x (N,), started from its quartiles."""
    x = x.double()
    mean = torch.quantile(x, torch.tensor([0.25, 0.75], dtype=x.dtype, device=x.device))
    var = torch.full((2,), float(x.var().clamp_min(1e-4)), dtype=x.dtype, device=x.device)
    weight = torch.full((2,), 0.5, dtype=x.dtype, device=x.device)
    for _ in range(iters):
        log_p = -0.5 * ((x[:, None] - mean) ** 2 / var + var.log()) + weight.log()
        post = torch.softmax(log_p, dim=1)  # (N, 2)
        total = post.sum(0).clamp_min(1e-12)
        weight = total / len(x)
        mean = (post * x[:, None]).sum(0) / total
        var = ((post * (x[:, None] - mean) ** 2).sum(0) / total).clamp_min(1e-4)  # reg_covar
    return GaussianMixture(weight, mean, var, post)


def min_max(x: torch.Tensor) -> torch.Tensor:
    """x scaled to [0, 1] (a constant x maps to 0)."""
    x = x.double()
    return (x - x.min()) / (x.max() - x.min()).clamp_min(1e-12)


def gmm_clean(loss: torch.Tensor, *, iters: int = 50, threshold: float = 0.5) -> torch.Tensor:
    """DivideMix's selection: fit a 2-component GMM to the min-max normalized losses and keep
    samples whose posterior of the low-mean component exceeds `threshold`. (N,) -> bool (N,)."""
    gmm = fit_gmm(min_max(loss), iters=iters)
    return gmm.posterior[:, gmm.clean] > threshold
