"""Finding wrong labels: ProMix's label_quality against cleanlab with K-fold cross-validation.

    python benchmarks/detection.py [--per_class 100] [--epochs 12] [--folds 3] \
        [--settings sym:0.5,asym:0.4] [--out benchmarks/results/detection.json]

On the same noisy CIFAR-10 subset and the same backbone (small_cnn) and epoch budget per model:
- ProMix: one `promix.api.train` run (two peers); its label_quality and is_label_issue come
  from the peers' final predictions on the training set, no cross-validation.
- cleanlab (its recommended workflow): K cross-entropy models (promix's `ce` method), each
  trained on K-1 folds, predict their held-out fold; the out-of-sample probabilities go to
  `cleanlab.filter.find_label_issues` (flags) and `cleanlab.rank.get_label_quality_scores`
  (ranking).
Both are scored against the true labels: AUROC and AUPRC of the ranking, precision, recall
and F1 of the flagged set, and wall time. Needs the bench extras: pip install 'promix[bench]'.

--folder: the user's case instead. Each setting writes an image folder made from CIFAR-10
(--classes classes, --per_class images each, exactly `rate` of each class in a wrong folder,
sym or class-dependent asym: benchmarks/noisy_folder.py), and ProMix trains on it as
`promix train --data FOLDER --epochs=E` does (the `user` preset, its 20% held out); cleanlab's
folds train `ce` on the same training images with the same epochs. Also scored: the flagged
count against the truly wrong count, and the estimated number of wrong labels. With
--methods promix, the cleanlab rows of an existing --out file of the same settings are kept,
not measured again (a change to promix's flags does not touch cleanlab's folds).
    python benchmarks/detection.py --folder --classes 4 --per_class 300 --epochs 15 \
        --settings sym:0.1,sym:0.25,sym:0.4,asym:0.1,asym:0.25,asym:0.4 \
        --out benchmarks/results/detection-folder-s123.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from promix.api import load_nets, train_config
from promix.config import (
    Config,
    DataConfig,
    ModelConfig,
    OptimConfig,
    ProMixConfig,
    RunConfig,
    ScheduleConfig,
    load_preset,
)
from promix.data.augment import normalize
from promix.data.base import Dataset
from promix.data.cifar import load_cifar
from promix.data.load import build_dataset
from promix.hardware import autocast
from promix.inference import predict
from promix.issues import QUALITY_METHODS, auprc, auroc, detection_metrics, find_label_issues
from promix.models.plan import plan_model
from promix.report.table import FILTER, late_probs
from promix.runs import load_tensors
from promix.trainer import Trainer

sys.path.insert(0, str(Path(__file__).resolve().parent))
import docgen  # noqa: E402
import host  # noqa: E402
from noisy_folder import CIFAR10_PAIRS, cifar_subset, make_noisy_folder  # noqa: E402
from paths import CIFAR10_ARCHIVE, ROOT  # noqa: E402

DOC = ROOT / "docs" / "label-issues.md"
TEST_SIZE = 2000  # test images for the accuracy sanity check (evaluated every epoch)


def make_config(args, kind: str, rate: float, method: str, out_dir: str) -> Config:
    return Config(
        preset="detection-benchmark",
        data=DataConfig(dataset="cifar10", root=str(args.root), noise=kind, noise_rate=rate,
                        per_class=args.per_class, noise_seed=args.seed),
        model=ModelConfig(name="small_cnn", width=args.width),
        optim=OptimConfig(batch_size=args.batch_size),
        schedule=ScheduleConfig(epochs=args.epochs, warmup_epochs=args.warmup_epochs,
                                prior_momentum=None),
        promix=promix_settings(args.promix, args.tau),
        run=RunConfig(method=method, seed=args.seed, progress=False, checkpoint_every=0,
                      out_dir=out_dir),
    )


def run_promix(cfg: Config, data: Dataset, out_dir: Path, *, extras: bool = True) -> dict:
    """Train ProMix (report included, as a user gets it) and score its label_quality.
    extras: also score the other rankings (label_quality definitions, flip, neighbours)."""
    start = time.perf_counter()
    out_dir.mkdir(parents=True)
    result = train_config(cfg, data, run_dir=out_dir).result
    row = {"seconds": time.perf_counter() - start, "test_accuracy": result.test_accuracy}
    out = load_tensors(out_dir / "train_outputs.safetensors")
    row = flag_scores(out, data.true_labels, cfg.promix.tau) | row
    if not extras:
        return row
    probs = [out[f"logits{k}"].softmax(1) for k in (1, 2)]
    labels, wrong = data.train.labels, (data.true_labels != data.train.labels).numpy()
    # the other label_quality definitions, and one peer alone, on the same predictions
    row["quality_methods"] = {m: score(labels, probs, wrong, quality=m) for m in QUALITY_METHODS}
    row["single_peer"] = score(labels, probs[:1], wrong)
    # the pseudo heads (h_AP): joined to the primary heads, and alone
    pseudo = [out[f"pseudo_logits{k}"].softmax(1) for k in (1, 2)]
    row["quality_methods"]["with_pseudo_heads"] = score(
        labels, [(probs[0] + pseudo[0]) / 2, (probs[1] + pseudo[1]) / 2], wrong)
    row["quality_methods"]["pseudo_heads_only"] = score(labels, pseudo, wrong)
    issues = find_label_issues(labels, *probs)
    row["quality_methods"] |= flip_and_neighbours(cfg, data, out_dir, probs,
                                                  issues.label_quality, wrong)
    return row


def flag_scores(out: dict, true_labels: torch.Tensor, tau: float) -> dict:
    """The default flags and ranking of a run's train_outputs against the true labels, the
    suggestions, and the other flag rules on the same predictions: every peer's own count,
    and every sample the peers' mean assigns to another class."""
    labels = out["noisy_labels"]
    probs = [out[f"logits{k}"].float().softmax(1) for k in (1, 2)]
    late = late_probs(out)
    issues = find_label_issues(labels, *probs, suggest_threshold=tau, filter_by=FILTER,
                               count_probs=late)  # what the run's report flags
    wrong = (true_labels != labels).numpy()
    row = with_ratio(detection_metrics(issues.label_quality, issues.is_label_issue, wrong))
    return row | {
        "filter_by": FILTER, "counted_from": "late_probs" if late else "final_probs",
        "suggested": int((issues.suggested_label >= 0).sum()),
        "suggested_correct": int((issues.suggested_label == true_labels.numpy()).sum()),
        "estimated_wrong": int(issues.joint.sum() - np.trace(issues.joint)),
        "last_epoch_flags": score(labels, probs, wrong),  # prune_by_noise_rate, final probs
        "every_peer_flags": score(labels, probs, wrong, filter_by="every_peer"),
        "argmax_flags": score(labels, probs, wrong, filter_by="predicted_neq_given")}


def rescore(results: Path, keep: Path) -> None:
    """Score the flags of kept --folder runs again with the current promix.issues (no
    training: the predictions are the runs' train_outputs), keeping the measured times."""
    record = json.loads(results.read_text())
    for r in record["results"]:
        kind, rate = r["setting"].split(", ")[2].split()
        run = keep / r.get("run", f"promix-{kind}-{float(rate.rstrip('%')) / 100:g}")
        out = load_tensors(run / "train_outputs.safetensors")
        kept = {k: r["promix"][k] for k in ("seconds", "test_accuracy")}
        r["promix"] = flag_scores(out, out["true_labels"], record["budget"]["tau"]) | kept
    record["rescored"] = f"flags scored again from {keep} on {time.strftime('%Y-%m-%d %H:%M')}"
    record["table"] = table(record["results"])
    results.write_text(json.dumps(record, indent=2) + "\n")


def flip_and_neighbours(cfg: Config, data: Dataset, run_dir: Path, probs: list,
                        quality: np.ndarray, wrong: np.ndarray, k: int = 20) -> dict:
    """Two rankings tried on top of label_quality (docs/label-issues.md): the peers' mean
    probability of the given label over the image and its mirror (test-time flip), and a
    k-nearest-neighbour vote of the given labels in each peer's feature space, alone and as
    a rank average with self-confidence."""
    nets = load_nets(run_dir, cfg)
    mean, std = (torch.tensor(v) for v in data.normalization())
    x = normalize(data.train.images, mean, std, channels_last=False)
    labels = data.train.labels
    flipped, votes = [], torch.zeros(len(labels))
    with torch.no_grad():
        for net in nets:
            flipped.append(net(x.flip(3)).logits.softmax(1))
            phi = torch.nn.functional.normalize(net.backbone(x), dim=1)
            sim = (phi @ phi.T).fill_diagonal_(-2)  # never one's own neighbour
            near = labels[sim.topk(k, dim=1).indices]  # (N, k) given labels of the neighbours
            votes += (near == labels[:, None]).float().mean(1) / len(nets)
    rank = lambda q: np.argsort(np.argsort(q)) / (len(q) - 1)  # noqa: E731
    both = (rank(quality) + rank(votes.numpy())) / 2
    ranking = lambda q: {"auroc": auroc(1 - q, wrong), "auprc": auprc(1 - q, wrong)}  # noqa: E731
    tta = [(p + f) / 2 for p, f in zip(probs, flipped, strict=True)]
    return {"flip_tta": score(labels, tta, wrong),
            f"knn{k}_vote": ranking(votes.numpy()), f"knn{k}_rank_mean": ranking(both)}


def score(labels, probs: list, wrong: np.ndarray, **kwargs) -> dict:
    issues = find_label_issues(labels, *probs, **kwargs)
    return with_ratio(detection_metrics(issues.label_quality, issues.is_label_issue, wrong))


def with_ratio(metrics: dict) -> dict:
    """The metrics plus the flagged count over the truly wrong count (1 = as many)."""
    return metrics | {"flagged_per_wrong": metrics["flagged"] / max(metrics["wrong"], 1)}


def promix_settings(which: str, tau: float) -> ProMixConfig:
    """paper: the reference's ProMix (fixed ρ, uniform quota, six passes per peer); user: the
    [promix] section of the `user` preset, what `promix train --data` runs (ρ estimated per
    class, per-class quota, the shared mixed batch: four passes per peer)."""
    base = ProMixConfig() if which == "paper" else load_preset("user").promix
    return replace(base, tau=tau)


def fold_index(labels: torch.Tensor, folds: int, seed: int) -> np.ndarray:
    """Fold of every sample (N,), stratified by the given label."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(labels), dtype=np.int64)
    for c in labels.unique().tolist():
        members = np.flatnonzero(labels.numpy() == c)
        fold[rng.permutation(members)] = np.arange(len(members)) % folds
    return fold


def run_cleanlab(cfg: Config, data: Dataset, folds: int) -> dict:
    """K-fold out-of-sample probabilities from `ce` models, then cleanlab."""
    from cleanlab.filter import find_label_issues as cl_find
    from cleanlab.rank import get_label_quality_scores

    start = time.perf_counter()
    labels = data.train.labels
    fold = fold_index(labels, folds, cfg.run.seed)
    probs = np.zeros((len(labels), data.num_classes))
    mean, std = data.normalization()
    for k in range(folds):
        fit_idx = torch.from_numpy(np.flatnonzero(fold != k))
        held = torch.from_numpy(np.flatnonzero(fold == k))
        part = replace(data, train=data.train.subset(fit_idx), test=None,
                       true_labels=data.true_labels[fit_idx], mean=mean, std=std)
        trainer = Trainer(cfg, part)
        trainer.fit()
        out = predict(trainer.state.nets[0], data.train.images[held].to(trainer.device),
                      trainer.mean, trainer.std, batch_size=cfg.run.eval_batch_size,
                      autocast=autocast(trainer.device, torch.float32))
        probs[held.numpy()] = out.probs.double().cpu().numpy()
        print(f"  cleanlab fold {k + 1}/{folds}: {time.perf_counter() - start:.0f} s", flush=True)
    y = labels.numpy()
    flagged = cl_find(y, probs)  # default filter_by="prune_by_noise_rate"
    quality = get_label_quality_scores(y, probs)  # default method="self_confidence"
    seconds = time.perf_counter() - start
    wrong = (data.true_labels != labels).numpy()
    return with_ratio(detection_metrics(quality, flagged, wrong)) | {"seconds": seconds}


def folder_config(args, root: Path, out_dir: str, weights: str | None = None) -> Config:
    """What `promix train --data root --epochs=E` runs (the user preset), quietly; with
    `weights`, its backbone starts from that file (small_cnn, as pretrain_backbone made it)."""
    cfg = load_preset("user")
    cfg.data = replace(cfg.data, dataset="folder", root=str(root),
                       cache_dir=str(Path(out_dir) / "cache"))
    if weights:
        cfg.model = replace(Config().model, name="small_cnn", weights=weights)
    cfg.schedule = replace(cfg.schedule, epochs=args.epochs)
    cfg.promix = replace(cfg.promix, tau=args.tau)
    cfg.run = replace(cfg.run, seed=args.seed, progress=False, checkpoint_every=0,
                      out_dir=out_dir)
    return cfg


def run_folder_settings(args, tmp: str, save) -> list[dict]:
    """Every --settings entry on its own CIFAR-10 folder, ProMix (user preset) and cleanlab."""
    names = CIFAR10_PAIRS[: args.classes]
    cifar = load_cifar("cifar10", args.root)
    images, labels = cifar_subset(cifar.train, names, args.per_class)
    weights = pretrain_backbone(args, cifar, names, tmp) if args.pretrain else None
    results = []
    before = {r["setting"]: r for r in json.loads(args.out.read_text())["results"]} \
        if args.out.is_file() and "cleanlab" not in args.methods else {}
    for setting in args.settings.split(","):
        kind, rate = setting.split(":")
        root = Path(tmp) / f"folder-{kind}-{rate}"
        truth = make_noisy_folder(root, images, labels, names, kind=kind, rate=float(rate),
                                  seed=args.seed)
        cfg = folder_config(args, root, tmp, weights)
        plan_model(cfg)  # offline, the fallback model for ProMix and cleanlab's folds alike
        data = build_dataset(cfg.data)
        (Path(tmp) / f"truth-{kind}-{rate}.json").write_text(json.dumps(truth))
        true = torch.tensor([data.classes.index(truth[p]) for p in data.train.paths])
        data = replace(data, true_labels=true)
        wrong = int((true != data.train.labels).sum())
        print(f"folder {setting}: {len(data.train)} training images, {wrong} wrong", flush=True)
        row = {"setting": f"folder, {len(names)} classes, {kind} {float(rate):.0%}"
                          + (", pretrained" if weights else ""),
               "train_size": len(data.train), "classes": list(data.classes)}
        if "promix" in args.methods:
            row["run"] = f"promix-{kind}-{rate}"  # its folder under --keep (for --rescore)
            row["promix"] = run_promix(cfg, data, Path(tmp) / row["run"], extras=False)
            print(f"  promix: {row['promix']['seconds']:.0f} s, flagged "
                  f"{row['promix']['flagged']} / {wrong}, F1 {row['promix']['f1']:.3f}",
                  flush=True)
        if "cleanlab" in args.methods:
            ce_cfg = replace(cfg, run=replace(cfg.run, method="ce"))
            row["cleanlab"] = run_cleanlab(ce_cfg, data, args.folds) | {"epochs": args.epochs}
        elif "cleanlab" in before.get(row["setting"], {}):  # same folder, same seed: kept
            same = before[row["setting"]]["train_size"] == row["train_size"]
            assert same, f"{args.out} was measured on other data: run cleanlab again"
            row["cleanlab"] = before[row["setting"]]["cleanlab"] | {"kept_from": str(args.out)}
        results.append(row)
        save(results)
    return results


def pretrain_backbone(args, cifar, names, tmp: str) -> str:
    """The offline stand-in for the user preset's pretrained backbone: small_cnn trained with
    cross-entropy on clean CIFAR-10 images of every class *not* in the folder (the first
    PRETRAIN_PER_CLASS training images of each, PRETRAIN_EPOCHS epochs). Returns its
    model.safetensors, which ProMix and cleanlab's fold models then both start from."""
    from pretrained import PRETRAIN_EPOCHS, PRETRAIN_PER_CLASS, config, dataset

    others = tuple(i for i, c in enumerate(cifar.train.classes) if c not in names)
    clean = dataset(cifar, others, PRETRAIN_PER_CLASS, noise="none", seed=args.seed)
    run = train_config(config("ce", PRETRAIN_EPOCHS, args.seed, tmp), clean)
    print(f"pretrained small_cnn on {len(clean.train)} clean images of "
          f"{', '.join(cifar.train.classes[i] for i in others)}: test accuracy "
          f"{run.result.test_accuracy:.3f}", flush=True)
    return str(run.run_dir / "model.safetensors")


def run_cifar_settings(args, tmp: str, save) -> list[dict]:
    """Every --settings entry on the noisy CIFAR-10 subset, ProMix and cleanlab."""
    results = []
    for setting in args.settings.split(","):
        kind, rate = setting.split(":")
        cfg = make_config(args, kind, float(rate), "promix", tmp)
        data = build_dataset(cfg.data)
        data = replace(data, test=data.test.subset(torch.arange(TEST_SIZE)))
        print(f"{setting}: {len(data.train)} training images, "
              f"{float((data.true_labels != data.train.labels).float().mean()):.1%} wrong",
              flush=True)
        row = {"setting": f"CIFAR-10 {kind} {float(rate):.0%}",
               "train_size": len(data.train)}
        if "promix" in args.methods:
            row["promix"] = run_promix(cfg, data, Path(tmp) / f"promix-{kind}")
            print(f"  promix: {row['promix']['seconds']:.0f} s, "
                  f"AUROC {row['promix']['auroc']:.3f}", flush=True)
        if "cleanlab" in args.methods:
            epochs = args.cleanlab_epochs or args.epochs
            ce_cfg = replace(cfg, run=replace(cfg.run, method="ce"),
                             schedule=replace(cfg.schedule, epochs=epochs))
            row["cleanlab"] = run_cleanlab(ce_cfg, data, args.folds) | {"epochs": epochs}
        results.append(row)
        save(results)
    return results


def folder_table(files: list[Path]) -> str:
    """The docs/label-issues.md table of --folder results, one row per setting and seed."""
    head = ("| setting | backbone | seed | wrong | ProMix flagged | ProMix P / R / F1 | "
            "counted at the last epoch: flagged, F1 | cleanlab flagged | cleanlab P / R / F1 | "
            "AUROC ProMix / cleanlab | wall time ProMix / cleanlab |\n" + "|---" * 11 + "|")
    lines = [head]
    times = lambda m: f"{m['flagged']} ({m['flagged_per_wrong']:.2f}x)"  # noqa: E731
    prf = lambda m: f"{m['precision']:.1%} / {m['recall']:.1%} / {m['f1']:.3f}"  # noqa: E731
    # the flags before the count moved to late_probs: prune_by_noise_rate on the final ones
    last = lambda m: (f"{times(m['last_epoch_flags'])}, {m['last_epoch_flags']['f1']:.3f}"  # noqa: E731
                      if "last_epoch_flags" in m else "-")
    for file in files:
        run = json.loads(Path(file).read_text())
        seed = run["command"].split("--seed ")[1].split()[0] if "--seed " in run["command"] \
            else "123"
        start = "pretrained" if run["budget"].get("pretrain") else "scratch"
        for r in run["results"]:
            p, c = r["promix"], r["cleanlab"]
            kind = r["setting"].split(", ")[2]
            lines.append(
                f"| {kind} | {start} | {seed} | {p['wrong']} of {r['train_size']} | "
                f"{times(p)} | {prf(p)} | {last(p)} | {times(c)} | "
                f"{prf(c)} | {p['auroc']:.3f} / {c['auroc']:.3f} | "
                f"{p['seconds']:.0f} / {c['seconds']:.0f} s |")
    return "\n".join(lines)


def table(results: list[dict]) -> str:
    head = ("| setting | method | AUROC | AUPRC | precision | recall | F1 | flagged | wrong "
            "| wall time |\n|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in results:
        for name, key in (("ProMix label_quality", "promix"), ("cleanlab, K-fold CE",
                                                                 "cleanlab")):
            if key not in r:
                continue
            m = r[key]
            if key == "cleanlab" and "epochs" in m:
                name += f" ({m['epochs']} epochs)"
            lines.append(
                f"| {r['setting']} | {name} | {m['auroc']:.3f} | {m['auprc']:.3f} | "
                f"{m['precision']:.1%} | {m['recall']:.1%} | {m['f1']:.3f} | {m['flagged']} | "
                f"{m['wrong']} | {m['seconds']:.0f} s |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=CIFAR10_ARCHIVE, help="CIFAR-10 archive/folder")
    ap.add_argument("--per_class", type=int, default=100, help="training images per class")
    ap.add_argument("--epochs", type=int, default=12, help="epochs of every model")
    ap.add_argument("--warmup_epochs", type=int, default=None, help="None: auto")
    ap.add_argument("--folds", type=int, default=3, help="K of cleanlab's cross-validation")
    ap.add_argument("--cleanlab-epochs", type=int, default=None,
                    help="epochs of each cleanlab fold model (default: --epochs); more epochs "
                         "give cleanlab ProMix's compute")
    ap.add_argument("--methods", default="promix,cleanlab", help="which to run")
    ap.add_argument("--width", type=int, default=16, help="small_cnn first-stage width")
    ap.add_argument("--batch_size", type=int, default=128)
    ap.add_argument("--tau", type=float, default=0.95, help="MHCS/LGA/suggestion threshold")
    ap.add_argument("--promix", choices=("paper", "user"), default="paper",
                    help="ProMix's settings: the reference's, or the user preset's")
    ap.add_argument("--folder", action="store_true",
                    help="score the user's case: image folders made from CIFAR-10, user preset")
    ap.add_argument("--classes", type=int, default=4, help="--folder: how many classes")
    ap.add_argument("--pretrain", action="store_true",
                    help="--folder: start ProMix and cleanlab from a small_cnn pretrained on "
                         "the other CIFAR-10 classes (the offline stand-in for a pretrained "
                         "backbone)")
    ap.add_argument("--keep", type=Path, default=None,
                    help="keep every run directory (and the folders' truth) here instead of "
                         "in a temporary folder")
    ap.add_argument("--seed", type=int, default=123)
    ap.add_argument("--settings", default="sym:0.5,asym:0.4", help="noise kind:rate, ...")
    ap.add_argument("--out", type=Path, default=None,
                    help="default: benchmarks/results/detection.json, with --folder "
                         "detection-folder-s<seed>.json")
    ap.add_argument("--rescore", type=Path, default=None, metavar="KEEP_DIR",
                    help="score the flags of --out again from the runs kept in KEEP_DIR "
                         "(--keep), with the current code; no training")
    ap.add_argument("--table", type=Path, nargs="+",
                    help="only write the --folder table of these result files into "
                         "docs/label-issues.md (no run)")
    args = ap.parse_args(argv)
    if args.table:
        text = folder_table(args.table)
        docgen.write_section(DOC, text, *docgen.markers("detection folder table"))
        print(text)
        return
    args.out = args.out or ROOT / "benchmarks" / "results" / (
        f"detection-folder-s{args.seed}.json" if args.folder else "detection.json")
    if args.rescore:
        rescore(args.out, args.rescore)
        print(f"rescored {args.out}")
        return
    if not args.root.exists():
        sys.exit(f"{args.root} not found: pass --root PATH/cifar-10-python.tar.gz")

    def save(results: list[dict]) -> None:
        """Write the results so far (a long sweep keeps what it measured if it is stopped)."""
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "command": " ".join(["python", *sys.argv]),
            "machine": host.describe(),
            "budget": {k: getattr(args, k) for k in (
                "per_class", "epochs", "warmup_epochs", "folds", "width", "batch_size", "tau",
                "promix", "folder", "classes", "pretrain")},
            "results": results,
            "table": table(results),
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        }, indent=2) + "\n")

    run = run_folder_settings if args.folder else run_cifar_settings
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        results = run(args, str(args.keep), save)
    else:
        with tempfile.TemporaryDirectory(prefix="promix-detection-") as tmp:
            results = run(args, tmp, save)
    print("\n" + table(results))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
