"""`promix eval` and `promix predict`: reuse a run directory's model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import runs
from .api import load_nets
from .data.base import DataError
from .data.load import build_dataset
from .hardware import autocast, resolve_device
from .inference import predict
from .metrics import ensemble_accuracy


def _run_info(run_dir: Path):
    cfg = runs.load_config(run_dir)
    info = json.loads((run_dir / "data.json").read_text())
    device = resolve_device(cfg.run.device)
    nets = load_nets(run_dir, cfg, device=device)
    mean = torch.tensor(info["mean"], device=device)
    std = torch.tensor(info["std"], device=device)
    return cfg, info, nets, mean, std, device


def evaluate_run(run_dir: Path) -> dict:
    """Test accuracy of the saved model: the peers' ensemble and each peer alone."""
    cfg, info, nets, mean, std, device = _run_info(run_dir)
    data = build_dataset(cfg.data)
    if data.test is None:
        raise DataError(f"{run_dir}: the run's data has no test split to evaluate on")
    images, labels = data.test.images.to(device), data.test.labels.to(device)
    ctx = autocast(device, torch.float32)
    outs = [predict(net, images, mean, std, batch_size=cfg.run.eval_batch_size, autocast=ctx)
            for net in nets]
    return {"test_size": len(labels)} | ensemble_accuracy(outs, labels)


def predict_files(run_dir: Path, files: list[str]) -> list[tuple[str, str, float]]:
    """(path, predicted class name, ensemble probability) for each image file."""
    cfg, info, nets, mean, std, device = _run_info(run_dir)
    c, h, w = info["image_shape"]
    arrays = []
    for file in files:
        try:
            with Image.open(file) as img:
                img = img.convert("L" if c == 1 else "RGB").resize((w, h), Image.BILINEAR)
                arrays.append(np.asarray(img).reshape(h, w, c))
        except (OSError, ValueError) as err:
            raise DataError(f"{file}: cannot read this image ({err})") from err
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous().to(device)
    ctx = autocast(device, torch.float32)
    probs = sum(predict(net, images, mean, std, batch_size=256, autocast=ctx).probs
                for net in nets) / len(nets)
    conf, pred = probs.max(1)
    return [(f, info["classes"][p], float(q))
            for f, p, q in zip(files, pred.tolist(), conf.tolist(), strict=True)]
