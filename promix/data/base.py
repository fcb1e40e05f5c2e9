"""The one in-memory form every dataset takes: uint8 image tensors plus labels.

Every loader (embedded MNIST, CIFAR, CIFAR-N, image folders, CSV manifests, arrays) returns
an `ImageSet` or a `Dataset`; the trainer never sees anything else. Images stay uint8
`(N, C, H, W)` so CIFAR-10's 50,000 training images take 150 MB and move to the device once.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from .mapped import MappedImages


class DataError(ValueError):
    """Bad user input: the message names the file, row or array and says how to fix it."""


@dataclass(frozen=True)
class ImageSet:
    """Images with one label each.

    images: (N, C, H, W) uint8, C in {1, 3}: a tensor, or `MappedImages` (on disk, read a
        batch at a time) for data larger than memory.
    labels: (N,) int64 in [0, len(classes)).
    classes: class names, index = label.
    paths: where each image came from (None for arrays and CIFAR).
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    paths: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        check_image_set(self.images, self.labels, self.classes, self.paths)

    def __len__(self) -> int:
        return self.labels.shape[0]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, index: torch.Tensor) -> ImageSet:
        """The samples at `index` (a 1-d long tensor), in that order."""
        paths = None if self.paths is None else tuple(self.paths[i] for i in index.tolist())
        images = (self.images.subset(index) if isinstance(self.images, MappedImages)
                  else self.images[index])
        return replace(self, images=images, labels=self.labels[index], paths=paths)


@dataclass(frozen=True)
class Dataset:
    """What training needs: a training set with its (noisy) labels, and an optional test set.

    train.labels are the labels to train on, the noisy ones. true_labels, when known
    (benchmarks, synthetic noise, CIFAR-N), are used for diagnostics only: they never reach
    the training step.
    mean, std: per-channel normalization in [0, 1] pixel units; computed from the training
    images when a loader does not know them.
    """

    name: str
    train: ImageSet
    test: ImageSet | None = None
    true_labels: torch.Tensor | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    noise: dict = field(default_factory=dict)  # how the labels were corrupted, for the run dir
    skipped: tuple[str, ...] = ()  # unreadable files left out (skip_bad_images), for the run dir
    # (N,) bool: labels a person verified (corrections.csv); always selected, never flagged
    verified: torch.Tensor | None = None
    # (N,) float in (0, 1]: P(given label | several annotators); CSS ranks by loss - log(prior)
    label_prior: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if len(self.train) == 0:
            raise DataError(f"dataset {self.name!r}: the training set is empty")
        if self.true_labels is not None and self.true_labels.shape != self.train.labels.shape:
            raise DataError(
                f"dataset {self.name!r}: {len(self.true_labels)} true labels for "
                f"{len(self.train)} training images"
            )
        for name in ("verified", "label_prior"):
            mask = getattr(self, name)
            if mask is not None and mask.shape != self.train.labels.shape:
                raise DataError(f"dataset {self.name!r}: {name} has shape {tuple(mask.shape)}, "
                                f"expected ({len(self.train)},)")
        if self.test is not None and self.test.classes != self.train.classes:
            raise DataError(f"dataset {self.name!r}: test and train class lists differ")

    @property
    def classes(self) -> tuple[str, ...]:
        return self.train.classes

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(mean, std) per channel, from the training images when not given."""
        if self.mean is not None and self.std is not None:
            return self.mean, self.std
        return channel_stats(self.train.images)


def channel_stats(images: torch.Tensor, chunk_bytes: int = 256 << 20
                  ) -> tuple[tuple[float, ...], ...]:
    """Per-channel mean and std of uint8 images (N, C, H, W), in [0, 1] units, in chunks of
    at most `chunk_bytes` of float64 (memory stays flat for any image count and size)."""
    c = images.shape[1]
    chunk = max(1, chunk_bytes // (8 * c * images.shape[2] * images.shape[3]))
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for start in range(0, images.shape[0], chunk):
        x = images[start : start + chunk].to(torch.float64) / 255
        total += x.sum(dim=(0, 2, 3))
        total_sq += x.square().sum(dim=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = (total_sq / count - mean.square()).clamp_min(1e-12).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def check_image_set(images, labels, classes, paths) -> None:
    """Validate once, at the boundary, with messages that say what to do."""
    if not isinstance(images, (torch.Tensor, MappedImages)) or images.dtype != torch.uint8 or \
            images.dim() != 4:
        raise DataError(
            "images must be a uint8 tensor of shape (N, C, H, W); got "
            f"{getattr(images, 'dtype', type(images).__name__)} "
            f"{tuple(getattr(images, 'shape', ()))}"
        )
    if images.shape[1] not in (1, 3):
        raise DataError(f"images must have 1 or 3 channels, got {images.shape[1]}")
    if not isinstance(labels, torch.Tensor) or labels.dim() != 1:
        raise DataError("labels must be a 1-d integer tensor")
    if labels.dtype != torch.int64:
        raise DataError(f"labels must be int64, got {labels.dtype}")
    if labels.shape[0] != images.shape[0]:
        raise DataError(
            f"{images.shape[0]} images but {labels.shape[0]} labels: the arrays must have "
            "the same length"
        )
    if len(classes) < 2:
        raise DataError(
            f"need at least 2 classes to find wrong labels, got {len(classes)}: {list(classes)}"
        )
    if labels.numel() and (labels.min() < 0 or labels.max() >= len(classes)):
        bad = labels[(labels < 0) | (labels >= len(classes))][0].item()
        raise DataError(
            f"label {bad} is not in the class list (0..{len(classes) - 1}); "
            "pass the full class list or fix the labels"
        )
    if paths is not None and len(paths) != images.shape[0]:
        raise DataError(f"{len(paths)} paths for {images.shape[0]} images")
