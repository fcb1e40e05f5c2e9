"""The user's own image files: an ImageFolder tree or a CSV manifest.

Folder layouts (class order: sorted by folder name):
  root/<class>/<image>                         everything is training data
  root/train/<class>/<image> + root/test/<class>/<image>    with a test split

CSV manifest: a header with columns `path,label` and optionally `split` (train | test);
paths are relative to the CSV's folder (absolute paths work too); labels are class names
(all-integer labels are ordered numerically, others by name).

Images are decoded by `cache.decode_files` (any size and mode, in parallel, cached); more
than IN_MEMORY_BYTES of them stay on disk, memory-mapped (data/mapped.py). The
user's files are only opened for reading; every problem is a DataError naming the file or row.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .base import DataError, ImageSet
from .cache import decode_files
from .mapped import MappedImages

IN_MEMORY_BYTES = 2 << 30  # decoded images up to this size are held in memory, larger mapped
SHOW_SKIPPED = 20  # unreadable files printed on the console (all go to the run directory)
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp",
                    ".ppm", ".pgm", ".pbm", ".pnm"}


@dataclass(frozen=True)
class UserData:
    """train, test (None without a test split) and the unreadable files that were skipped."""

    train: ImageSet
    test: ImageSet | None
    skipped: tuple[str, ...] = ()


@dataclass(frozen=True)
class Listing:
    """Files to decode, with a class index and a split ('train' | 'test') each."""

    paths: list[Path]
    labels: list[int]
    splits: list[str]
    classes: tuple[str, ...]


# --------------------------------------------------------------------------- listing


def list_folder(root: Path) -> Listing:
    """The images of root/<class>/... or root/train|test/<class>/..., class order sorted."""
    if not root.is_dir():
        raise DataError(f"{root} is not a folder: expected root/<class>/<image files>")
    split_layout = (root / "train").is_dir() and bool(_class_dirs(root / "train"))
    parts = [("train", root / "train"), ("test", root / "test")] if split_layout else [
        ("train", root)]
    found = {split: _class_dirs(base) for split, base in parts if base.is_dir()}
    classes = tuple(sorted(found["train"]))
    if not classes:
        raise DataError(f"no class folders in {root}: expected root/<class>/<image files>")
    if len(classes) < 2:
        raise DataError(
            f"{root} has a single class folder ({classes[0]}): label noise needs at least 2 "
            "classes, one folder each"
        )
    paths, labels, splits = [], [], []
    for split, dirs in found.items():
        for name in sorted(dirs):
            if name not in classes:
                raise DataError(
                    f"{dirs[name]} is a class with no training folder: add "
                    f"{root / 'train' / name} or remove it"
                )
            files = _images_under(dirs[name])
            if not files:
                raise DataError(
                    f"{dirs[name]} holds no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}):"
                    " add images or remove the folder"
                )
            paths += files
            labels += [classes.index(name)] * len(files)
            splits += [split] * len(files)
    return Listing(paths, labels, splits, classes)


def _class_dirs(base: Path) -> dict[str, Path]:
    return {p.name: p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")}


def _images_under(folder: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out += [Path(dirpath) / f for f in sorted(filenames)
                if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_EXTENSIONS]
    return out


def list_csv(csv_path: Path, classes: tuple[str, ...] | None = None) -> Listing:
    """The rows of a `path,label[,split]` manifest, checked; see the module docstring."""
    if not csv_path.is_file():
        raise DataError(f"CSV manifest {csv_path} does not exist")
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c.strip().lower() for c in reader.fieldnames or []]
        missing = [c for c in ("path", "label") if c not in columns]
        if missing:
            raise DataError(
                f"{csv_path} lacks the column(s) {', '.join(missing)} (found: "
                f"{', '.join(columns) or 'no header'}); the first line must be path,label[,split]"
            )
        reader.fieldnames = columns
        rows = [(n, r) for n, r in enumerate(reader, start=2) if any((v or "").strip()
                                                                     for v in r.values())]
    if not rows:
        raise DataError(f"{csv_path} has a header but no rows: the dataset is empty")
    base = csv_path.parent
    seen: dict[Path, int] = {}
    paths, names, splits = [], [], []
    for line, row in rows:
        path, label = (row.get("path") or "").strip(), (row.get("label") or "").strip()
        split = (row.get("split") or "train").strip().lower() or "train"
        where = f"{csv_path} line {line}"
        if not path or not label:
            raise DataError(f"{where}: empty path or label; every row needs both")
        if split not in ("train", "test"):
            raise DataError(f"{where}: split {split!r} must be train or test")
        full = (base / path).resolve()
        if full in seen:
            raise DataError(f"{where}: {path} is listed twice (also line {seen[full]}); "
                            "keep one row per image")
        if not full.is_file():
            raise DataError(f"{where}: {full} does not exist; fix the path (relative to "
                            f"{base}) or remove the row")
        seen[full] = line
        paths.append(full)
        names.append(label)
        splits.append(split)
    classes = classes or _class_order(names)
    index = {c: i for i, c in enumerate(classes)}
    for (line, _), name in zip(rows, names, strict=True):
        if name not in index:
            raise DataError(f"{csv_path} line {line}: label {name!r} is not in the class list "
                            f"{list(classes)}; fix the label or the class list")
    if len(classes) < 2:
        raise DataError(f"{csv_path}: a single class ({classes[0]}); label noise needs at least 2")
    return Listing(paths, [index[n] for n in names], splits, tuple(classes))


def _class_order(names: list[str]) -> tuple[str, ...]:
    unique = set(names)
    if all(n.lstrip("-").isdigit() for n in unique):
        return tuple(sorted(unique, key=int))
    return tuple(sorted(unique))


# --------------------------------------------------------------------------- loading


def load_folder(root: str | os.PathLike, **kwargs) -> UserData:
    """An ImageFolder tree as UserData. kwargs: image_size, cache_dir, skip_bad, workers."""
    root = Path(root).expanduser()
    return load_listing(list_folder(root), data_dirs=[root], **kwargs)


def load_csv(csv_path: str | os.PathLike, *, classes=None, **kwargs) -> UserData:
    """A CSV manifest as UserData. kwargs: image_size, cache_dir, skip_bad, workers."""
    csv_path = Path(csv_path).expanduser()
    listing = list_csv(csv_path, tuple(classes) if classes else None)
    return load_listing(listing, data_dirs={p.parent for p in listing.paths}, **kwargs)


def load_listing(
    listing: Listing,
    *,
    data_dirs,
    image_size: int | None = None,
    cache_dir: str | None = None,
    skip_bad: bool = False,
    workers: int | None = None,
    interpolation: str = "bilinear",
    progress: bool = True,
    announce: bool = True,
) -> UserData:
    """Decode (or read from the cache) and split into train and test ImageSets.

    A decoded cache up to IN_MEMORY_BYTES is read into memory; a larger one stays on disk,
    memory-mapped (`MappedImages`), and batches are read from it as training needs them.
    Prints every skipped file, and the chosen size when the images decided it (announce: a
    training run; not when a finished run's data is read again)."""
    decoded = decode_files(listing.paths, image_size=image_size, cache_dir=cache_dir,
                           data_dirs=data_dirs, workers=workers, interpolation=interpolation,
                           progress=progress)
    if decoded.bad and not skip_bad:
        shown = "\n  ".join(f"{p}: {r}" for p, r in decoded.bad[:5])
        more = f"\n  ... and {len(decoded.bad) - 5} more" if len(decoded.bad) > 5 else ""
        raise DataError(
            f"{len(decoded.bad)} image file(s) could not be read:\n  {shown}{more}\n"
            "Fix or remove them, or set --skip_bad_images=true to leave them out "
            "(they are then listed in the run directory)."
        )
    if len(decoded.good) == 0:
        raise DataError(f"none of the {len(listing.paths)} image files could be read: "
                        "the dataset is empty")
    for path, reason in decoded.bad[:SHOW_SKIPPED]:
        print(f"promix: skipped {path}: {reason}")
    if len(decoded.bad) > SHOW_SKIPPED:
        print(f"promix: ... {len(decoded.bad) - SHOW_SKIPPED} more skipped files are listed in "
              "the run directory (skipped_files.txt)")
    if decoded.reason and announce:
        side = decoded.images.shape[-1]
        print(f"promix: training at {side}x{side}: {decoded.reason}")
    rows = decoded.rows if decoded.rows is not None else np.arange(len(decoded.good))
    if decoded.images[:1].nbytes * len(rows) > IN_MEMORY_BYTES:
        images = MappedImages(decoded.images, rows)
    else:
        images = torch.from_numpy(np.ascontiguousarray(decoded.images[rows]))
    labels = torch.tensor(listing.labels, dtype=torch.int64)[decoded.good]
    paths = [str(listing.paths[i]) for i in decoded.good]
    is_test = torch.from_numpy(np.array([listing.splits[i] == "test" for i in decoded.good],
                                        dtype=bool))

    def part(mask: torch.Tensor) -> ImageSet:
        idx = torch.nonzero(mask).flatten()
        subset = images.subset(idx) if isinstance(images, MappedImages) else images[idx]
        return ImageSet(subset, labels[idx], listing.classes,
                        tuple(paths[i] for i in idx.tolist()))

    if bool(is_test.all()):
        raise DataError("every image is in the test split: add training images")
    test = part(is_test) if bool(is_test.any()) else None
    skipped = tuple(f"{p}: {r}" for p, r in decoded.bad)
    return UserData(part(~is_test), test, skipped)
