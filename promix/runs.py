"""The run directory: resolved config, version, seed, metrics, model and labels.

Layout:
    config.json          the resolved config (rebuild it with config.from_dict)
    meta.json            versions, seed, device, precision, machine, CPU ISA, GPU, start time
    noise.json           how the training labels were corrupted (rate, transition matrix)
    noisy_labels.csv     index, label, class: the labels training used (+ path, size, mtime_ns
                         of each image file for folder and CSV data)
    data.json            class names, image shape, normalization, sizes, the data's absolute
                         root and a sha256 of its training files' paths, sizes and mtimes
    metrics.jsonl        one JSON object per epoch (losses by term, selection, accuracies)
    checkpoints/         the last checkpoints, to continue with --resume (docs/resume.md)
    model.safetensors    both peers' weights and the class priors (no pickle)
    train_outputs.safetensors  final per-sample logits of each peer, the selection masks and
                         each peer's probabilities averaged over the second half of training
    summary.json         final accuracies and selection quality
    skipped_files.txt    unreadable images left out (only with --skip_bad_images)
    label_issues.csv     one row per training sample, most suspicious first (docs/label-issues.md)
    class_summary.csv    per class: size, selected count, estimated noise rate
    issues_summary.json  estimated noise (rates with intervals, transition matrix), flagged
                         count; measured detection only against real truth (docs/label-issues.md)
    plots/               the report's figures as PNG files
    report.html          a self-contained report to open in a browser
    baseline-<method>/   the same layout for the --baseline run
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import platform
import shutil
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from . import __version__
from .config import Config, from_dict, to_dict
from .data.base import DataError
from .hardware import cpu_isa


def create_run_dir(cfg: Config) -> Path:
    name = cfg.run.name or f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.preset}-{cfg.run.method}"
    path = Path(cfg.run.out_dir) / name
    suffix = 1
    while path.exists():
        suffix += 1
        path = Path(cfg.run.out_dir) / f"{name}-{suffix}"
    path.mkdir(parents=True)
    return path


@contextlib.contextmanager
def removed_on_failure(run_dir: Path, *, enabled: bool):
    """Remove a run directory this process created when the body fails before any epoch was
    recorded (a failed start leaves nothing behind); a run with results is kept."""
    try:
        yield
    except BaseException:
        if enabled and not (Path(run_dir) / "metrics.jsonl").exists():
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def write_json(path: Path, obj) -> None:
    """Write atomically: a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def write_start(run_dir: Path, cfg: Config, data, *, device, precision) -> None:
    write_json(run_dir / "config.json", to_dict(cfg))
    mean, std = data.normalization()
    write_json(run_dir / "data.json", {
        "name": data.name,
        "classes": list(data.classes),
        "image_shape": list(data.train.images.shape[1:]),
        "mean": list(mean),
        "std": list(std),
        "train_size": len(data.train),
        "test_size": len(data.test) if data.test is not None else 0,
        "root": cfg.data.root,  # absolute (api.train): eval/issues/export from any folder
        "files_sha256": files_digest(data.train.paths),
    })
    write_json(run_dir / "meta.json", {
        "promix_version": __version__,
        "torch_version": torch.__version__,
        "seed": cfg.run.seed,
        "device": str(device),
        "precision": str(precision).replace("torch.", ""),
        "machine": f"{platform.machine()} {platform.processor()} {os.cpu_count()} cpus",
        # Decides whether auto precision chose bf16 on a CPU (promix.hardware.bf16_is_fast).
        "cpu_isa": cpu_isa(),
        **({"gpu": torch.cuda.get_device_name(device)}
           if torch.device(device).type == "cuda" else {}),
        "python": platform.python_version(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })
    write_json(run_dir / "noise.json", data.noise)


def write_labels(path: Path, labels: torch.Tensor, classes, paths=None) -> None:
    """index, label, class, and for image files their path, size and mtime_ns (so a later
    command can tell whether a file changed since training)."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "label", "class"] + (["path", "size", "mtime_ns"] if paths
                                                       else []))
        for i, y in enumerate(labels.tolist()):
            writer.writerow([i, y, classes[y]] + (list(file_identity(paths[i])) if paths
                                                  else []))


def file_identity(path: str) -> tuple[str, int, int]:
    """(path, size, mtime_ns) of a file; size -1 when it is gone."""
    try:
        st = os.stat(path)
    except OSError:
        return path, -1, -1
    return path, st.st_size, st.st_mtime_ns


def files_digest(paths) -> str | None:
    """sha256 over every file's path, size and mtime; None for data without files."""
    if not paths:
        return None
    h = hashlib.sha256()
    for p in paths:
        path, size, mtime = file_identity(p)
        h.update(f"{path}\0{size}\0{mtime}\n".encode())
    return h.hexdigest()


def read_labels(run_dir: Path) -> list[dict]:
    """The rows of noisy_labels.csv as dicts of strings."""
    with open(Path(run_dir) / "noisy_labels.csv", newline="") as f:
        return list(csv.DictReader(f))


def append_metrics(run_dir: Path, record: dict) -> None:
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


def truncate_metrics(run_dir: Path, epochs: int) -> None:
    """Keep the records of epochs < `epochs` (a resumed run rewrites the later ones)."""
    path = Path(run_dir) / "metrics.jsonl"
    if path.is_file():
        keep = [line for line in path.read_text().splitlines()
                if line.strip() and _complete(line) and json.loads(line)["epoch"] < epochs]
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(line + "\n" for line in keep))
        os.replace(tmp, path)


def _complete(line: str) -> bool:
    """False for the half-written last line of a killed run."""
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def save_tensors(path: Path, tensors: dict[str, torch.Tensor],
                 metadata: dict[str, str] | None = None) -> None:
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp),
              metadata=metadata)
    os.replace(tmp, path)


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file; DataError when it is missing or not a valid safetensors file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} is missing: the run did not finish (train or resume it)")
    try:
        return load_file(str(path))
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error types
        raise DataError(f"{path} is not a readable safetensors file ({err}): it is truncated "
                        "or corrupted; train the run again or restore the file") from err


def load_config(run_dir: Path) -> Config:
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a promix run directory (no config.json)")
    try:
        table = json.loads(path.read_text())
    except ValueError as err:
        raise DataError(f"{path} is not valid JSON ({err}): restore it from the run") from err
    return from_dict(table)
