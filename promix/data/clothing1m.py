"""Clothing1M (Xiao et al., 2015) in the layout of its official release.

    root/
      images/0/00/<id>.jpg ... images/9/99/<id>.jpg
      noisy_label_kv.txt        "images/0/61/<id>.jpg 11": the web label of ~1M images
      clean_label_kv.txt        the same format: the human-verified label of ~72k images
      noisy_train_key_list.txt  one image path per line: the noisy training set
      clean_test_key_list.txt   the clean test set (10,526 images)
      category_names_eng.txt    the 14 class names, one per line (optional)

The annotation files may also sit in root/annotations/. Training uses every image of
noisy_train_key_list.txt with its noisy label; the test set is clean_test_key_list.txt with
its clean labels (the protocol of the ProMix and DivideMix papers). Paths in the lists are
relative to root. Decoding goes through `folder.load_listing` (parallel, cached, memory-mapped
beyond IN_MEMORY_BYTES).
"""

from __future__ import annotations

import os
from pathlib import Path

from .base import DataError
from .folder import Listing, UserData, load_listing

CLASSES = ("T-Shirt", "Shirt", "Knitwear", "Chiffon", "Sweater", "Hoodie", "Windbreaker",
           "Jacket", "Downcoat", "Suit", "Shawl", "Dress", "Vest", "Underwear")
FILES = ("noisy_label_kv.txt", "clean_label_kv.txt", "noisy_train_key_list.txt",
         "clean_test_key_list.txt")


def _annotations(root: Path) -> Path:
    for base in (root, root / "annotations"):
        if all((base / f).is_file() for f in FILES):
            return base
    missing = [f for f in FILES if not (root / f).is_file()]
    raise DataError(f"{root} is not a Clothing1M folder: {', '.join(missing)} missing (looked "
                    f"in {root} and {root / 'annotations'}; docs/backbones.md shows the layout)")


def _read_kv(path: Path) -> dict[str, int]:
    out = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise DataError(f"{path} line {n}: expected '<image path> <label>', got {line!r}")
        label = int(parts[1])
        if not 0 <= label < len(CLASSES):
            raise DataError(f"{path} line {n}: label {label} is not in 0..{len(CLASSES) - 1}")
        out[parts[0]] = label
    return out


def _read_keys(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]


def list_clothing1m(root: str | os.PathLike) -> Listing:
    """The noisy training list (noisy labels) and the clean test list (clean labels)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root} is not a folder: pass the Clothing1M root as --root")
    ann = _annotations(root)
    noisy = _read_kv(ann / "noisy_label_kv.txt")
    clean = _read_kv(ann / "clean_label_kv.txt")
    paths, labels, splits = [], [], []
    for split, keys, table, name in (
            ("train", _read_keys(ann / "noisy_train_key_list.txt"), noisy, "noisy_label_kv"),
            ("test", _read_keys(ann / "clean_test_key_list.txt"), clean, "clean_label_kv")):
        for key in keys:
            if key not in table:
                raise DataError(f"{key} of the {split} list has no label in {name}.txt")
            paths.append(root / key)
            labels.append(table[key])
            splits.append(split)
    if "train" not in splits:
        raise DataError(f"{ann / 'noisy_train_key_list.txt'} lists no image")
    names = ann / "category_names_eng.txt"
    classes = tuple(_read_keys(names)) if names.is_file() else CLASSES
    if len(classes) != len(CLASSES):
        raise DataError(f"{names} names {len(classes)} classes; Clothing1M has {len(CLASSES)}")
    return Listing(paths, labels, splits, classes)


def first_per_class(listing: Listing, n: int | None) -> Listing:
    """The first n training entries of each class (all test entries), before any decoding."""
    if n is None:
        return listing
    seen = [0] * len(listing.classes)
    keep = []
    for i, (label, split) in enumerate(zip(listing.labels, listing.splits, strict=True)):
        if split == "train":
            seen[label] += 1
            if seen[label] > n:
                continue
        keep.append(i)
    return Listing([listing.paths[i] for i in keep], [listing.labels[i] for i in keep],
                   [listing.splits[i] for i in keep], listing.classes)


def load_clothing1m(root: str | os.PathLike, *, per_class: int | None = None,
                    **kwargs) -> UserData:
    """Clothing1M as UserData; per_class: keep the first n noisy training images of each
    class (listed order) before decoding. kwargs: folder.load_listing's."""
    root = Path(root).expanduser()
    listing = first_per_class(list_clothing1m(root), per_class)
    return load_listing(listing, data_dirs=[root], **kwargs)
