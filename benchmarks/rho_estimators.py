"""How well do per-class clean-fraction estimators track the truth, and when?

    python benchmarks/rho_estimators.py [--noise sym50 --noise asym40] [--seeds 1,2] \
        [--promix-epochs 1]

On the CPU protocol (benchmarks/table.py's `promix` cell), trains the warm-up, then a few
ProMix epochs with the preset's fixed ρ, and after each epoch compares, per class and overall
(weighted by class size), the true clean fraction of the noisy labels with these estimates
from each peer's eval-mode outputs on the training set:

- gmm: `selection.auto_rho`, the share of a class whose low-loss posterior under a
  2-component GMM on its min-max normalized losses exceeds 0.5 (what `--rho_mode=auto` uses);
- gmm_weight: that mixture's weight of the low-loss component (its maximum-likelihood
  clean fraction, instead of a count of posteriors above 0.5);
- gmm_log: the same weight from a GMM on the log-losses (CE losses are heavy-tailed);
- gmm_global: one GMM's weight over all classes' losses (a single noise rate);
- agree: the share of a class the peer predicts as its given label;
- joint: the confident joint's diagonal share (per-class thresholds, Northcutt et al. 2021).

Prints each epoch, then a summary at the end of the warm-up (where a rule that estimates once
would estimate): the estimate, its error, and its per-class correlation with the truth.
Writes benchmarks/results/rho_estimators.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import host  # noqa: E402
import table  # noqa: E402

from promix.data.load import build_dataset  # noqa: E402
from promix.selection import auto_rho, fit_gmm, min_max  # noqa: E402
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


def gmm_weight(loss: torch.Tensor, labels: torch.Tensor, c: int, transform) -> torch.Tensor:
    """Per-class low-loss weight of a GMM on transform(loss) of the class (C,)."""
    return torch.tensor([fit_gmm(min_max(transform(loss[labels == j]))).clean_weight
                         for j in range(c)], dtype=torch.float64)


def log(loss: torch.Tensor) -> torch.Tensor:
    return loss.double().clamp_min(1e-6).log()


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
        out[f"gmm_weight{k}"] = gmm_weight(loss, labels, c, lambda x: x)
        out[f"gmm_log{k}"] = gmm_weight(loss, labels, c, log)
        out[f"gmm_global{k}"] = torch.full((c,), fit_gmm(min_max(loss)).clean_weight,
                                           dtype=torch.float64)
        out[f"agree{k}"] = agreement(probs, labels, c)
        out[f"joint{k}"] = confident_joint(probs, labels, c)
    weights = counts / counts.sum()
    return {name: {"overall": float((v * weights).sum()), "per_class": v.tolist()}
            for name, v in out.items()}


def correlation(a: list[float], b: list[float]) -> float | None:
    """Pearson correlation of two per-class lists; None where one is constant."""
    x = torch.tensor([a, b], dtype=torch.float64)
    if bool((x.std(1) < 1e-9).any()):
        return None
    return float(torch.corrcoef(x)[0, 1])


def summary(settings: dict) -> dict:
    """Peer 1's estimates at the end of the warm-up, per noise: mean over seeds of the overall
    estimate, its error against the truth and its per-class correlation with the truth."""
    out: dict = {}
    for key, rows in settings.items():
        noise = key.split("/")[0]
        row = [r for r in rows if r["phase"] == "warmup"][-1]
        for name, v in row.items():
            if name in ("epoch", "phase") or not (name == "truth" or name.endswith("1")):
                continue
            cell = out.setdefault(noise, {}).setdefault(name.rstrip("1"), [])
            cell.append({"overall": v["overall"],
                         "error": v["overall"] - row["truth"]["overall"],
                         "corr": correlation(v["per_class"], row["truth"]["per_class"])})
    table = {}
    for noise, by_name in out.items():
        table[noise] = {}
        for name, cells in by_name.items():
            corrs = [c["corr"] for c in cells if c["corr"] is not None]
            table[noise][name] = {
                "overall": sum(c["overall"] for c in cells) / len(cells),
                "error": sum(c["error"] for c in cells) / len(cells),
                "corr": sum(corrs) / len(corrs) if corrs else None,
                "seeds": len(cells)}
    return table


def print_summary(table: dict) -> None:
    print("\nend of warm-up, peer 1, mean over seeds: estimate (error) [per-class corr]")
    for noise, by_name in table.items():
        cells = [f"{name} {v['overall']:.2f} ({v['error']:+.2f})"
                 + ("" if v["corr"] is None or name == "truth" else f" [{v['corr']:+.2f}]")
                 for name, v in by_name.items()]
        print(f"  {noise}: " + "; ".join(cells))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--noise", action="append", choices=sorted(table.NOISES))
    ap.add_argument("--seeds", default="1,2", help="comma-separated")
    ap.add_argument("--promix-epochs", type=int, default=1)
    ap.add_argument("--budget", choices=sorted(table.BUDGETS), default="cpu")
    ap.add_argument("--data-root", type=Path)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/rho_estimators.json")
    args = ap.parse_args()
    record = {"command": " ".join(["python", *sys.argv]), "machine": host.label(),
              "date": time.strftime("%Y-%m-%d"), "settings": {}}
    for noise in args.noise or list(table.BUDGETS[args.budget]["noises"]):
        for seed in map(int, args.seeds.split(",")):
            cfg = table.cell_config("promix", noise, seed, args.budget, args.data_root)
            t = Trainer(cfg, build_dataset(cfg.data))
            rows = []

            def after_epoch(t: Trainer, record: dict, key=f"{noise}/seed{seed}",
                            rows=rows) -> None:
                est = estimates(t)
                rows.append({"epoch": record["epoch"], "phase": record["phase"], **est})
                line = "  ".join(f"{n} {v['overall']:.3f}" for n, v in est.items()
                                 if n == "truth" or n.endswith("1"))
                print(f"{key} epoch {record['epoch']} ({record['phase']}): {line}", flush=True)

            t.fit(on_epoch=after_epoch, stop_epoch=t.schedule.warmup + args.promix_epochs)
            record["settings"][f"{noise}/seed{seed}"] = rows
    record["summary"] = summary(record["settings"])
    print_summary(record["summary"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
