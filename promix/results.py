"""A finished run in Python: its metrics, its label issues, its model and its predictions.

    run = promix.Run.load("runs/20260101-120000-user-promix")
    run.metrics["test_accuracy"]       # summary.json
    run.label_issues()                 # DataFrame (pandas) or NumPy structured array
    run.predict_proba(images)          # (N, C) mean of the peers' probabilities
    run.predict(["a.png", "b.png"])    # (N,) class indices into run.classes

Everything is read from the run directory (safetensors and JSON: no pickle, no code).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from . import runs
from .data.arrays import as_uint8_nchw, resize
from .data.base import DataError
from .data.cache import to_array
from .data.load import resize_filter
from .hardware import autocast
from .inference import predict
from .models import TwoHeadNet, create_model
from .state import load_peers

NUMERIC = ("label_quality",)  # label_issues.csv writes it as text with 6 decimals


@dataclass
class Result:
    """What a finished run returns (also in summary.json)."""

    method: str
    test_accuracy: float | None  # last epoch: ensemble of primary heads (Acc Mean)
    best_test_accuracy: float | None
    selection: dict = field(default_factory=dict)  # final clean selection vs true labels
    epochs: int = 0
    seconds: float = 0.0
    run_dir: str | None = None
    baseline: Result | None = None  # the same data trained with cfg.run.baseline




class PeerEnsemble(torch.nn.Module):
    """The trained peers as one module: normalized images (B, C, H, W) -> mean logits (B, K)."""

    def __init__(self, peers: list[TwoHeadNet]):
        super().__init__()
        self.peers = torch.nn.ModuleList(peers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(net(x).logits for net in self.peers) / len(self.peers)


class Run:
    """A run directory. `promix.train` returns one; `Run.load(path)` opens one from disk."""

    def __init__(self, run_dir, *, result=None, baseline: Run | None = None, device="cpu"):
        self.run_dir = Path(run_dir)
        self.result = result  # the trainer's Result when this process trained it
        self.baseline = baseline  # the --baseline run trained on the same labels, if any
        self.device = torch.device(device)

    @classmethod
    def load(cls, run_dir: str | os.PathLike, *, device="cpu") -> Run:
        """Open a run directory written by `promix train` (or `promix.train`)."""
        run_dir = Path(run_dir)
        cfg = runs.load_config(run_dir)  # a clear error when it is no run directory
        base = run_dir / f"baseline-{cfg.run.baseline}"
        baseline = cls.load(base, device=device) if cfg.run.baseline and base.is_dir() else None
        return cls(run_dir, baseline=baseline, device=device)

    def __repr__(self) -> str:
        return f"Run({str(self.run_dir)!r})"

    @cached_property
    def config(self):
        return runs.load_config(self.run_dir)

    @cached_property
    def info(self) -> dict:
        """data.json: class names, image shape (C, H, W), normalization, sizes."""
        return json.loads(self._file("data.json").read_text())

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.info["classes"])

    @property
    def metrics(self) -> dict:
        """summary.json: test_accuracy (last epoch), best_test_accuracy, selection quality
        (when the true labels are known), epochs, seconds, and the baseline's the same way."""
        return json.loads(self._file("summary.json", "the run did not finish").read_text())

    @property
    def history(self) -> list[dict]:
        """metrics.jsonl: one dict per epoch (losses by term, selection, accuracies)."""
        return runs.read_metrics(self.run_dir)

    @cached_property
    def model(self) -> PeerEnsemble:
        """The trained peers (eval mode) on `device`; input: normalized images."""
        return PeerEnsemble(load_nets(self.run_dir, device=self.device))

    def label_issues(self):
        """The label-issue table, one row per training sample, most suspicious first
        (label_issues.csv's columns): a pandas DataFrame when pandas is installed, else a
        NumPy structured array."""
        from .report.table import analyze_run, issue_rows

        return table(issue_rows(analyze_run(self.run_dir)))

    @torch.no_grad()
    def predict_proba(self, images, *, batch_size: int = 256) -> np.ndarray:
        """Class probabilities (N, K), the mean over the peers of the primary head's softmax.

        images: image file paths (decoded as training decodes them: EXIF orientation, mode,
        resize), or an array / tensor (N, H, W), (N, H, W, C) or (N, C, H, W), uint8 or float
        in [0, 1], resized to the training size when it differs.
        """
        x = self._images(images).to(self.device)
        mean = torch.tensor(self.info["mean"], device=self.device)
        std = torch.tensor(self.info["std"], device=self.device)
        ctx = autocast(self.device, torch.float32)
        probs = sum(predict(net, x, mean, std, batch_size=batch_size, autocast=ctx).probs
                    for net in self.model.peers) / len(self.model.peers)
        return probs.cpu().numpy()

    def predict(self, images, *, batch_size: int = 256) -> np.ndarray:
        """The most probable class of each image, (N,) int indices into `classes`."""
        return self.predict_proba(images, batch_size=batch_size).argmax(1)

    def _images(self, images) -> torch.Tensor:
        """(N, C, H, W) uint8 at the training shape."""
        c, h, w = self.info["image_shape"]
        if isinstance(images, (str, os.PathLike)):
            images = [images]
        if isinstance(images, (list, tuple)) and all(
                isinstance(p, (str, os.PathLike)) for p in images):
            filt = resize_filter(self.config.data)  # as training decoded them
            return torch.from_numpy(np.stack([self._decode(p, c, h, w, filt) for p in images]))
        x = as_uint8_nchw(images)
        if x.shape[1] != c:
            raise DataError(f"images have {x.shape[1]} channel(s); the model was trained on {c}")
        if x.shape[2:] != (h, w):
            if h != w:
                raise DataError(f"images are {tuple(x.shape[2:])}; the model was trained on "
                                f"{(h, w)}: resize them first")
            x = resize(x, h)
        return x

    @staticmethod
    def _decode(path, c: int, h: int, w: int, interpolation: str) -> np.ndarray:
        if h != w:
            raise DataError(f"the model was trained on {h}x{w} arrays: pass arrays, not files")
        try:
            return to_array(os.fspath(path), size=h, gray=c == 1, interpolation=interpolation)
        except (OSError, ValueError) as err:
            raise DataError(f"{path}: cannot read this image ({err})") from err

    def _file(self, name: str, why: str = "") -> Path:
        path = self.run_dir / name
        if not path.is_file():
            raise DataError(f"{self.run_dir} has no {name}" + (f": {why}" if why else ""))
        return path


def load_nets(run_dir, cfg=None, *, device="cpu") -> list[TwoHeadNet]:
    """The trained peers of a run directory (eval mode). The architecture comes from the
    run's config.json and data.json; the weights from model.safetensors (no code executed)."""
    run_dir = Path(run_dir)
    cfg = cfg if cfg is not None else runs.load_config(run_dir)
    info = json.loads((run_dir / "data.json").read_text())
    tensors = runs.load_tensors(run_dir / "model.safetensors")
    kwargs = {"width": cfg.model.width} if cfg.model.name == "small_cnn" else {}

    def build() -> TwoHeadNet:
        return create_model(cfg.model.name, num_classes=len(info["classes"]),
                            in_channels=info["image_shape"][0], **kwargs)

    try:
        nets = load_peers(build, tensors)
    except (RuntimeError, KeyError) as err:
        first = str(err).strip().splitlines()[0]
        raise DataError(f"{run_dir / 'model.safetensors'} does not fit the run's model "
                        f"({cfg.model.name}): {first}") from err
    return [net.to(device).eval() for net in nets]


def table(rows: list[dict]):
    """Rows of dicts as a pandas DataFrame, or as a NumPy structured array without pandas."""
    try:
        import pandas as pd
    except ImportError:
        pd = None
    rows = [{k: float(v) if k in NUMERIC else v for k, v in row.items()} for row in rows]
    if pd is not None:
        return pd.DataFrame(rows)
    columns = list(rows[0]) if rows else []
    arrays = [np.array([row[c] for row in rows]) for c in columns]
    return np.rec.fromarrays(arrays, names=columns) if columns else np.array([])
