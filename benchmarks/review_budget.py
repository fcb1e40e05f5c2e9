"""Reviewer budget: what a person who checks N images gains the next run.

    python benchmarks/review_budget.py --small              about an hour on 2 CPU cores
    python benchmarks/review_budget.py --protocol full      the CPU protocol: many hours
    python benchmarks/review_budget.py --report             only regenerate docs/review.md

1. ProMix trains on the noisy labels (the N = 0 row).
2. Three orders in which a reviewer could be shown the training images:
   promix    the run's label_quality, most suspicious first (label_issues.csv's order);
   cleanlab  cleanlab's label quality from K-fold cross-entropy models (its recommended
             workflow, as in benchmarks/detection.py);
   random    a seeded random order.
3. A simulated reviewer checks the first N images of an order and answers from the true
   labels (keep when right, relabel to the true class when wrong); the answers go through
   corrections.csv and `--corrections` into a new ProMix run with the same seed.
Each row: order, N, wrong labels the reviewer found, the noise left in the training labels,
last-epoch test accuracy, and the final clean selection against the true labels.

Settings. full: the CPU protocol of benchmarks/table.py (the first 1,000 CIFAR-10 training
images per class, the full test set, small_cnn width 32, batch 128, 28 epochs), sym 50% and
asym 40%, N = 200/500/1000. small: 100 images per class, width 16, 10 epochs, sym 50%,
N = 20/50/100 (the same 2%/5%/10% of the training set). Results go to
benchmarks/results/review_budget-<setting>.jsonl; a row already measured is skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import docgen  # noqa: E402
import host  # noqa: E402
import table  # noqa: E402  (the CPU protocol's overrides)

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "review.md"
RANKINGS = ("promix", "cleanlab", "random")
SEED = 1
SETTINGS = {
    "full": {"overrides": table.BUDGETS["cpu"]["overrides"], "noises": ("sym50", "asym40"),
             "budgets": (200, 500, 1000), "folds": 3},
    "small": {"overrides": table.BUDGETS["cpu"]["overrides"] + [
        "--per_class=100", "--width=16", "--epochs=10", "--batch_size=64"],
        "noises": ("sym50",), "budgets": (20, 50, 100), "folds": 3},
    # seconds: checks that the script runs (its results are not shown in the docs)
    "smoke": {"overrides": table.BUDGETS["cpu"]["overrides"] + [
        "--per_class=20", "--width=4", "--epochs=3", "--batch_size=32"],
        "noises": ("sym50",), "budgets": (10, 20), "folds": 2},
}
BEGIN, END = docgen.markers("review_budget table")


def make_config(setting: str, noise: str, *extra: str, seed: int = SEED):
    """The Config of one run: the noise preset, the setting's overrides, the training seed
    (the noisy labels are always SEED's)."""
    from promix.config import apply_overrides, load_preset

    overrides = SETTINGS[setting]["overrides"] + [f"--seed={seed}", f"--noise_seed={SEED}",
                                                  "--checkpoint_every=1", *extra]
    cfg = apply_overrides(load_preset(table.NOISES[noise][0]), overrides)
    cfg.data.root = str((ROOT / cfg.data.root).resolve())  # the overrides are repo-relative
    return cfg


def train_run(cfg, run_dir: Path) -> dict:
    """Train (resuming a run killed half way); the numbers of the row."""
    from promix.api import train_config
    from promix.checkpoint import resume_config

    if (run_dir / "summary.json").is_file():
        summary = json.loads((run_dir / "summary.json").read_text())
        return {"test_accuracy": summary["test_accuracy"], "selection": summary["selection"],
                "train_seconds": summary["seconds"]}
    if (run_dir / "config.json").is_file():  # the run's own config, as `promix train --resume`
        cfg = resume_config(run_dir, [])
    run_dir.mkdir(parents=True, exist_ok=True)
    result = train_config(cfg, run_dir=run_dir).result
    return {"test_accuracy": result.test_accuracy, "selection": result.selection,
            "train_seconds": result.seconds}


def cleanlab_order(cfg, data, folds: int) -> np.ndarray:
    """Indices, most suspicious first, by cleanlab's self-confidence on the out-of-sample
    probabilities of K cross-entropy models (each trained on K-1 folds, same epochs)."""
    from dataclasses import replace

    import torch
    from cleanlab.rank import get_label_quality_scores
    from detection import fold_index

    from promix.hardware import autocast
    from promix.inference import predict
    from promix.trainer import Trainer

    cfg.run.method = "ce"
    labels = data.train.labels
    fold = fold_index(labels, folds, cfg.run.seed)
    probs = np.zeros((len(labels), data.num_classes))
    mean, std = data.normalization()
    for k in range(folds):
        fit, held = (torch.from_numpy(np.flatnonzero(m)) for m in (fold != k, fold == k))
        part = replace(data, train=data.train.subset(fit), test=None,
                       true_labels=data.true_labels[fit], mean=mean, std=std)
        trainer = Trainer(cfg, part)
        trainer.fit()
        out = predict(trainer.state.nets[0], data.train.images[held].to(trainer.device),
                      trainer.mean, trainer.std, batch_size=cfg.run.eval_batch_size,
                      autocast=autocast(trainer.device, torch.float32))
        probs[held.numpy()] = out.probs.double().cpu().numpy()
    return np.argsort(get_label_quality_scores(labels.numpy(), probs), kind="stable")


def cached_order(path: Path, compute) -> np.ndarray:
    """An order computed once per runs folder, so a benchmark stopped after cleanlab's K
    models does not train them again when it is started again."""
    if path.is_file():
        return np.load(path)
    order = compute()
    np.save(path, order)
    return order


def reviewer_answers(order: np.ndarray, n: int, given: np.ndarray, true: np.ndarray,
                     classes) -> list:
    """The corrections of a reviewer who checks order[:n] and knows the true labels."""
    from promix.review.corrections import Correction

    return [Correction("", int(i), classes[given[i]],
                       "keep" if given[i] == true[i] else "relabel", classes[true[i]])
            for i in order[:n].tolist()]


def measure(setting: str, noise: str, runs: Path, results: Path, *, seed: int = SEED,
            budgets=None) -> None:
    """The rows of one noise. seed: the training seed of the N = 0 run and of the retrains;
    the reviewer's orders always come from SEED's N = 0 run (another seed measures how much
    the retrain alone varies, on the same answers). budgets: the N to run (None: the
    setting's, with N = 0)."""
    from promix.data.load import build_dataset
    from promix.report.table import analyze_run
    from promix.review.corrections import write_corrections

    done = {(r["noise"], r["ranking"], r["n"], r.get("seed", SEED)) for r in load(results)}
    cfg = make_config(setting, noise)
    data = build_dataset(cfg.data)
    given, true = data.train.labels.numpy(), data.true_labels.numpy()
    suffix = "" if seed == SEED else f"-s{seed}"
    base_dir = runs / f"{noise}-base"
    row = train_run(cfg, base_dir)  # SEED's: the promix order, so always trained
    if seed != SEED:
        if budgets is not None and 0 not in budgets:
            row = None  # this seed's N = 0 run is not asked for
        else:
            row = train_run(make_config(setting, noise, seed=seed),
                            runs / f"{noise}-base{suffix}")
    if row is not None:
        record(results, setting, noise, "none", 0, 0, float((given != true).mean()), row, done,
               seed)
    orders = {"promix": analyze_run(base_dir).issues.order,
              "random": np.random.default_rng(SEED).permutation(len(given))}
    for ranking in RANKINGS:
        for n in SETTINGS[setting]["budgets"]:
            if (noise, ranking, n, seed) in done or (budgets is not None and n not in budgets):
                continue
            if ranking not in orders:  # cleanlab's K models only when a row needs them
                orders[ranking] = cached_order(
                    runs / f"{noise}-cleanlab-order.npy",
                    lambda: cleanlab_order(make_config(setting, noise), data,
                                           SETTINGS[setting]["folds"]))
            rows = reviewer_answers(orders[ranking], n, given, true, data.classes)
            found = sum(r.decision == "relabel" for r in rows)
            path = write_corrections(runs / f"{noise}-{ranking}-{n}.csv", rows)
            run = train_run(make_config(setting, noise, f"--corrections={path}", seed=seed),
                            runs / f"{noise}-{ranking}-{n}{suffix}")
            left = (int((given != true).sum()) - found) / len(given)
            record(results, setting, noise, ranking, n, found, left, run, done, seed)


def record(results: Path, setting, noise, ranking, n, found, left, run: dict, done,
           seed: int) -> None:
    if (noise, ranking, n, seed) in done:
        return
    row = {"setting": setting, "noise": noise, "ranking": ranking, "n": n, "found": found,
           "remaining_noise": left, **run, "seed": seed, "machine": host.label(),
           "commit": table.git_commit(), "date": time.strftime("%Y-%m-%d")}
    with open(results, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(f"{noise} {ranking} N={n} seed {seed}: found {found}, noise left {left:.1%}, test "
          f"{100 * run['test_accuracy']:.2f}%", flush=True)


def load(path: Path) -> list[dict]:
    return table.load_results(path)


def markdown(rows: list[dict]) -> str:
    """The table of docs/review.md, one block per results file."""
    out = []
    for setting in ("full", "small"):
        part = [r for r in rows if r["setting"] == setting]
        if not part:
            continue
        out.append(f"\n**{setting} setting** ({part[0]['machine']}; "
                   f"`benchmarks/results/review_budget-{setting}.jsonl`)\n")
        out.append("| noise | reviewer shown | N checked | wrong labels found | noise left | "
                   "training seed | test accuracy | selection precision |")
        out.append("|---|---|---:|---:|---:|---:|---:|---:|")
        for r in sorted(part, key=lambda r: (r["noise"], r["ranking"] != "none",
                                             r["ranking"], r["n"], r.get("seed", SEED))):
            shown = "nobody (N = 0)" if r["ranking"] == "none" else r["ranking"] + " order"
            sel = r["selection"].get("precision")
            out.append(f"| {table.NOISES[r['noise']][1]} | {shown} | {r['n']} | {r['found']} | "
                       f"{r['remaining_noise']:.1%} | {r.get('seed', SEED)} | "
                       f"{100 * r['test_accuracy']:.2f}% | "
                       f"{'-' if sel is None else f'{sel:.1%}'} |")
    return "\n".join(out) + "\n"


def parse_args(argv, *, name: str, doc: str, extra=None):
    """The command line both review benchmarks share (this one and annotators.py): the
    setting, `--report`, the runs folder, and what `extra(parser)` adds. Returns (args,
    setting, results file); when it will measure, it also sets two torch threads and makes
    the results folder."""
    ap = argparse.ArgumentParser(description=doc,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    if extra is not None:
        extra(ap)
    ap.add_argument("--protocol", choices=sorted(SETTINGS), default="full")
    ap.add_argument("--small", action="store_true", help="same as --protocol small")
    ap.add_argument("--report", action="store_true", help="only regenerate the doc table")
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / name)
    args = ap.parse_args(argv)
    setting = "small" if args.small else args.protocol
    results = ROOT / "benchmarks" / "results" / f"{name}-{setting}.jsonl"
    if not args.report:
        import torch

        torch.set_num_threads(2)
        results.parent.mkdir(parents=True, exist_ok=True)
    return args, setting, results


def subset_args(ap) -> None:
    ints = lambda text: tuple(int(v) for v in text.split(","))  # noqa: E731
    ap.add_argument("--seed", type=int, default=SEED,
                    help="training seed of the N = 0 run and the retrains; the noisy labels "
                         "and the reviewer's orders stay seed 1's (measures the retrain's "
                         "own spread on the same answers)")
    ap.add_argument("--budgets", type=ints, help="comma-separated N to run, 0 for the N = 0 "
                                                 "run (default: the setting's)")
    ap.add_argument("--noises", type=lambda t: tuple(t.split(",")),
                    help="comma-separated noises (default: the setting's)")


def main(argv=None) -> int:
    args, setting, results = parse_args(argv, name="review_budget", doc=__doc__,
                                        extra=subset_args)
    if not args.report:
        for noise in args.noises or SETTINGS[setting]["noises"]:
            measure(setting, noise, args.runs / setting, results, seed=args.seed,
                    budgets=args.budgets)
    rows = [r for s in SETTINGS
            for r in load(ROOT / "benchmarks" / "results" / f"review_budget-{s}.jsonl")]
    docgen.write_section(DOC, markdown(rows), BEGIN, END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
