"""Images already in memory: NumPy arrays or torch tensors, through the Python API.

    train = from_arrays(images, labels, classes=("cat", "dog"))

images: (N, H, W), (N, H, W, C) or (N, C, H, W) with C in {1, 3, 4} (alpha is dropped);
uint8, or float in [0, 1]. When both (N, H, W, C) and (N, C, H, W) fit (e.g. (N, 3, 4, 3)),
NumPy arrays are read as channels-last and tensors as channels-first.
labels: (N,) integers in [0, C) or class names (strings).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .base import DataError, ImageSet


def from_arrays(
    images,
    labels,
    classes: Sequence[str] | None = None,
    *,
    image_size: int | None = None,
) -> ImageSet:
    """An ImageSet (N, C, H, W) uint8 from arrays; resized to image_size×image_size if given.

    classes: names in label order. Default: the sorted unique names for string labels,
    '0'..'K-1' for integer labels (K = largest label + 1).
    """
    x = as_uint8_nchw(images)
    y, names = _labels(labels, classes)
    if len(x) != len(y):
        raise DataError(
            f"{len(x)} images but {len(y)} labels: pass one label per image (same length)"
        )
    if len(x) == 0:
        raise DataError("the arrays are empty: pass at least one image per class")
    if image_size is not None and x.shape[2:] != (image_size, image_size):
        x = resize(x, image_size)
    return ImageSet(x, y, names)


def as_uint8_nchw(images) -> torch.Tensor:
    """Images in any layout the module docstring allows -> (N, C, H, W) uint8, C in {1, 3}."""
    is_tensor = isinstance(images, torch.Tensor)
    x = images.detach().cpu() if is_tensor else torch.from_numpy(np.ascontiguousarray(images))
    if x.dim() == 3:
        x = x[:, None]
    elif x.dim() == 4:
        first, last = x.shape[1] in (1, 3, 4), x.shape[3] in (1, 3, 4)
        if last and (not first or not is_tensor):
            x = x.permute(0, 3, 1, 2)
        elif not first:
            raise DataError(
                f"images of shape {tuple(x.shape)}: expected (N, H, W), (N, H, W, C) or "
                "(N, C, H, W) with C = 1, 3 or 4 channels"
            )
    else:
        raise DataError(f"images must have 3 or 4 dimensions, got shape {tuple(x.shape)}")
    if x.shape[1] == 4:
        x = x[:, :3]  # drop alpha
    return _to_uint8(x).contiguous()


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    if x.dtype == torch.uint8:
        return x
    if x.dtype.is_floating_point:
        if x.numel() and (x.min() < 0 or x.max() > 1 or x.isnan().any()):
            raise DataError(
                f"float images must lie in [0, 1], got {float(x.min()):.3g}..{float(x.max()):.3g}:"
                " divide by 255, or pass uint8"
            )
        return (x * 255).round().to(torch.uint8)
    if x.dtype in (torch.bool, torch.complex64, torch.complex128):
        raise DataError(f"images must be uint8 or float in [0, 1], got {x.dtype}")
    if x.numel() and (x.min() < 0 or x.max() > 255):
        raise DataError(
            f"integer images must lie in 0..255, got {int(x.min())}..{int(x.max())}: "
            "scale them to 8 bits or to floats in [0, 1]"
        )
    return x.to(torch.uint8)


def _labels(labels, classes) -> tuple[torch.Tensor, tuple[str, ...]]:
    values = labels.tolist() if isinstance(labels, (np.ndarray, torch.Tensor)) else list(labels)
    if values and all(isinstance(v, str) for v in values):
        names = tuple(classes) if classes is not None else tuple(sorted(set(values)))
        index = {c: i for i, c in enumerate(names)}
        unknown = sorted(set(values) - index.keys())
        if unknown:
            raise DataError(
                f"label {unknown[0]!r} is not in the class list {list(names)}: fix the labels "
                "or pass the full class list"
            )
        return torch.tensor([index[v] for v in values], dtype=torch.int64), names
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        raise DataError("labels must be integers in [0, C) or class names (strings)")
    y = torch.tensor(values, dtype=torch.int64)
    if classes is None:
        k = int(y.max()) + 1 if len(y) else 0
        classes = [str(i) for i in range(k)]
    return y, tuple(str(c) for c in classes)


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, H, W) uint8 -> (N, C, size, size) uint8, antialiased bilinear, in chunks."""
    out = [
        torch.nn.functional.interpolate(
            images[i : i + 1024].float(), size=(size, size), mode="bilinear",
            antialias=True, align_corners=False,
        ).round().clamp(0, 255).to(torch.uint8)
        for i in range(0, len(images), 1024)
    ]
    return torch.cat(out)
