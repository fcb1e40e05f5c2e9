"""Per-sample and masked losses (SPEC §4, §6.6)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """CE_s(z, t) = -Σ_c t_c log σ(z)_c per sample, in fp32. (B, C), (B, C) -> (B,)."""
    return -(targets.float() * F.log_softmax(logits.float(), dim=1)).sum(1)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of values[mask]; 0 (not NaN) when the mask is empty (SPEC §12.1)."""
    count = mask.sum()
    total = torch.where(mask, values, 0).sum()  # where(): NaN outside the mask stays out
    return total / count.clamp_min(1)


def confidence_penalty(logits: torch.Tensor, *, faithful: bool) -> torch.Tensor:
    """Negative entropy avg_i Σ_c p_c log p_c of the warm-up under asymmetric noise (SPEC §4).

    faithful: p = σ(max(z, 1e-12)), the reference's clamp of the logits (Q4); otherwise the
    intended p = σ(z).
    """
    z = logits.float()
    if faithful:
        z = z.clamp_min(1e-12)
    log_p = F.log_softmax(z, dim=1)
    return (log_p.exp() * log_p).sum(1).mean()
