"""Class-prior state and the two debiasing operations (SPEC §6.2, §6.6, §6.7).

- `adjust_logits(z, prior, strength)`: logit adjustment inside the losses, z + α·log π.
- `debiased_probs(z, prior, strength)`: pseudo-label debiasing, σ(z - β·log π).
Both compute log π in fp32 whatever the autocast precision (SPEC §12.8).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def adjust_logits(logits: torch.Tensor, prior: torch.Tensor, strength: float) -> torch.Tensor:
    """adj(z, π, α) = z + α log π, with π detached. logits (B, C), prior (C,)."""
    return logits.float() + strength * prior.detach().float().log()


def debiased_probs(logits: torch.Tensor, prior: torch.Tensor, strength: float) -> torch.Tensor:
    """q = σ(z - β log π): probabilities with the prior's bias removed. (B, C) -> (B, C)."""
    return torch.softmax(logits.float() - strength * prior.float().log(), dim=1)


def sharpen(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """Sharpen(q, T)_c = q_c^(1/T) / Σ_j q_j^(1/T)."""
    p = probs.pow(1 / temperature)
    return p / p.sum(1, keepdim=True)


@dataclass
class PriorState:
    """Running class priors of each peer: `clean[k]` over its chosen set, `unclean[k]` over
    the rest. Shapes (2, C); every row stays a distribution. Checkpointed with the run."""

    clean: torch.Tensor
    unclean: torch.Tensor
    momentum: float

    @classmethod
    def uniform(cls, num_classes: int, momentum: float, device=None) -> PriorState:
        u = torch.full((2, num_classes), 1 / num_classes, device=device)
        return cls(u.clone(), u.clone(), momentum)

    def update(self, peer: int, probs: torch.Tensor, chosen: torch.Tensor) -> None:
        """EMA of the mean raw probabilities over the final chosen / unchosen sets.

        An empty set skips its update, so the prior never becomes NaN (SPEC §12.1).
        """
        m = self.momentum
        for prior, mask in ((self.clean, chosen), (self.unclean, ~chosen)):
            if mask.any():
                mean = probs[mask].float().mean(0)
                prior[peer] = m * prior[peer] + (1 - m) * mean

    def state_dict(self) -> dict:
        return {"clean": self.clean, "unclean": self.unclean,
                "momentum": torch.tensor(self.momentum, dtype=torch.float64)}

    def load_state_dict(self, state: dict) -> None:
        self.clean.copy_(state["clean"])
        self.unclean.copy_(state["unclean"])
        self.momentum = float(state["momentum"])
