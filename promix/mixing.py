"""Mixup and FMix on the training device (SPEC §6.6, §7.3).

Scalar draws (λ, μ) come from a NumPy generator; permutations and FMix spectra from a torch
generator on the batch's device. Both are passed in, so a run is reproducible from its seed.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch


class Mixed(NamedTuple):
    images: torch.Tensor  # (n, C, H, W) mixed inputs
    targets: torch.Tensor  # (n, K) mixed soft targets


def mixup(
    x: torch.Tensor, targets: torch.Tensor, *, alpha: float, rng: np.random.Generator,
    generator: torch.Generator,
) -> Mixed:
    """x̄ = λ x + (1-λ) x[ς], t̄ = λ t + (1-λ) t[ς] with λ = max(λ0, 1-λ0), λ0 ~ Beta(α, α)
    and ς a random permutation of the given (chosen) samples. x (n, C, H, W), targets (n, K)."""
    lam0 = rng.beta(alpha, alpha)
    lam = max(lam0, 1 - lam0)
    perm = torch.randperm(x.shape[0], generator=generator, device=x.device)
    return Mixed(lam * x + (1 - lam) * x[perm], lam * targets + (1 - lam) * targets[perm])


def fmix_mask(
    mu: float, shape: tuple[int, int], *, decay: float, rng: np.random.Generator,
    generator: torch.Generator, device: torch.device | str = "cpu",
) -> torch.Tensor:
    """A binary low-frequency mask (H, W) with ⌈μHW⌉ or ⌊μHW⌋ ones (SPEC §7.3).

    Spectrum: complex Gaussian scaled by 1 / max(f, 1/max(H, W))^decay; inverse rFFT;
    the top-k pixels of the result become 1.
    """
    h, w = shape
    fy = torch.fft.fftfreq(h, device=device)[:, None]
    fx = torch.fft.rfftfreq(w, device=device)[None, :]  # the first w//2 + 1 entries of fftfreq
    freq = torch.sqrt(fx**2 + fy**2)
    scale = 1.0 / freq.clamp_min(1.0 / max(h, w)) ** decay
    noise = torch.randn((2, *freq.shape), generator=generator, device=device)
    spectrum = torch.complex(noise[0] * scale, noise[1] * scale)
    grey = torch.fft.irfft2(spectrum, s=(h, w))
    grey = (grey - grey.min()) / (grey.max() - grey.min()).clamp_min(1e-12)
    k = math.ceil(mu * h * w) if rng.random() < 0.5 else math.floor(mu * h * w)
    mask = torch.zeros(h * w, device=device)
    mask[grey.flatten().argsort(descending=True)[:k]] = 1
    return mask.view(h, w)


def fmix(
    x: torch.Tensor, targets: torch.Tensor, *, decay: float, rng: np.random.Generator,
    generator: torch.Generator,
) -> Mixed:
    """x̂ = M⊙x + (1-M)⊙x[ς'] with μ ~ U(0, 1) and one mask M for every image and channel.

    The targets mix with μ itself, not the realized mask mean: with one-hot targets this is
    the reference's μ·CE(·, y) + (1-μ)·CE(·, y[ς']) as one soft cross-entropy.
    """
    mu = rng.beta(1.0, 1.0)
    mask = fmix_mask(mu, x.shape[-2:], decay=decay, rng=rng, generator=generator, device=x.device)
    perm = torch.randperm(x.shape[0], generator=generator, device=x.device)
    mask = mask.to(x.dtype)
    return Mixed(mask * x + (1 - mask) * x[perm], mu * targets + (1 - mu) * targets[perm])
