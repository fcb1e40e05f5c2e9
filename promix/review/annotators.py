"""Several labels per image: the consensus, each annotator's accuracy and confusion.

Input CSV, either format (one row per image, or one per label):
    wide:  path|index, ann_1, ann_2, ...      an empty cell: that annotator did not label it
    long:  path|index, annotator, label
Labels are class names of the dataset. The math is pure NumPy over an (N, A) integer matrix
of labels (-1 = missing):

    majority_vote(labels, C)    most votes; ties go to the class whose voters agree most
                                often with the untied majority elsewhere
    dawid_skene(labels, C)      EM over one confusion matrix per annotator (Dawid & Skene,
                                1979), started from the majority vote
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.base import DataError

KEY_COLUMNS = ("path", "index")
LONG_COLUMNS = ("annotator", "label")


@dataclass(frozen=True)
class Annotations:
    """rows: one (path, index) per image ("" / -1 when absent); labels: (N, A) class names,
    "" where missing; annotators: (A,) names."""

    rows: list[tuple[str, int]]
    annotators: list[str]
    labels: np.ndarray  # (N, A) object array of class names


@dataclass(frozen=True)
class Consensus:
    """label: (N,) int consensus; posterior: (N, C) P(true class | labels); agreement: (N,)
    fraction of the image's annotators who gave the consensus; accuracy: (A,) estimated
    P(annotator right); confusion: (A, C, C) P(annotator says l | true j), rows j; counts:
    (A,) labels given by each annotator."""

    label: np.ndarray
    posterior: np.ndarray
    agreement: np.ndarray
    accuracy: np.ndarray
    confusion: np.ndarray
    counts: np.ndarray


def read_annotations(path: str | Path) -> Annotations:
    """Parse a wide or long annotator CSV (module docstring); errors name the line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"annotator file {path} does not exist")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in reader.fieldnames or ()]
        reader.fieldnames = columns
        records = list(enumerate(reader, start=2))
    if not records:
        raise DataError(f"{path} has no rows")
    if not any(c in columns for c in KEY_COLUMNS):
        raise DataError(f"{path} needs a path or index column to name the images (found: "
                        f"{', '.join(columns) or 'no header'})")
    long = all(c in columns for c in LONG_COLUMNS)
    names = (sorted({(r["annotator"] or "").strip() for _, r in records}) if long
             else [c for c in columns if c not in KEY_COLUMNS])
    if not names or "" in names:
        raise DataError(f"{path}: no annotator columns (wide format: path,ann_1,ann_2,...) or "
                        "an empty annotator name (long format: path,annotator,label)")
    where: dict[tuple[str, int], int] = {}
    table: list[dict[str, str]] = []
    for line, r in records:
        key = ((r.get("path") or "").strip(), _index(r.get("index"), path, line))
        if key == ("", -1):
            raise DataError(f"{path} line {line}: neither a path nor an index")
        if key not in where:
            where[key] = len(table)
            table.append({})
        row = table[where[key]]
        cells = {r["annotator"].strip(): r["label"]} if long else {a: r[a] for a in names}
        for a, value in cells.items():
            value = (value or "").strip()
            if value and row.get(a, value) != value:
                raise DataError(f"{path} line {line}: annotator {a} labels {key[0] or key[1]} "
                                f"twice ({row[a]!r} and {value!r})")
            if value:
                row[a] = value
    labels = np.array([[row.get(a, "") for a in names] for row in table], dtype=object)
    return Annotations(list(where), names, labels.reshape(len(table), len(names)))


def encode(labels: np.ndarray, classes, *, source: str = "annotations") -> np.ndarray:
    """Class names (N, A) -> int (N, A), -1 where empty; unknown names are a DataError."""
    index = {c: j for j, c in enumerate(classes)}
    unknown = sorted({v for v in labels.ravel() if v and v not in index})
    if unknown:
        raise DataError(f"{source}: label(s) {', '.join(map(repr, unknown[:5]))} are not classes "
                        f"of the data ({', '.join(classes)})")
    return np.vectorize(lambda v: index.get(v, -1), otypes=[np.int64])(labels)


def majority_vote(labels: np.ndarray, num_classes: int) -> Consensus:
    """labels: (N, A) int, -1 missing. Ties are broken by annotator reliability: each
    annotator's agreement with the majority on the untied images."""
    votes = _one_hot(labels, num_classes).sum(1)  # (N, C)
    top = votes.max(1, keepdims=True)
    untied = (votes == top).sum(1) == 1
    first = np.where(untied, votes.argmax(1), -1)
    reliability = _agreement_rate(labels, first)  # (A,)
    weighted = _one_hot(labels, num_classes) * reliability[None, :, None]
    tie_break = np.where(votes == top, weighted.sum(1), -np.inf)  # only among the tied tops
    label = tie_break.argmax(1)
    posterior = votes / np.maximum(votes.sum(1, keepdims=True), 1)
    return _consensus(labels, label, posterior, num_classes)


def dawid_skene(labels: np.ndarray, num_classes: int, *, iterations: int = 100,
                tol: float = 1e-6, smoothing: float = 0.01) -> Consensus:
    """Dawid-Skene EM. labels: (N, A) int, -1 missing. Every annotator a has a confusion
    matrix π_a[j, l] = P(says l | true j); the E-step's posterior T (N, C) ∝ p_j Π_a π_a[j,
    y_ia], the M-step's π_a and p are T-weighted counts (plus `smoothing` per cell)."""
    y = _one_hot(labels, num_classes)  # (N, A, C)
    t = majority_vote(labels, num_classes).posterior
    t = np.where(t.sum(1, keepdims=True) > 0, t, 1 / num_classes)
    for _ in range(iterations):
        prior = t.mean(0)
        counts = np.einsum("ij,iak->ajk", t, y) + smoothing  # (A, C, C)
        confusion = counts / counts.sum(2, keepdims=True)
        log_t = np.log(prior)[None] + np.einsum("iak,ajk->ij", y, np.log(confusion))
        new = np.exp(log_t - log_t.max(1, keepdims=True))
        new /= new.sum(1, keepdims=True)
        done = np.abs(new - t).max() < tol
        t = new
        if done:
            break
    return _consensus(labels, t.argmax(1), t, num_classes)


def consensus(labels: np.ndarray, num_classes: int, *, method: str = "dawid_skene") -> Consensus:
    """The combiner named by data.consensus."""
    if method == "dawid_skene":
        return dawid_skene(labels, num_classes)
    if method == "majority":
        return majority_vote(labels, num_classes)
    raise ValueError(f"unknown consensus {method!r}: use dawid_skene or majority")


def summary(c: Consensus, names: list[str], classes) -> dict:
    """annotators.json: per annotator its count, estimated accuracy and confusion matrix,
    and how often the annotators of an image agree."""
    return {
        "images": int(len(c.label)),
        "unanimous": int(np.sum(c.agreement == 1)),
        "mean_agreement": float(c.agreement.mean()),
        "classes": list(classes),
        "annotators": [
            {"name": n, "labels": int(c.counts[a]), "accuracy": round(float(c.accuracy[a]), 4),
             "confusion": c.confusion[a].round(4).tolist()} for a, n in enumerate(names)],
    }


def _consensus(labels, label, posterior, num_classes) -> Consensus:
    given = labels >= 0
    agree = (labels == label[:, None]) & given
    agreement = agree.sum(1) / np.maximum(given.sum(1), 1)
    # accuracy: the posterior mass on what the annotator said, over the images it labelled
    picked = np.take_along_axis(posterior, np.where(given, labels, 0), 1)  # (N, A)
    accuracy = (picked * given).sum(0) / np.maximum(given.sum(0), 1)
    confusion = np.einsum("ij,iak->ajk", posterior, _one_hot(labels, num_classes))
    confusion /= np.maximum(confusion.sum(2, keepdims=True), 1e-12)
    return Consensus(label.astype(np.int64), posterior, agreement, accuracy, confusion,
                     given.sum(0))


def _one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(N, A) int with -1 missing -> (N, A, C) float, all-zero rows where missing."""
    return (labels[..., None] == np.arange(num_classes)).astype(np.float64)


def _agreement_rate(labels: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(A,) fraction of each annotator's labels equal to `reference` (N,), over the images
    where the reference is defined (>= 0); 0.5 for an annotator with none."""
    ok = (labels >= 0) & (reference[:, None] >= 0)
    hits = ((labels == reference[:, None]) & ok).sum(0)
    return np.where(ok.sum(0) > 0, hits / np.maximum(ok.sum(0), 1), 0.5)


def _index(raw, path: Path, line: int) -> int:
    raw = (raw or "").strip()
    if not raw:
        return -1
    if not raw.isdigit():
        raise DataError(f"{path} line {line}: index {raw!r} must be a non-negative integer")
    return int(raw)
