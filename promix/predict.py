"""`promix predict RUN_DIR FILES_OR_FOLDERS`: classify images with a run's model.

Images are decoded exactly as training decoded the user's folder (`data.cache.to_array`: EXIF
orientation applied, the run's mode, L or RGB, and a resize to the run's square size), in
batches, with a progress bar on stderr when a folder is given. The output is a CSV with a
header: path, then class_1, prob_1, ..., class_k, prob_k (the peers' ensemble, most likely
first), on stdout or into --out.
"""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .data.base import DataError
from .data.cache import to_array
from .data.folder import IMAGE_EXTENSIONS
from .evaluate import load_run_model
from .hardware import autocast
from .inference import predict

BATCH = 256  # images decoded and classified at a time


def list_images(inputs: list[str]) -> tuple[list[Path], bool]:
    """The image files named or found (recursively, sorted) under the folders named, and
    whether any folder was given. Fails early, naming what is missing."""
    files, folders = [], False
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            folders = True
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS
                           and p.is_file() and not any(s.startswith(".") for s in
                                                       p.relative_to(path).parts))
            if not found:
                raise DataError(f"{item}: no image files in this folder "
                                f"({', '.join(sorted(IMAGE_EXTENSIONS))})")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"{item}: no such file or folder")
    return files, folders


def check_readable(files: list[Path]) -> None:
    """Open every header before any work; a file PIL cannot identify is a one-line error."""
    for f in files:
        try:
            with Image.open(f):
                pass
        except (OSError, ValueError) as err:
            raise DataError(f"{f}: cannot read this image ({err})") from err


def predict_images(run_dir: Path, inputs: list[str], *, top_k: int = 1,
                   out: str | None = None) -> int:
    """Classify `inputs` (files and folders) and write the CSV; returns the exit code 0."""
    model = load_run_model(Path(run_dir))
    classes = model.classes
    if not 1 <= top_k <= len(classes):
        raise DataError(f"--top_k={top_k}: use 1 to {len(classes)} (the run has "
                        f"{len(classes)} classes)")
    files, folders = list_images(inputs)
    check_readable(files)
    c, h, w = model.image_shape
    handle = open(out, "w", newline="") if out else sys.stdout  # noqa: SIM115 - or stdout
    try:
        writer = csv.writer(handle)
        writer.writerow(["path"] + [f"{k}_{j}" for j in range(1, top_k + 1)
                                    for k in ("class", "prob")])
        for start in _progress(range(0, len(files), BATCH), len(files), folders):
            batch = files[start : start + BATCH]
            probs = classify(model, [_decode(f, size=h, gray=c == 1,
                                             interpolation=model.interpolation) for f in batch])
            top, idx = probs.topk(top_k, dim=1)
            for f, p_row, i_row in zip(batch, top.tolist(), idx.tolist(), strict=True):
                writer.writerow([str(f)] + [v for i, p in zip(i_row, p_row, strict=True)
                                            for v in (classes[i], f"{p:.4f}")])
    finally:
        if out:
            handle.close()
    if out:
        print(f"{len(files)} predictions: {os.path.abspath(out)}", file=sys.stderr)
    return 0


def classify(model, arrays: list) -> torch.Tensor:
    """The peers' mean probabilities (B, C) for decoded (C, H, W) uint8 arrays."""
    images = torch.from_numpy(np.stack(arrays)).to(model.device)
    ctx = autocast(model.device, torch.float32)
    return sum(predict(net, images, model.mean, model.std, batch_size=BATCH,
                       autocast=ctx).probs for net in model.nets).cpu() / len(model.nets)


def _decode(path: Path, *, size: int, gray: bool, interpolation: str):
    try:
        return to_array(str(path), size=size, gray=gray, interpolation=interpolation)
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: cannot read this image ({err})") from err


def _progress(batches, total: int, show: bool):
    """A tqdm bar over the images when a folder was given (stderr; stdout stays the CSV)."""
    if not show:
        return batches
    from tqdm import tqdm

    bar = tqdm(total=total, unit="img", file=sys.stderr, desc="predict")

    def advance():
        for start in batches:
            yield start
            bar.update(min(BATCH, total - start))
        bar.close()

    return advance()
