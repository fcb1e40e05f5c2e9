"""Verified labels for a subset of the training images (`--truth=FILE`), and where the data is.

A truth file is a CSV with a header and the columns `path,label` (or `index,label`): the label
a person checked, as a class name, for any subset of the training images. `path` is absolute
or relative to the data root (the image folder, or the folder of the CSV manifest), or to the
truth file's own folder; `index` is the row of the run's noisy_labels.csv. Rows naming an
existing image that is not in the training set (the held-out test part) are left out and
counted. With it, the report measures precision and recall of the flags on that subset.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data.base import DataError
from .data.paths import PathIndex


@dataclass(frozen=True)
class Truth:
    """Verified labels: index (M,) int rows of the training set, labels (M,) int classes."""

    index: np.ndarray
    labels: np.ndarray
    source: str  # what to call it in reports: "verified labels (FILE)"
    not_in_training: int = 0  # rows naming held-out images, left out

    def __len__(self) -> int:
        return len(self.index)


def data_base(dataset: str, root: str | None) -> Path | None:
    """The folder training paths are relative to: the image folder, or the CSV's folder."""
    if root is None or dataset not in ("folder", "csv"):
        return None
    root_path = Path(root)
    return root_path.parent if dataset == "csv" else root_path


def relative_path(path: str, base: Path | None) -> str:
    """`path` relative to `base` when it lies inside it, else unchanged."""
    if base is None:
        return path
    try:
        return Path(path).relative_to(base).as_posix()
    except ValueError:
        return path


def check_truth_file(path: str | None) -> None:
    """Fail before any work when --truth names no readable file."""
    if path is not None and not Path(path).is_file():
        raise DataError(f"--truth={path}: no such file; give a CSV with columns path,label")


def read_truth(path: str | os.PathLike, *, classes, size: int, paths=None,
               base: Path | None = None) -> Truth:
    """The verified subset of a training set, checked row by row (module docstring).

    classes: class names; size: training-set size; paths: absolute path of every training
    image (None for datasets without files, which then need the `index` column); base: the
    data root (data_base).
    """
    path = Path(path)
    check_truth_file(str(path))
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c.strip().lower() for c in reader.fieldnames or []]
        reader.fieldnames = columns
        rows = [(n, r) for n, r in enumerate(reader, start=2)
                if any((v or "").strip() for v in r.values())]
    key = "path" if "path" in columns else "index" if "index" in columns else None
    if key is None or "label" not in columns:
        raise DataError(f"{path}: the header must be path,label (or index,label); found "
                        f"{','.join(columns) or 'nothing'}")
    if key == "path" and paths is None:
        raise DataError(f"{path}: this dataset has no image files; use the columns index,label")
    where = PathIndex(paths, base) if paths is not None else None
    names = {c: j for j, c in enumerate(classes)}
    index, labels, seen, held_out = [], [], {}, 0
    for line, row in rows:
        value, label = (row.get(key) or "").strip(), (row.get("label") or "").strip()
        if label not in names:
            raise DataError(f"{path} line {line}: label {label!r} is not a class of this run "
                            f"({', '.join(classes)})")
        i = _row_index(value, key, where, path.parent, size)
        if i is None:
            held_out += 1
            continue
        if i in seen:
            raise DataError(f"{path} line {line}: {value} is verified twice (also line "
                            f"{seen[i]}); keep one row per image")
        seen[i] = line
        index.append(i)
        labels.append(names[label])
    if not index:
        raise DataError(f"{path}: none of its rows is a training image of this run")
    return Truth(np.asarray(index, dtype=np.int64), np.asarray(labels, dtype=np.int64),
                 source=f"verified labels ({path.name})", not_in_training=held_out)


def _row_index(value: str, key: str, where: PathIndex | None, here: Path,
               size: int) -> int | None:
    """The training row a truth row names; None for an image held out of training."""
    if key == "index":
        if not value.isdigit() or int(value) >= size:
            raise DataError(f"index {value!r} is not a row of noisy_labels.csv (0..{size - 1})")
        return int(value)
    i = where.find(value, near=here)
    if i is not None:
        return i
    if any(p.is_file() for p in where.candidates(value, near=here)):
        return None  # an image of the data, not in the training set (held out for testing)
    raise DataError(f"{value}: no such image in the data (paths are relative to "
                    f"{where.base or here}); fix the path or remove the row")
