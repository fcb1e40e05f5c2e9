"""ProMix from pretrained weights (`--weights`) against ProMix from scratch, offline.

    python benchmarks/pretrained.py [--archive PATH] [--seeds 1,2,3] [--out FILE.json]
    python benchmarks/pretrained.py --table          # --out's table into docs/backbones.md

The issue asks for a backbone pretrained on clean CIFAR-100 and ProMix on noisy CIFAR-10.
CIFAR-100 is not on this machine and nothing can be downloaded, so the substitute keeps what
matters, pretraining on *other classes* than the noisy task's, with clean labels:

- pretraining: CIFAR-10 classes 5-9 (dog, frog, horse, ship, truck), all 5,000 training
  images of each, clean labels, `--method=ce`, small_cnn width 32, 12 epochs;
  its run's `model.safetensors` is the weights file;
- the noisy task: CIFAR-10 classes 0-4 (airplane, automobile, bird, cat, deer), the first
  300 training images of each (no image or class shared with the pretraining), 50%
  symmetric noise (noise seed = seed), tested on the 5,000 test images of those classes;
  ProMix with the user preset's ProMix settings (lenient per-class ratio, efficient passes,
  tau 0.95), small_cnn width 32, batch 128, 10 epochs, once from scratch and once from the
  weights (`model.weights`, the heads are new: 5 classes each way but other classes).

Per seed: one pretraining, then both ProMix runs on the same data, labels, seed and
schedule (the noise and every random draw follow the seed); the table has the last-epoch
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
import docgen  # noqa: E402
import host  # noqa: E402
from paths import CIFAR10_ARCHIVE, ROOT  # noqa: E402

DOC = ROOT / "docs" / "backbones.md"
PRETRAIN_CLASSES, TASK_CLASSES = (5, 6, 7, 8, 9), (0, 1, 2, 3, 4)
PRETRAIN_PER_CLASS, TASK_PER_CLASS = 5000, 300
PRETRAIN_EPOCHS, TASK_EPOCHS = 12, 10


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


def one_seed(cifar, seed: int, out_dir: str) -> dict:
    """Pretrain on the clean classes, then ProMix on the noisy task from scratch and from the
    pretrained weights; every row without its run directory."""
    clean = dataset(cifar, PRETRAIN_CLASSES, PRETRAIN_PER_CLASS, noise="none", seed=seed)
    pre = run(config("ce", PRETRAIN_EPOCHS, seed, out_dir), clean)
    weights = str(Path(pre["run_dir"]) / "model.safetensors")
    noisy = dataset(cifar, TASK_CLASSES, TASK_PER_CLASS, noise="sym", seed=seed)
    rows = {"seed": seed, "pretrain": pre, "test_images": len(noisy.test)}
    for name, w in (("scratch", None), ("pretrained", weights)):
        rows[name] = run(config("promix", TASK_EPOCHS, seed, out_dir, w), noisy)
        print(f"seed {seed}, {name}: {rows[name]['test_accuracy']:.4f}", flush=True)
    for row in (pre, rows["scratch"], rows["pretrained"]):
        row.pop("run_dir")
    return rows


def table(record: dict) -> str:
    """The docs/backbones.md table: one row per seed and start, then the means."""
    lines = ["| start | seed | test accuracy | selection precision | selection recall | "
             "wall time |", "|---|---|---|---|---|---|"]
    for name in ("scratch", "pretrained"):
        for r in record["runs"]:
            m = r[name]
            lines.append(f"| {name} | {r['seed']} | {m['test_accuracy']:.1%} | "
                         f"{m['selection']['precision']:.1%} | {m['selection']['recall']:.1%} | "
                         f"{m['wall_seconds']:.0f} s |")
        mean = record["mean"][name]
        lines.append(f"| {name} | mean | **{mean['test_accuracy']:.1%}** | "
                     f"{mean['precision']:.1%} | {mean['recall']:.1%} | "
                     f"{mean['wall_seconds']:.0f} s |")
    return "\n".join(lines)


def means(runs: list[dict]) -> dict:
    return {name: {key: float(np.mean([get(r[name]) for r in runs])) for key, get in (
        ("test_accuracy", lambda m: m["test_accuracy"]),
        ("precision", lambda m: m["selection"]["precision"]),
        ("recall", lambda m: m["selection"]["recall"]),
        ("wall_seconds", lambda m: m["wall_seconds"]))} for name in ("scratch", "pretrained")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--archive", default=str(CIFAR10_ARCHIVE))
    ap.add_argument("--seeds", default="1,2,3", help="comma-separated; one pretraining each")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: checks the script runs")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "pretrained.json"))
    ap.add_argument("--table", action="store_true",
                    help="only write --out's table into docs/backbones.md")
    args = ap.parse_args()
    if args.table:
        text = table(json.loads(Path(args.out).read_text()))
        docgen.write_section(DOC, text, *docgen.markers("pretrained table"))
        print(text)
        return
    if args.quick:
        global PRETRAIN_PER_CLASS, TASK_PER_CLASS, PRETRAIN_EPOCHS, TASK_EPOCHS
        PRETRAIN_PER_CLASS, TASK_PER_CLASS, PRETRAIN_EPOCHS, TASK_EPOCHS = 40, 40, 1, 3
    cifar = load_cifar("cifar10", args.archive)
    seeds = [int(s) for s in args.seeds.split(",")]
    with tempfile.TemporaryDirectory(prefix="promix-pretrained-") as out_dir:
        runs = [one_seed(cifar, seed, out_dir) for seed in seeds]
    record = {
        "command": " ".join(["python", *sys.argv]),
        "host": host.describe(),
        "substitute": "CIFAR-100 is unavailable offline: pretraining uses CIFAR-10 classes "
                      "5-9 (clean), the noisy task classes 0-4 (disjoint images and classes)",
        "pretraining": {"classes": PRETRAIN_CLASSES, "per_class": PRETRAIN_PER_CLASS,
                        "epochs": PRETRAIN_EPOCHS, "method": "ce"},
        "task": {"classes": TASK_CLASSES, "per_class": TASK_PER_CLASS, "noise": "sym 0.5",
                 "epochs": TASK_EPOCHS, "model": "small_cnn width 32", "batch": 128,
                 "preset": "user (ProMix settings)", "test_images": runs[0]["test_images"]},
        "config": asdict(config("promix", TASK_EPOCHS, seeds[0], "-")),
        "runs": runs,
        "mean": means(runs),
    }
    record["table"] = table(record)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(record["table"])


if __name__ == "__main__":
    main()
