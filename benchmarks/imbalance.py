"""Which CSS quota rule on imbalanced data: uniform (reference), per_class, or automatic ρ.

The digits training set is cut to a 1:10 imbalance (classes 0-4 keep every image, classes
5-9 keep one in ten), symmetric noise is injected (40% unless --noise), and ProMix is trained
with each rule.
Reported: balanced test accuracy (the test set is untouched) and the clean selection's
precision and recall, overall and on the small classes.

    python benchmarks/imbalance.py [--epochs 30] [--noise 0.4] [--seeds 123] [--only RULE]
        [--out benchmarks/results/imbalance.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from promix.config import apply_overrides, load_preset
from promix.data.base import Dataset, ImageSet
from promix.data.embedded import load_digits
from promix.data.noise import make_noise
from promix.trainer import Trainer

sys.path.insert(0, str(Path(__file__).resolve().parent))
import host  # noqa: E402

RULES = {
    "uniform": ["--quota=uniform", "--rho_mode=fixed", "--rho=0.5"],
    "per_class": ["--quota=per_class", "--rho_mode=fixed", "--rho=0.5"],
    "per_class-0.7": ["--quota=per_class", "--rho_mode=fixed", "--rho=0.7"],
    "auto": ["--quota=per_class", "--rho_mode=auto"],
    "lenient": ["--quota=per_class", "--rho_mode=lenient"],
    "bayes": ["--quota=per_class", "--rho_mode=bayes"],
    "bayes-0.03": ["--quota=per_class", "--rho_mode=bayes", "--rho_posterior=0.03"],
}


def imbalanced_digits(noise_rate: float, seed: int) -> Dataset:
    train, test = load_digits()
    keep = []
    for c in range(10):
        members = torch.nonzero(train.labels == c).flatten()
        keep.append(members if c < 5 else members[::10])
    train = train.subset(torch.cat(keep).sort().values)
    noisy, info = make_noise(train.labels, kind="sym", rate=noise_rate, num_classes=10, seed=seed)
    return Dataset("digits-1:10", ImageSet(train.images, noisy, train.classes), test,
                   true_labels=train.labels, noise=info)


def run_rule(name: str, overrides: list[str], data: Dataset, small: torch.Tensor, seed: int,
             epochs: int) -> dict:
    """Train ProMix with one quota rule; its accuracy and selection quality, as one row."""
    cfg = apply_overrides(load_preset("demo"), overrides + [
        f"--epochs={epochs}", "--baseline=none", "--progress=false", f"--seed={seed}"])
    trainer = Trainer(cfg, data)
    tick = time.perf_counter()
    result = trainer.fit()
    clean = trainer.labels == data.true_labels
    sel = torch.stack([peer.selected for peer in trainer.state.selection]).any(0)
    small_sel = sel & small
    row = {
        "rule": name,
        "seed": seed,
        "test_accuracy": result.test_accuracy,
        "precision": result.selection["precision"],
        "recall": result.selection["recall"],
        "small_class_precision": float((small_sel & clean).sum() / small_sel.sum().clamp_min(1)),
        "small_class_recall": float((small_sel & clean).sum() / (small & clean).sum()),
        "seconds": time.perf_counter() - tick,
    }
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--noise", type=float, default=0.4)
    parser.add_argument("--seeds", default="123",
                        help="comma-separated; each seed draws the noise and seeds the training")
    parser.add_argument("--out", default="benchmarks/results/imbalance.json")
    parser.add_argument("--only", action="append", choices=sorted(RULES),
                        help="run only this rule; rows of the other rules already in --out stay")
    args = parser.parse_args()
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        data = imbalanced_digits(args.noise, seed=seed)
        small = data.true_labels >= 5
        rows += [run_rule(name, overrides, data, small, seed, args.epochs)
                 for name, overrides in RULES.items() if not args.only or name in args.only]
    if args.only and Path(args.out).is_file():  # keep the rules not re-run
        rows = [r for r in json.loads(Path(args.out).read_text())["rows"]
                if r["rule"] not in args.only] + rows
    rows.sort(key=lambda r: (list(RULES).index(r["rule"]), r.get("seed", 123)))
    record = {"command": f"python benchmarks/imbalance.py --epochs {args.epochs} "
                         f"--noise {args.noise} --seeds {args.seeds}",
              "machine": host.label(),
              "train_size": len(data.train), "noise_rate": args.noise, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(f"{'rule':<14}{'seed':>5}{'test acc':>9}{'prec.':>7}{'recall':>8}{'small prec.':>12}"
          f"{'small rec.':>11}")
    for r in rows:
        print(f"{r['rule']:<14}{r.get('seed', 123):>5}{r['test_accuracy']:>9.1%}"
              f"{r['precision']:>7.1%}{r['recall']:>8.1%}"
              f"{r['small_class_precision']:>12.1%}{r['small_class_recall']:>11.1%}")


if __name__ == "__main__":
    main()
