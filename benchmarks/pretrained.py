"""ProMix from pretrained weights (`--weights`) against ProMix from scratch, offline.

    python benchmarks/pretrained.py [--archive PATH] [--seed 1] [--out FILE.json]

The issue asks for a backbone pretrained on clean CIFAR-100 and ProMix on noisy CIFAR-10.
CIFAR-100 is not on this machine and nothing can be downloaded, so the substitute keeps what
matters, pretraining on *other classes* than the noisy task's, with clean labels:

- pretraining: CIFAR-10 classes 5-9 (dog, frog, horse, ship, truck), the first 1,000
  training images of each, clean labels, `--method=ce`, small_cnn width 32, 8 epochs;
  its run's `model.safetensors` is the weights file;
- the noisy task: CIFAR-10 classes 0-4 (airplane, automobile, bird, cat, deer), the first
  300 training images of each (no image or class shared with the pretraining), 50%
  symmetric noise (noise seed = seed), tested on the 5,000 test images of those classes;
  ProMix with the user preset's ProMix settings (lenient per-class ratio, efficient passes,
  tau 0.95), small_cnn width 32, batch 128, 10 epochs, once from scratch and once from the
  weights (`model.weights`, the heads are new: 5 classes each way but other classes).

Both ProMix runs use the same data, labels, seed and schedule; the table has the last-epoch
test accuracy (ensemble of the primary heads), the clean selection's precision and recall
against the true labels, and wall time. Results: benchmarks/results/pretrained.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from promix.api import train_config
from promix.config import Config, DataConfig, load_preset
from promix.data.cifar import load_cifar
from promix.data.load import CIFAR_STATS, dataset_from_arrays

sys.path.insert(0, str(Path(__file__).resolve().parent))
import host  # noqa: E402
from paths import CIFAR10_ARCHIVE  # noqa: E402

PRETRAIN_CLASSES, TASK_CLASSES = (5, 6, 7, 8, 9), (0, 1, 2, 3, 4)
PRETRAIN_PER_CLASS, TASK_PER_CLASS = 1000, 300
PRETRAIN_EPOCHS, TASK_EPOCHS = 8, 10


def pick(images, labels, classes, per_class: int | None):
    """The first `per_class` images of each of `classes` (all when None), relabelled 0..k-1."""
    labels = np.asarray(labels)
    keep = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in classes])
    keep.sort()
    remap = {c: i for i, c in enumerate(classes)}
    return np.asarray(images)[keep], np.array([remap[int(y)] for y in labels[keep]])


def dataset(cifar, classes, per_class, *, noise: str, seed: int):
    x, y = pick(cifar.train.images.numpy(), cifar.train.labels.numpy(), classes, per_class)
    tx, ty = pick(cifar.test.images.numpy(), cifar.test.labels.numpy(), classes, None)
    names = [cifar.train.classes[c] for c in classes]
    cfg = DataConfig(dataset="cifar10", noise=noise, noise_rate=0.5, noise_seed=seed)
    data = dataset_from_arrays(x, y, names, cfg=cfg, test_images=tx, test_labels=ty,
                               name="cifar10-" + "".join(map(str, classes)))
    mean, std = CIFAR_STATS["cifar10"]
    return replace(data, mean=mean, std=std)


def config(method: str, epochs: int, seed: int, out_dir: str, weights: str | None = None):
    cfg = load_preset("user")  # the ProMix settings a practitioner gets
    cfg.model = replace(Config().model, name="small_cnn", width=32, weights=weights)
    cfg.optim.batch_size = 128
    cfg.schedule.epochs = epochs
    cfg.run = replace(cfg.run, method=method, seed=seed, out_dir=out_dir, progress=False,
                      name=None)
    return cfg


def run(cfg: Config, data) -> dict:
    t0 = time.perf_counter()
    run = train_config(cfg, data)
    result = run.result
    return {"test_accuracy": result.test_accuracy, "best_test_accuracy":
            result.best_test_accuracy, "selection": result.selection,
            "wall_seconds": time.perf_counter() - t0, "run_dir": str(run.run_dir)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--archive", default=str(CIFAR10_ARCHIVE))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="tiny sizes: checks the script runs")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "pretrained.json"))
    args = ap.parse_args()
    if args.quick:
        global PRETRAIN_PER_CLASS, TASK_PER_CLASS, PRETRAIN_EPOCHS, TASK_EPOCHS
        PRETRAIN_PER_CLASS, TASK_PER_CLASS, PRETRAIN_EPOCHS, TASK_EPOCHS = 40, 40, 1, 3
    cifar = load_cifar("cifar10", args.archive)
    with tempfile.TemporaryDirectory(prefix="promix-pretrained-") as out_dir:
        clean = dataset(cifar, PRETRAIN_CLASSES, PRETRAIN_PER_CLASS, noise="none",
                        seed=args.seed)
        pre = run(config("ce", PRETRAIN_EPOCHS, args.seed, out_dir), clean)
        weights = str(Path(pre["run_dir"]) / "model.safetensors")
        noisy = dataset(cifar, TASK_CLASSES, TASK_PER_CLASS, noise="sym", seed=args.seed)
        rows = {"pretrain": pre}
        for name, w in (("scratch", None), ("pretrained", weights)):
            rows[name] = run(config("promix", TASK_EPOCHS, args.seed, out_dir, w), noisy)
            print(f"{name}: {rows[name]['test_accuracy']:.4f}", flush=True)
        for row in rows.values():
            row.pop("run_dir")
    record = {
        "host": host.describe(),
        "shared_machine": "2 cores shared with other jobs: wall times are noisy",
        "substitute": "CIFAR-100 is unavailable offline: pretraining uses CIFAR-10 classes "
                      "5-9 (clean), the noisy task classes 0-4 (disjoint images and classes)",
        "pretraining": {"classes": PRETRAIN_CLASSES, "per_class": PRETRAIN_PER_CLASS,
                        "epochs": PRETRAIN_EPOCHS, "method": "ce"},
        "task": {"classes": TASK_CLASSES, "per_class": TASK_PER_CLASS, "noise": "sym 0.5",
                 "epochs": TASK_EPOCHS, "model": "small_cnn width 32", "batch": 128,
                 "preset": "user (ProMix settings)", "test_images": len(noisy.test)},
        "seed": args.seed, "config": asdict(config("promix", TASK_EPOCHS, args.seed, "-")),
        **rows,
    }
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
