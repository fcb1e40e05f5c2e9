"""Synthetic label-noise models (SPEC §8): sym, sym_exact, asym, idn.

Every model is a pure function of the true labels and a seed: the same seed gives the same
noisy labels. `make_noise` is the one public entry; it validates its inputs once and
returns the noisy labels with a report (realized rate, transition matrix, per-class rates)
that the trainer writes to the run directory.

- sym: the reference's semantics. ⌊rN⌋ shuffled samples are relabelled uniformly over all
  C classes, the true class included, so the realized rate is r(1 - 1/C). Python's `random`
  drives it, as in the reference (which seeds it with 123).
- sym_exact: the same ⌊rN⌋ samples, each moved to one of the C - 1 *other* classes, so the
  realized rate is ⌊rN⌋/N.
- asym: class-conditional flips. CIFAR-10: the same ⌊rN⌋ subset as sym mapped with
  truck→automobile, bird→airplane, deer→horse, cat↔dog. CIFAR-100: each sample flipped with
  probability r to the next fine class of its superclass (cyclically). Other data: pass
  `class_map`.
- idn: instance-dependent noise, the part-dependent protocol of Xia et al. (NeurIPS 2020).
"""

from __future__ import annotations

import random
import typing
from collections.abc import Mapping, Sequence

import torch

from ..config import SyntheticNoise
from ..issues import transition_matrix
from .base import DataError

KINDS = typing.get_args(SyntheticNoise)  # written once, in config.py

# SPEC §8: truck(9)→automobile(1), bird(2)→airplane(0), deer(4)→horse(7), cat(3)↔dog(5).
CIFAR10_ASYM = {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}

IDN_STD = 0.1  # std of the per-sample flip rate around r (Xia et al. 2020)
IDN_SIDE = 32  # idn projects images of at most this side (W is C × 3·side² × C floats)


def make_noise(
    true: torch.Tensor,
    *,
    kind: str,
    rate: float,
    num_classes: int,
    seed: int,
    dataset: str | None = None,
    class_map: Mapping[int, int] | Sequence[int] | None = None,
    superclass: Sequence[int] | None = None,
    images: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict]:
    """Noisy labels (N,) int64 and a report dict.

    true: (N,) int64 in [0, num_classes).
    rate: r in [0, 1]; its meaning per kind is in the module docstring.
    dataset: 'cifar10' or 'cifar100' picks the standard asym map.
    class_map: asym for any data: {source class: target class} or a length-C sequence.
    superclass: (C,) superclass index of every class (CIFAR-100's coarse labels):
        asym flips each class to the next class of its superclass.
    images: (N, C, H, W) uint8, needed by idn.
    The report has kind, rate, seed, realized_rate, transition_matrix (C×C list) and
    per_class_rate (C list: fraction of each true class whose label changed).
    """
    _check(true, kind, rate, num_classes, images)
    if kind in ("none", "clean"):
        noisy = true.clone()
    elif kind in ("sym", "sym_exact"):
        noisy = symmetric(true, rate, num_classes, seed, exact=kind == "sym_exact")
    elif kind == "asym":
        noisy = asymmetric(true, rate, num_classes, seed, dataset, class_map, superclass)
    else:
        noisy = instance_dependent(true, images, rate, num_classes, seed)
    return noisy, noise_report(true, noisy, num_classes, kind=kind, rate=rate, seed=seed)


def noise_report(
    true: torch.Tensor, noisy: torch.Tensor, num_classes: int, **fields: object
) -> dict:
    """The realized noise: overall and per-class flip rates and the transition matrix."""
    wrong = (noisy != true).to(torch.float64)
    counts = torch.bincount(true, minlength=num_classes).clamp_min(1)
    per_class = torch.bincount(true, weights=wrong, minlength=num_classes) / counts
    return {
        **fields,
        "realized_rate": float(wrong.mean()) if len(true) else 0.0,
        "transition_matrix": transition_matrix(true, noisy, num_classes).tolist(),
        "per_class_rate": per_class.tolist(),
    }


def _check(true, kind, rate, num_classes, images) -> None:
    if kind not in KINDS:
        raise DataError(f"unknown noise kind {kind!r}: use one of {', '.join(KINDS)}")
    if not 0 <= rate <= 1:
        raise DataError(f"noise rate must be in [0, 1], got {rate}")
    if num_classes < 2:
        raise DataError(f"label noise needs at least 2 classes, got {num_classes}")
    if true.dim() != 1 or true.dtype != torch.int64:
        raise DataError(f"true labels must be a 1-d int64 tensor, got {true.dtype} {true.shape}")
    if len(true) and (true.min() < 0 or true.max() >= num_classes):
        lo, hi = int(true.min()), int(true.max())
        raise DataError(f"true labels must lie in [0, {num_classes}); got {lo}..{hi}")
    if kind == "idn" and (images is None or images.shape[0] != len(true)):
        raise DataError("idn noise needs the training images (one per label): pass images=")


def _chosen(n: int, rate: float, rng: random.Random) -> list[int]:
    """The reference's subset: shuffle all indices, keep the first ⌊rN⌋."""
    idx = list(range(n))
    rng.shuffle(idx)
    return idx[: int(rate * n)]


def symmetric(
    true: torch.Tensor, rate: float, num_classes: int, seed: int, *, exact: bool = False
) -> torch.Tensor:
    """sym: relabel ⌊rN⌋ samples uniformly over all C (exact: over the C - 1 others)."""
    rng = random.Random(seed)
    noisy = true.tolist()
    for i in _chosen(len(noisy), rate, rng):
        if exact:
            # Draw among the other C - 1 classes: skip over the true one.
            j = rng.randint(0, num_classes - 2)
            noisy[i] = j + (j >= noisy[i])
        else:
            noisy[i] = rng.randint(0, num_classes - 1)
    return torch.tensor(noisy, dtype=torch.int64)


def asym_map(
    num_classes: int,
    dataset: str | None,
    class_map: Mapping[int, int] | Sequence[int] | None,
    superclass: Sequence[int] | None,
) -> list[int]:
    """The class→class flip target of every class, length C (identity where none)."""
    target = list(range(num_classes))
    if class_map is not None:
        items = class_map.items() if isinstance(class_map, Mapping) else enumerate(class_map)
        for src, dst in items:
            if not (0 <= int(src) < num_classes and 0 <= int(dst) < num_classes):
                raise DataError(f"class_map {src}->{dst} is outside 0..{num_classes - 1}")
            target[int(src)] = int(dst)
    elif superclass is not None:
        if len(superclass) != num_classes:
            raise DataError(f"superclass must give one group per class ({num_classes})")
        for group in sorted(set(superclass)):
            members = [c for c in range(num_classes) if superclass[c] == group]
            for k, c in enumerate(members):
                target[c] = members[(k + 1) % len(members)]
    elif dataset == "cifar10" and num_classes == 10:
        target = [CIFAR10_ASYM.get(c, c) for c in range(10)]
    else:
        raise DataError(
            f"asymmetric noise is defined for cifar10 and cifar100 only (dataset={dataset!r}); "
            "for other data pass class_map={source: target} or use noise=sym or idn"
        )
    return target


def asymmetric(true, rate, num_classes, seed, dataset, class_map, superclass) -> torch.Tensor:
    """asym: CIFAR-10 style (⌊rN⌋ subset, mapped) or per-sample with probability r (superclass)."""
    target = asym_map(num_classes, dataset, class_map, superclass)
    rng = random.Random(seed)
    noisy = true.tolist()
    if superclass is not None and class_map is None:
        # CIFAR-100 convention: each sample independently, with probability r.
        chosen = [i for i in range(len(noisy)) if rng.random() < rate]
    else:
        chosen = _chosen(len(noisy), rate, rng)
    for i in chosen:
        noisy[i] = target[noisy[i]]
    return torch.tensor(noisy, dtype=torch.int64)


def truncated_normal(n: int, mean: float, std: float, g: torch.Generator) -> torch.Tensor:
    """n draws of N(mean, std²) truncated to [0, 1], by rejection. (n,) float64."""
    out = torch.empty(0, dtype=torch.float64)
    while len(out) < n:
        x = mean + std * torch.randn(2 * (n - len(out)) + 16, generator=g, dtype=torch.float64)
        out = torch.cat([out, x[(x >= 0) & (x <= 1)]])
    return out[:n]


def instance_dependent(
    true: torch.Tensor, images: torch.Tensor, rate: float, num_classes: int, seed: int
) -> torch.Tensor:
    """idn (Xia et al. 2020, part-dependent protocol), per sample i with true class y:

    q_i ~ N(r, 0.1²) truncated to [0, 1]; W_y ~ N(0, 1) of shape (D, C) per class;
    p = softmax(x_i W_y) with p_y excluded; flip to class j with probability q_i p_j, keep
    y with probability 1 - q_i. x_i is the flattened image standardized per channel
    (images larger than 32×32 are average-pooled to 32×32 first, to bound W's size).
    """
    g = torch.Generator().manual_seed(seed)
    flip = truncated_normal(len(true), rate, IDN_STD, g).to(torch.float32)
    images = _at_most(images, IDN_SIDE)
    w = torch.randn(num_classes, images[0].numel(), num_classes, generator=g)
    # Standardize inside the projection: x W = (u / s) W - (m / s) W, u the raw pixels.
    mean, std = _pixel_stats(images)
    inv = (1 / std).repeat_interleave(images[0, 0].numel())  # (D,)
    shift = (mean / std).repeat_interleave(images[0, 0].numel())  # (D,)
    scores = torch.empty(len(true), num_classes)
    for c in range(num_classes):
        wc = w[c] * inv[:, None]  # (D, C)
        bias = shift @ w[c]  # (C,)
        members = torch.nonzero(true == c).flatten()
        for chunk in members.split(4096):
            scores[chunk] = images[chunk].flatten(1).float() @ wc - bias
    scores.scatter_(1, true[:, None], float("-inf"))
    p = flip[:, None] * scores.softmax(1)
    p.scatter_(1, true[:, None], (1 - flip)[:, None])
    return torch.multinomial(p, 1, generator=g).squeeze(1)


def _pixel_stats(images: torch.Tensor, sample: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of the raw uint8 pixels, from up to `sample` images. (C,), (C,)"""
    x = images[:: max(1, len(images) // sample)].float().transpose(0, 1).flatten(1)
    return x.mean(1), x.std(1).clamp_min(1e-3)


def _at_most(images: torch.Tensor, side: int) -> torch.Tensor:
    """Average-pool (N, C, H, W) uint8 images to at most side×side (uint8 out)."""
    if images.shape[2] <= side and images.shape[3] <= side:
        return images
    out = [
        torch.nn.functional.adaptive_avg_pool2d(images[i : i + 1024].float(), side)
        for i in range(0, len(images), 1024)
    ]
    return torch.cat(out).round().to(torch.uint8)
