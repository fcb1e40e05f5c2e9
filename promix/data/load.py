"""Build the `Dataset` a config asks for: load, hold out a test set, subset, inject noise.

Datasets: digits and mnist5k (embedded), cifar10, cifar100 (folder or .tar.gz, --download), folder
(ImageFolder tree), csv (manifest); arrays through `dataset_from_arrays`.
Noise: synthetic (none, sym, sym_exact, asym, idn; see noise.py) or CIFAR-N human labels
(clean, aggre, worst, rand1..3, noisy100) read from `noise_file`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import DataConfig
from .arrays import from_arrays, resize
from .base import DataError, Dataset, ImageSet
from .cifar import load_cifar
from .cifarn import KEYS as CIFARN_KEYS
from .cifarn import cifarn_labels
from .clothing1m import load_clothing1m
from .embedded import load_digits, load_mnist5k, stratified_split
from .folder import load_csv, load_folder
from .noise import make_noise, noise_report

DATASETS = ("mnist5k", "digits", "cifar10", "cifar100", "folder", "csv", "clothing1m")
# Datasets whose images must not be flipped (digits change meaning when mirrored).
NO_FLIP = {"mnist5k", "digits"}
# SPEC §7.1: per-channel mean and std in [0, 1] units.
CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261)),
    "cifar100": ((0.507, 0.487, 0.441), (0.267, 0.256, 0.276)),
}
MNIST_STATS = ((0.1307,), (0.3081,))
SPLIT_SEED = 0  # the held-out test set does not move with the noise seed


@dataclass(frozen=True)
class Loaded:
    train: ImageSet
    test: ImageSet | None
    stats: tuple[tuple[float, ...], tuple[float, ...]] | tuple[None, None] = (None, None)
    superclass: tuple[int, ...] | None = None  # CIFAR-100 coarse class of every fine class
    skipped: tuple[str, ...] = ()


def resize_filter(cfg: DataConfig) -> str:
    """The filter image files are resized with: the config's (a timm model's own, set by its
    plan), else bilinear. Training, `promix predict` and Run.predict_proba all use it."""
    return cfg.interpolation or "bilinear"


def build_dataset(cfg: DataConfig, *, announce: bool = True) -> Dataset:
    """The training set with noisy labels (and true labels when known), and a test set.
    announce: print the training size when the images decide it (False: a finished run's
    data read again, by eval, issues or review)."""
    _uses_cifarn(cfg.dataset, cfg)  # check the noise settings before a long load
    from ..review import check_review_inputs, with_review_inputs

    check_review_inputs(cfg)  # the annotator and corrections files, before a long load
    return with_review_inputs(prepare(cfg.dataset, load_raw(cfg, announce=announce), cfg), cfg)


def load_raw(cfg: DataConfig, *, announce: bool = True) -> Loaded:
    """The clean data of cfg.dataset, before subsetting and noise."""
    name = cfg.dataset
    if name == "mnist5k":
        train, test = load_mnist5k(test_fraction=cfg.test_fraction)
        return Loaded(train, test, MNIST_STATS)
    if name == "digits":
        return Loaded(*load_digits(test_fraction=cfg.test_fraction))
    if name == "arrays":
        raise DataError("this run trained on in-memory arrays (promix.train(images, labels)), "
                        "which the run directory does not hold: use promix.Run.load(run_dir)")
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}: use one of {', '.join(DATASETS)}")
    if cfg.root is None:
        raise DataError(f"dataset={name} needs --root: {_ROOT_HELP[name]}")
    if name in CIFAR_STATS:
        data = load_cifar(name, cfg.root, download=cfg.download)
        return Loaded(data.train, data.test, CIFAR_STATS[name], data.superclass)
    options = dict(image_size=cfg.image_size, cache_dir=cfg.cache_dir,
                   skip_bad=cfg.skip_bad_images, interpolation=resize_filter(cfg),
                   announce=announce)
    if name == "clothing1m":  # subset before decoding: the full list is 1M files
        user = load_clothing1m(cfg.root, per_class=cfg.per_class, **options)
    else:
        user = (load_folder if name == "folder" else load_csv)(cfg.root, **options)
    return Loaded(user.train, user.test, skipped=user.skipped)


_ROOT_HELP = {
    "cifar10": "a folder holding cifar-10-python.tar.gz or cifar-10-batches-py/, or the archive",
    "cifar100": "a folder holding cifar-100-python.tar.gz or cifar-100-python/, or the archive",
    "folder": "the folder holding one sub-folder of images per class",
    "csv": "the CSV file with columns path,label[,split]",
    "clothing1m": "the Clothing1M folder (images/ and the *_kv.txt / *_key_list.txt files)",
}


def prepare(name: str, data: Loaded, cfg: DataConfig) -> Dataset:
    """Resize, hold out a stratified test set when there is none, subset, add noise.

    Synthetic noise is drawn after the per_class subset (as the CPU protocol does); CIFAR-N
    labels are aligned to the full training set, so they are read before it.
    """
    train, test = data.train, data.test
    if cfg.image_size is not None and train.images.shape[2:] != (cfg.image_size,) * 2:
        train = _resized(train, cfg.image_size)
        test = None if test is None else _resized(test, cfg.image_size)
    if test is None:
        train, test = stratified_split(train, cfg.test_fraction, SPLIT_SEED)
    if _uses_cifarn(name, cfg):
        noisy, info = cifarn_labels(cfg.noise_file, cfg.noise, train.labels, train.num_classes)
        if cfg.per_class is not None:
            keep = first_per_class(train.labels, train.num_classes, cfg.per_class)
            train, noisy = train.subset(keep), noisy[keep]
            info = {**info, **noise_report(train.labels, noisy, train.num_classes),
                    "per_class": cfg.per_class}
    else:
        if cfg.per_class is not None:
            train = train.subset(first_per_class(train.labels, train.num_classes, cfg.per_class))
        noisy, info = make_noise(
            train.labels, kind="none" if cfg.noise == "clean" else cfg.noise,
            rate=cfg.noise_rate, num_classes=train.num_classes, seed=cfg.noise_seed,
            dataset=name, superclass=data.superclass,
            images=train.images if cfg.noise == "idn" else None,
        )
    # The given labels are truth only when promix corrupted them itself (synthetic noise) or
    # CIFAR-N supplies clean labels; otherwise nothing is known about their errors.
    known = _uses_cifarn(name, cfg) or cfg.noise not in ("none", "clean")
    true = train.labels if known else None
    if not known:  # no realized rate or identity matrix that would read as "no noise"
        info = {"kind": cfg.noise, "known": False,
                "note": "the given labels are used as they are; how many are wrong is unknown "
                        "(the run's issues_summary.json has the estimate)"}
    train = ImageSet(train.images, noisy, train.classes, train.paths)
    mean, std = data.stats
    return Dataset(name, train, test, true_labels=true, mean=mean, std=std, noise=info,
                   skipped=data.skipped)


def _uses_cifarn(name: str, cfg: DataConfig) -> bool:
    """Whether the labels come from a CIFAR-N file; checks the noise / noise_file pair."""
    if cfg.noise not in CIFARN_KEYS or (cfg.noise == "clean" and cfg.noise_file is None):
        if cfg.noise_file is not None:
            raise DataError(
                f"noise_file is set but noise={cfg.noise}: set --noise to one of "
                f"{', '.join(CIFARN_KEYS)} to use it, or drop --noise_file"
            )
        return False
    if cfg.noise_file is None:
        raise DataError(
            f"noise={cfg.noise} reads CIFAR-N labels: pass --noise_file=PATH to "
            "CIFAR-10_human.pt or CIFAR-100_human.pt"
        )
    if name not in CIFAR_STATS:
        raise DataError(f"CIFAR-N noise ({cfg.noise}) applies to cifar10 and cifar100 only")
    return True


def _resized(data: ImageSet, size: int) -> ImageSet:
    return ImageSet(resize(data.images, size), data.labels, data.classes, data.paths)


def first_per_class(labels: torch.Tensor, num_classes: int, n: int) -> torch.Tensor:
    """Indices of the first n samples of every class, in the original order (CPU protocol)."""
    if n < 1:
        raise DataError(f"per_class must be at least 1, got {n}")
    keep = torch.zeros(len(labels), dtype=torch.bool)
    for c in range(num_classes):
        keep[torch.nonzero(labels == c).flatten()[:n]] = True
    return torch.nonzero(keep).flatten()


def dataset_from_arrays(
    images,
    labels,
    classes=None,
    *,
    cfg: DataConfig | None = None,
    test_images=None,
    test_labels=None,
    name: str = "arrays",
) -> Dataset:
    """A Dataset from in-memory arrays (see arrays.from_arrays), with cfg's noise and split.

    Without test arrays, cfg.test_fraction of every class is held out. Normalization is
    computed from the training images.
    """
    cfg = cfg or DataConfig(dataset=name, noise="none")
    train = from_arrays(images, labels, classes, image_size=cfg.image_size)
    test = None
    if test_images is not None:
        test = from_arrays(test_images, test_labels, train.classes, image_size=cfg.image_size)
        if test.images.shape[1:] != train.images.shape[1:]:
            raise DataError(
                f"test images are {tuple(test.images.shape[1:])}, training images "
                f"{tuple(train.images.shape[1:])}: pass image_size to resize both"
            )
    return prepare(name, Loaded(train, test), cfg)


def flip_default(cfg: DataConfig) -> bool:
    return cfg.flip if cfg.flip is not None else cfg.dataset not in NO_FLIP
