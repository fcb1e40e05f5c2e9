"""How well do per-class clean-fraction estimators track the truth, and when?

    python benchmarks/rho_estimators.py [--noise sym50 --noise asym40] [--promix-epochs 2]

On the CPU protocol (benchmarks/table.py's `promix` cell, seed 1), trains the warm-up, then
a few ProMix epochs with the preset's fixed ρ, and after each epoch compares, per class and
overall (weighted by class size), the true clean fraction of the noisy labels with three
estimates from each peer's eval-mode outputs on the training set:

- gmm: `selection.auto_rho`, the share of a class in the low-loss component of a 2-component
  GMM on its losses (what `--rho_mode=auto` uses);
- agree: the share of a class the peer predicts as its given label;
- joint: the confident joint's diagonal share (per-class thresholds, Northcutt et al. 2021).

Prints a table and writes benchmarks/results/rho_estimators.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import table  # noqa: E402

from promix.data.load import build_dataset  # noqa: E402
from promix.selection import auto_rho  # noqa: E402
from promix.trainer import Trainer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def agreement(probs: torch.Tensor, labels: torch.Tensor, c: int) -> torch.Tensor:
    hits = torch.bincount(labels, weights=(probs.argmax(1) == labels).double(), minlength=c)
    return hits / torch.bincount(labels, minlength=c).clamp_min(1)


def confident_joint(probs: torch.Tensor, labels: torch.Tensor, c: int) -> torch.Tensor:
    p = probs.double()
    counts = torch.bincount(labels, minlength=c).double().clamp_min(1)
    threshold = torch.zeros(c, dtype=p.dtype).index_add_(
        0, labels, p.gather(1, labels[:, None]).squeeze(1)) / counts
    best, assigned = torch.where(p >= threshold, p, -1.0).max(1)
    keep = best >= 0
    joint = torch.bincount(labels[keep] * c + assigned[keep], minlength=c * c).view(c, c)
    return joint.diagonal().double() / joint.sum(1).clamp_min(1)


def estimates(t: Trainer) -> dict:
    c, labels = t.num_classes, t.labels.cpu()
    clean = t.is_clean.cpu()
    counts = torch.bincount(labels, minlength=c).double()
    truth = torch.bincount(labels, weights=clean.double(), minlength=c) / counts
    out = {"truth": truth}
    for k, o in enumerate(t.infer_train(), 1):
        probs = o.probs.float().cpu()
        loss = o.losses(t.labels).float().cpu()
        out[f"gmm{k}"] = auto_rho(loss, labels, c, low=0.0, high=1.0)
        out[f"agree{k}"] = agreement(probs, labels, c)
        out[f"joint{k}"] = confident_joint(probs, labels, c)
    weights = counts / counts.sum()
    return {name: {"overall": float((v * weights).sum()), "per_class": v.tolist()}
            for name, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--noise", action="append", choices=sorted(table.NOISES))
    ap.add_argument("--promix-epochs", type=int, default=2)
    ap.add_argument("--budget", choices=sorted(table.BUDGETS), default="cpu")
    ap.add_argument("--data-root", type=Path)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/rho_estimators.json")
    args = ap.parse_args()
    record = {"command": " ".join(["python", *sys.argv]), "machine": table.machine(),
              "date": time.strftime("%Y-%m-%d"), "settings": {}}
    for noise in args.noise or list(table.BUDGETS[args.budget]["noises"]):
        cfg = table.cell_config("promix", noise, 1, args.budget, args.data_root)
        t = Trainer(cfg, build_dataset(cfg.data))
        rows = []

        def after_epoch(t: Trainer, record: dict, noise=noise, rows=rows) -> None:
            est = estimates(t)
            rows.append({"epoch": record["epoch"], "phase": record["phase"], **est})
            line = "  ".join(f"{n} {v['overall']:.3f}" for n, v in est.items())
            print(f"{noise} epoch {record['epoch']} ({record['phase']}): {line}", flush=True)

        t.fit(on_epoch=after_epoch, stop_epoch=t.schedule.warmup + args.promix_epochs)
        record["settings"][noise] = rows
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
