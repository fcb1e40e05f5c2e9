"""corrections.csv: a reviewer's decisions, read back and applied to the next run's data.

One row per reviewed training image, columns `path,index,given_label,decision,label`:
    path         the image file (empty for datasets without files: embedded digits, CIFAR)
    index        its position in the run's training set (label_issues.csv's `index`)
    given_label  the label the run trained on, as a class name
    decision     accept (the suggestion) | keep (the given label) | relabel (another class)
                 | invalid (not a valid image: dropped) | unsure (no verdict: ignored)
    label        the verified class name (accept, keep, relabel); empty for invalid, unsure

`apply_corrections` returns the Dataset the next run trains on: verified labels replace the
given ones and are marked in `Dataset.verified` (the trainer keeps them in the clean set and
the report never flags them); invalid images are dropped.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ..data.base import DataError, Dataset
from ..data.paths import PathIndex

COLUMNS = ("path", "index", "given_label", "decision", "label")
DECISIONS = ("accept", "keep", "relabel", "invalid", "unsure")
VERDICTS = ("accept", "keep", "relabel")  # decisions that verify a label


@dataclass(frozen=True)
class Correction:
    path: str  # "" when the dataset has no files
    index: int
    given_label: str
    decision: str  # one of DECISIONS
    label: str  # "" for invalid and unsure


def read_corrections(path: str | Path) -> list[Correction]:
    """Parse and check a corrections.csv; every problem is a DataError naming the line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"corrections file {path} does not exist")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise DataError(f"{path} lacks the column(s) {', '.join(missing)}; the header must "
                            f"be {','.join(COLUMNS)} (as `promix review` exports it)")
        rows = list(enumerate(reader, start=2))
    out = []
    for line, row in rows:
        where = f"{path} line {line}"
        decision = (row["decision"] or "").strip()
        label = (row["label"] or "").strip()
        if decision not in DECISIONS:
            raise DataError(f"{where}: decision {decision!r} must be one of {', '.join(DECISIONS)}")
        if decision in VERDICTS and not label:
            raise DataError(f"{where}: decision {decision} needs a label")
        if not (row["index"] or "").strip().isdigit():
            raise DataError(f"{where}: index {row['index']!r} must be a non-negative integer")
        out.append(Correction((row["path"] or "").strip(), int(row["index"]),
                              (row["given_label"] or "").strip(), decision, label))
    return out


def write_corrections(path: str | Path, corrections: list[Correction]) -> Path:
    """Write rows in the exported format (what the review page downloads)."""
    path = Path(path)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        writer.writerows((c.path, c.index, c.given_label, c.decision, c.label)
                         for c in corrections)
    return path


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def locate(keys: list[tuple[str, int]], data: Dataset, *, root: str | None = None,
           source: str = "corrections") -> list[int]:
    """The training-set position of every (path, index) key, one per sample.

    A key with a path is found by its file (data.paths: absolute, or relative to the data
    root `root`); a key without one (or any key, when the data has no files) by its index.
    """
    paths = data.train.paths
    files = None if paths is None else PathIndex(paths, root)
    where, seen = [], {}
    for n, (path, index) in enumerate(keys, start=2):
        if path and files is not None:
            i = files.find(path)
            if i is None:
                raise DataError(f"{source} line {n}: {path} is not in the training set")
        else:
            i = index
            if not 0 <= i < len(data.train):
                raise DataError(f"{source} line {n}: index {i} is outside the training set "
                                f"(0..{len(data.train) - 1}); were they made for other data?")
        if i in seen:
            raise DataError(f"{source} line {n}: sample {i} is already on line {seen[i]}; "
                            "keep one row per image")
        seen[i] = n
        where.append(i)
    return where


def match_rows(corrections: list[Correction], data: Dataset, *, root: str | None = None,
               source: str = "corrections") -> list[int]:
    """`locate` the corrections, checking that each one's given_label is the label the
    dataset gives that image (otherwise they belong to other data or labels)."""
    where = locate([(c.path, c.index) for c in corrections], data, root=root, source=source)
    for n, (c, i) in enumerate(zip(corrections, where, strict=True), start=2):
        given = data.classes[int(data.train.labels[i])]
        if c.given_label and c.given_label != given:
            raise DataError(f"{source} line {n}: given_label {c.given_label!r} but the data "
                            f"labels sample {i} {given!r}: the corrections were made for other "
                            "data or labels (same dataset, noise and per_class settings?)")
    return where


def apply_corrections(data: Dataset, corrections: list[Correction], *,
                      root: str | None = None, source: str = "corrections") -> Dataset:
    """The dataset with verified labels in place (marked in `verified`), invalid images
    dropped, unsure rows ignored. Labels must be class names of the dataset."""
    where = match_rows(corrections, data, root=root, source=source)
    index = {name: j for j, name in enumerate(data.classes)}
    labels = data.train.labels.clone()
    verified = (torch.zeros(len(labels), dtype=torch.bool) if data.verified is None
                else data.verified.clone())
    keep = torch.ones(len(labels), dtype=torch.bool)
    for n, (c, i) in enumerate(zip(corrections, where, strict=True), start=2):
        if c.decision in VERDICTS:
            if c.label not in index:
                raise DataError(f"{source} line {n}: label {c.label!r} is not a class of the "
                                f"data ({', '.join(data.classes)})")
            labels[i], verified[i] = index[c.label], True
        elif c.decision == "invalid":
            keep[i] = False
    if not keep.any():
        raise DataError(f"{source} marks every training image invalid: nothing left to train")
    train = replace(data.train, labels=labels)
    kept = torch.nonzero(keep).flatten()
    return replace(
        data, train=train.subset(kept), verified=verified[kept],
        true_labels=None if data.true_labels is None else data.true_labels[kept],
        label_prior=None if data.label_prior is None else data.label_prior[kept],
        noise={**data.noise, "corrections": summarize(corrections)},
    )


def summarize(corrections: list[Correction]) -> dict:
    """Counts per decision, and how many verdicts changed the given label."""
    counts = {d: sum(c.decision == d for c in corrections) for d in DECISIONS}
    changed = sum(c.decision in VERDICTS and c.label != c.given_label for c in corrections)
    return {"rows": len(corrections), **counts, "changed": changed}


def measured_detection(corrections: list[Correction], where: list[int], labels, issues) -> dict:
    """How a run's flags fare on the images a person verified: the verified subset is the
    truth (label ≠ given_label means the given label was wrong). where: each correction's
    sample index (`match_rows`); labels: (N,) the run's given labels; issues: its
    LabelIssues. Returns detection_metrics on the subset plus its size ("verified")."""
    import numpy as np

    from ..issues import detection_metrics

    rows = [(i, c) for c, i in zip(corrections, where, strict=True) if c.decision in VERDICTS]
    index = np.array([i for i, _ in rows], dtype=np.int64)
    wrong = np.array([c.label != c.given_label for _, c in rows], dtype=bool)
    if len(index) == 0:
        return {"verified": 0}
    metrics = detection_metrics(issues.label_quality[index], issues.is_label_issue[index], wrong)
    return {"verified": len(index), **metrics}
