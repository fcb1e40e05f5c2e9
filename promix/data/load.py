"""Build the `Dataset` a config asks for: load, subset, inject noise."""

from __future__ import annotations

import torch

from ..config import DataConfig
from .base import DataError, Dataset, ImageSet
from .embedded import load_mnist5k
from .noise import make_noise

# Datasets whose images must not be flipped (digits change meaning when mirrored).
NO_FLIP = {"mnist5k", "digits"}


def build_dataset(cfg: DataConfig) -> Dataset:
    if cfg.dataset == "mnist5k":
        train, test = load_mnist5k(test_fraction=cfg.test_fraction)
        mean, std = (0.1307,), (0.3081,)
    else:
        raise DataError(f"unknown dataset {cfg.dataset!r}")
    if cfg.per_class is not None:
        train = first_per_class(train, cfg.per_class)
    true = train.labels
    noisy, info = make_noise(
        true, kind=cfg.noise, rate=cfg.noise_rate, num_classes=train.num_classes,
        seed=cfg.noise_seed,
    )
    train = ImageSet(train.images, noisy, train.classes, train.paths)
    return Dataset(cfg.dataset, train, test, true_labels=true, mean=mean, std=std, noise=info)


def first_per_class(data: ImageSet, n: int) -> ImageSet:
    """The first n samples of every class, in the original order (the CPU protocol's subset)."""
    keep = torch.zeros(len(data), dtype=torch.bool)
    for c in range(data.num_classes):
        keep[torch.nonzero(data.labels == c).flatten()[:n]] = True
    return data.subset(torch.nonzero(keep).flatten())


def flip_default(cfg: DataConfig) -> bool:
    return cfg.flip if cfg.flip is not None else cfg.dataset not in NO_FLIP
