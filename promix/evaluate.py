"""`promix eval`: a run's saved model on its test set; `load_run_model` for predict."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from . import runs
from .api import load_nets
from .data.base import DataError
from .data.load import build_dataset, resize_filter
from .hardware import autocast, resolve_device, resolve_precision
from .inference import predict
from .metrics import ensemble_accuracy


@dataclass(frozen=True)
class RunModel:
    """A run's trained peers and what their inputs need."""

    nets: list
    classes: tuple[str, ...]
    image_shape: tuple[int, int, int]  # (C, H, W) the model was trained on
    mean: torch.Tensor  # (C,) normalization, on `device`
    std: torch.Tensor
    device: torch.device
    interpolation: str  # the resize filter training decoded the files with (resize_filter)


def load_run_model(run_dir: Path) -> RunModel:
    """The peers of a run directory (safetensors weights: no code executed) on its device."""
    cfg = runs.load_config(run_dir)
    info = json.loads((run_dir / "data.json").read_text())
    device = resolve_device(cfg.run.device)
    shape = tuple(info["image_shape"])
    nets = load_nets(run_dir, cfg, device=device)
    return RunModel(nets, tuple(info["classes"]), shape,
                    torch.tensor(info["mean"], device=device),
                    torch.tensor(info["std"], device=device), device,
                    interpolation=resize_filter(cfg.data))


def evaluate_run(run_dir: Path) -> dict:
    """Test accuracy of the saved model: the peers' ensemble and each peer alone, computed as
    training computed its last epoch's (the run's precision: bf16 autocast where it trained
    in bf16), so the numbers match metrics.jsonl. Without known noise the test labels are
    the user's given labels, and the record says so."""
    run_dir = Path(run_dir)
    cfg = runs.load_config(run_dir)
    model = load_run_model(run_dir)
    nets, mean, std, device = model.nets, model.mean, model.std, model.device
    data = build_dataset(cfg.data, announce=False)
    if data.test is None:
        raise DataError(f"{run_dir}: the run's data has no test split to evaluate on")
    images, labels = data.test.images.to(device), data.test.labels.to(device)
    ctx = autocast(device, resolve_precision(cfg.run.precision, device))
    outs = [predict(net, images, mean, std, batch_size=cfg.run.eval_batch_size, autocast=ctx,
                    channels_last=cfg.run.channels_last)
            for net in nets]
    record = {"test_size": len(labels)} | ensemble_accuracy(outs, labels)
    if data.true_labels is None:  # the user's own labels: not verified
        record["test_labels"] = "as given (not verified; some may be wrong)"
    return record
