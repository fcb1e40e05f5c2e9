"""Label-noise models. (Minimal version: symmetric noise; extended in the datasets issue.)"""

from __future__ import annotations

import random

import torch


def transition_matrix(true: torch.Tensor, noisy: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Row-normalized T[i, j] = P(noisy = j | true = i), shape (C, C)."""
    counts = torch.zeros(num_classes, num_classes, dtype=torch.float64)
    counts.index_put_((true, noisy), torch.ones_like(true, dtype=torch.float64), accumulate=True)
    return counts / counts.sum(1, keepdim=True).clamp_min(1)


def make_noise(
    true: torch.Tensor, *, kind: str, rate: float, num_classes: int, seed: int
) -> tuple[torch.Tensor, dict]:
    """Noisy labels (N,) and a report: kind, rate, realized rate, transition matrix."""
    labels = true.tolist()
    n = len(labels)
    if kind == "none":
        noisy = list(labels)
    elif kind == "sym":
        # Reference semantics (SPEC §8): floor(rN) samples relabelled uniformly over all C.
        rng = random.Random(seed)
        idx = list(range(n))
        rng.shuffle(idx)
        noisy = list(labels)
        for i in idx[: int(rate * n)]:
            noisy[i] = rng.randint(0, num_classes - 1)
    else:
        raise ValueError(f"noise kind {kind!r} is not implemented")
    noisy = torch.tensor(noisy, dtype=torch.int64)
    info = {
        "kind": kind,
        "rate": rate,
        "seed": seed,
        "realized_rate": float((noisy != true).float().mean()),
        "transition_matrix": transition_matrix(true, noisy, num_classes).tolist(),
    }
    return noisy, info
