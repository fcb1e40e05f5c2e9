"""The review files a run can take (data.corrections, data.annotators): checked before the
data loads, applied after the noise, and recorded in the run directory."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..data.base import DataError, Dataset
from .annotators import consensus, encode, read_annotations, summary
from .corrections import apply_corrections, file_sha256, locate, read_corrections

FILES = {"corrections": "corrections.csv", "annotators": "annotators.csv"}  # copies in a run dir


def check_review_inputs(cfg) -> None:
    """Parse the files cfg (a DataConfig) names, and check that a run which recorded their
    hashes (a resumed one) still finds the same files."""
    for field in FILES:
        path = getattr(cfg, field)
        if path is None:
            continue
        if not Path(path).is_file():
            raise DataError(f"--{field}={path}: no such file")
        recorded = getattr(cfg, f"{field}_sha256")
        if recorded and file_sha256(path) != recorded:
            raise DataError(f"{path} changed since the run started (its sha256 is recorded in "
                            f"config.json); the run directory keeps the original as {FILES[field]}")
    if cfg.corrections is not None:
        read_corrections(cfg.corrections)
    if cfg.annotators is not None:
        read_annotations(cfg.annotators)


def with_review_inputs(data: Dataset, cfg) -> Dataset:
    """The annotators' consensus as given labels, then the reviewer's corrections on top."""
    if cfg.annotators is not None:
        data = apply_annotators(data, cfg.annotators, method=cfg.consensus,
                                prior=cfg.annotator_prior, root=cfg.root)
    if cfg.corrections is not None:
        data = apply_corrections(data, read_corrections(cfg.corrections), root=cfg.root,
                                 source=str(cfg.corrections))
    return data


def apply_annotators(data: Dataset, path, *, method: str = "dawid_skene", prior: bool = True,
                     root: str | None = None) -> Dataset:
    """Replace the given labels of the annotated images by the consensus; with `prior`, set
    `label_prior` to P(consensus label | annotators) (images nobody annotated get the mean,
    a neutral value). The summary (annotators.json's content) goes to `data.noise`."""
    table = read_annotations(path)
    where = locate(table.rows, data, root=root, source=str(path))
    labels = encode(table.labels, data.classes, source=str(path))
    if (labels < 0).all(1).any():
        raise DataError(f"{path}: some images have no label from any annotator")
    c = consensus(labels, data.num_classes, method=method)
    index = torch.tensor(where, dtype=torch.long)
    given = data.train.labels.clone()
    given[index] = torch.from_numpy(c.label)
    label_prior = None
    if prior:
        p = c.posterior[np.arange(len(c.label)), c.label].clip(1e-6, 1)  # (n,)
        label_prior = torch.full((len(given),), float(p.mean()), dtype=torch.float64)
        label_prior[index] = torch.from_numpy(p)
    info = summary(c, table.annotators, data.classes) | {"method": method,
                                                         "annotated": len(where)}
    return replace(data, train=replace(data.train, labels=given), label_prior=label_prior,
                   noise={**data.noise, "annotators": info})


def record_inputs(cfg, run_dir: Path) -> None:
    """Copy the review files into the run directory and record their absolute paths and
    sha256 in cfg (so config.json says which corrections and annotations the run used)."""
    d = cfg.data
    for field, name in FILES.items():
        path = getattr(d, field)
        if path is None:
            continue
        setattr(d, field, str(Path(path).resolve()))
        setattr(d, f"{field}_sha256", file_sha256(path))
        shutil.copyfile(path, Path(run_dir) / name)
