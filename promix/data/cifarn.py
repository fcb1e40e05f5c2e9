"""CIFAR-N human labels (UCSC-REAL/cifar-10-100n): CIFAR-10_human.pt and CIFAR-100_human.pt.

The files are torch pickles of a dict of NumPy int64 arrays (CIFAR-100: possibly lists of
ints), aligned to the standard CIFAR training order. They are loaded with
`torch.load(weights_only=True)` and only the NumPy globals an int array needs allowed, so a
tampered file cannot run code; anything else in the file is refused.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import torch

from ..config import HumanNoise
from .base import DataError
from .noise import noise_report

try:  # NumPy 2 moved the array internals to numpy._core
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - NumPy 1.x
    from numpy.core.multiarray import _reconstruct

# CLI name (config.HumanNoise) -> key in the .pt file (SPEC §8). aggre/worst/rand* exist
# only for CIFAR-10.
KEYS: dict[HumanNoise, str] = {
    "clean": "clean_label",
    "aggre": "aggre_label",
    "worst": "worse_label",
    "rand1": "random_label1",
    "rand2": "random_label2",
    "rand3": "random_label3",
    "noisy100": "noisy_label",
}


def _allowed_globals() -> list:
    """What a pickled int64 NumPy array needs, under both NumPy 1 and 2 module names."""
    allowed = [
        (_reconstruct, "numpy.core.multiarray._reconstruct"),
        (_reconstruct, "numpy._core.multiarray._reconstruct"),
        np.ndarray,
        np.dtype,
    ]
    dtypes = getattr(np, "dtypes", None)  # NumPy >= 1.25 pickles dtype classes by name
    if dtypes is not None:
        allowed += [dtypes.Int64DType, dtypes.Int32DType]
    return allowed


def read_label_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The label arrays in a CIFAR-N .pt file, as {key: (N,) int64}. Never executes code."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(
            f"CIFAR-N label file {path} does not exist: download CIFAR-10_human.pt or "
            "CIFAR-100_human.pt from github.com/UCSC-REAL/cifar-10-100n and pass --noise_file"
        )
    try:
        with torch.serialization.safe_globals(_allowed_globals()):
            obj = torch.load(path, weights_only=True, map_location="cpu")
    except (pickle.UnpicklingError, RuntimeError, ValueError, EOFError, OSError) as e:
        raise DataError(
            f"{path}: refused to load: it is not a CIFAR-N label file of NumPy int arrays, or "
            f"it holds objects that could run code. Use the official file. ({_first_line(e)})"
        ) from e
    if not isinstance(obj, dict):
        raise DataError(
            f"{path} holds a {type(obj).__name__}, not a dict of label arrays: "
            "use the official CIFAR-10_human.pt / CIFAR-100_human.pt"
        )
    return {str(k): _as_labels(v, f"{path}[{k!r}]") for k, v in obj.items()}


def _first_line(e: Exception) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    unsupported = [ln for ln in lines if "GLOBAL" in ln or "but got" in ln]
    return (unsupported or lines or [type(e).__name__])[0][:200]


def _as_labels(value: object, where: str) -> np.ndarray:
    """A 1-d int64 array from an int array, a list of ints or an int tensor."""
    if isinstance(value, torch.Tensor):
        value = value.numpy()
    if isinstance(value, (list, tuple)) and all(isinstance(v, (int, np.integer)) for v in value):
        value = np.asarray(value, dtype=np.int64)
    if not isinstance(value, np.ndarray) or value.ndim != 1 or value.dtype.kind not in "iu":
        kind = getattr(value, "dtype", type(value).__name__)
        raise DataError(f"{where} is {kind}, not a 1-d array of integer labels")
    return value.astype(np.int64)


def cifarn_labels(
    path: str | os.PathLike, noise: str, train_labels: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, dict]:
    """Noisy training labels (N,) int64 for CLI noise name `noise`, and the noise report.

    train_labels: (N,) the dataset's own training labels, in the standard order; the file's
    clean_label must equal them.
    """
    if noise not in KEYS:
        raise DataError(f"unknown CIFAR-N noise {noise!r}: use one of {', '.join(KEYS)}")
    arrays = read_label_file(path)
    key = KEYS[noise]
    expected = "CIFAR-100_human.pt" if noise == "noisy100" else "CIFAR-10_human.pt"
    for needed in ("clean_label", key):
        if needed not in arrays:
            raise DataError(
                f"{path} has no {needed!r} (keys: {', '.join(sorted(arrays))}); "
                f"noise={noise} needs {expected}"
            )
    clean, noisy = (torch.from_numpy(arrays[k]) for k in ("clean_label", key))
    n = len(train_labels)
    for k, a in (("clean_label", clean), (key, noisy)):
        if len(a) != n or a.min() < 0 or a.max() >= num_classes:
            raise DataError(
                f"{path}[{k!r}] has {len(a)} labels in {int(a.min())}..{int(a.max())}; the "
                f"training set has {n} images and {num_classes} classes: wrong file for this "
                "dataset?"
            )
    if not torch.equal(clean, train_labels):
        first = int(torch.nonzero(clean != train_labels)[0])
        raise DataError(
            f"{path}: clean_label differs from the dataset's training labels (first at index "
            f"{first}): the images are not in the standard CIFAR order, or the file belongs to "
            "the other CIFAR; CIFAR-N needs the full, unshuffled training set"
        )
    info = noise_report(clean, noisy, num_classes, kind=noise, key=key, file=str(path))
    return noisy, info
