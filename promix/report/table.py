"""The label-issue table of a run directory: label_issues.csv, class_summary.csv and
issues_summary.json, computed from train_outputs.safetensors (no model is re-run).

What is estimated and what is measured stay apart: without ground truth every number about the
noise is an estimate from the peers' predictions (the calibrated confident joint, marked
`estimated`); precision, recall and AUROC appear only against real truth, the true labels of
synthetic or CIFAR-N noise, or the labels a person verified (`--truth=FILE`), named with
their source and size.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from .. import runs
from ..confident import noise_estimates
from ..issues import (
    LabelIssues,
    class_summary,
    detection_metrics,
    find_label_issues,
    health_score,
    selected_by,
    transition_matrix,
)
from ..selection import high_confidence
from ..truth import Truth, data_base, read_truth, relative_path

QUALITY = "self_confidence"  # the label_quality definition (docs/label-issues.md says why)
# is_label_issue: per given class, as many as the confident joint of the late probabilities
# (averaged over the second half of training) estimates wrong, lowest label_quality first
FILTER = "rank_by_class"
# Shown with the estimates of a run whose peers started from random weights, without truth:
# measured on small folders (docs/label-issues.md), such a count is above the true one.
SCRATCH_CAVEAT = ("the peers started from random weights: a weak network's own mistakes count "
                  "as wrong labels, so this estimate runs high on small data; read it as an "
                  "upper bound, or train from a pretrained backbone (docs/label-issues.md)")


@dataclass(frozen=True)
class RunIssues:
    """Everything the report needs about the training labels of one run; arrays are (N,)."""

    classes: tuple[str, ...]
    labels: np.ndarray  # given (noisy) labels
    true_labels: np.ndarray | None  # synthetic or CIFAR-N noise only: diagnostics
    issues: LabelIssues
    selected_by: np.ndarray  # css | mhcs | lga | none, or all for a cross-entropy run
    paths: tuple[str, ...] | None  # absolute image paths (folder and CSV data)
    method: str
    tau: float  # the run's τ: MHCS, and the confidence a suggested label needs
    truth_source: str | None = None  # where true_labels come from
    verified: Truth | None = None  # labels a person checked (--truth), a subset
    base: Path | None = None  # the data root the paths are shown relative to
    counted_late: bool = False  # the count came from late_probs (else the final probabilities)
    from_scratch: bool = False  # the peers started from random weights (no pretrained, --weights)

    @property
    def is_wrong(self) -> np.ndarray | None:
        return None if self.true_labels is None else self.true_labels != self.labels

    def shown_path(self, i: int) -> str:
        """The file of sample i relative to the data root ('' without files)."""
        return "" if self.paths is None else relative_path(self.paths[i], self.base)


def analyze_run(run_dir: Path, *, quality: str = QUALITY, truth: str | None = None) -> RunIssues:
    """Label issues of a finished run from its train_outputs.safetensors and config.
    truth: a verified-labels CSV (default: the run's data.truth)."""
    run_dir = Path(run_dir)
    outputs_path = run_dir / "train_outputs.safetensors"
    if not outputs_path.is_file():
        raise FileNotFoundError(f"{run_dir} has no train_outputs.safetensors: the run did not "
                                "finish; train it to the end (or resume it) first")
    cfg = runs.load_config(run_dir)
    info = json.loads((run_dir / "data.json").read_text())
    out = {k: v.numpy() for k, v in runs.load_tensors(outputs_path).items()}
    labels = out["noisy_labels"].astype(np.int64)
    probs = [_softmax(out[f"logits{k}"]) for k in (1, 2) if f"logits{k}" in out]
    tau = cfg.promix.tau
    late = late_probs(out)
    issues = find_label_issues(labels, *probs, quality=quality, suggest_threshold=tau,
                               filter_by=FILTER, count_probs=late)
    if cfg.run.method == "ce":
        source = np.full(len(labels), "all")  # cross-entropy trains on every sample
    else:
        confident = np.any([high_confidence(torch.from_numpy(p), torch.from_numpy(labels),
                                            tau).numpy() for p in probs], axis=0)
        source = selected_by(css=_any(out, "css"), confident=confident, chosen=_any(out, "chosen"))
    if "verified" in out:  # labels a reviewer verified (corrections.csv): never flagged
        reviewed = out["verified"].astype(bool)
        issues = replace(issues, is_label_issue=issues.is_label_issue & ~reviewed,
                         suggested_label=np.where(reviewed, -1, issues.suggested_label))
        source = np.where(reviewed, "verified", source)
    paths = _read_paths(run_dir)
    base = data_base(cfg.data.dataset, info.get("root") or cfg.data.root)
    truth = truth or cfg.data.truth
    verified = None if not truth else read_truth(
        truth, classes=info["classes"], size=len(labels), paths=paths, base=base)
    known = "true_labels" in out
    return RunIssues(
        classes=tuple(info["classes"]), labels=labels,
        true_labels=out["true_labels"].astype(np.int64) if known else None,
        issues=issues, selected_by=source, paths=paths, method=cfg.run.method, tau=tau,
        truth_source=_truth_source(cfg.data) if known else None, verified=verified, base=base,
        counted_late=late is not None,
        from_scratch=not (cfg.model.pretrained or cfg.model.weights))


def late_probs(out: dict) -> list | None:
    """The peers' probabilities averaged over the second half of training, from a run's
    train_outputs (what FILTER counts from); None for a run without them (cross-entropy, or
    one trained before they were saved), whose count then comes from the final ones."""
    late = [out[f"late_probs{k}"] for k in (1, 2) if f"late_probs{k}" in out]
    return late or None


def _truth_source(data_cfg) -> str:
    if data_cfg.noise_file:
        return f"CIFAR-N labels ({data_cfg.noise})"
    return f"synthetic noise ({data_cfg.noise} {data_cfg.noise_rate:g}): the labels before it"


def issue_rows(run: RunIssues) -> list[dict]:
    """One dict per training sample, most suspicious first: the rows of label_issues.csv."""
    names, iss = run.classes, run.issues
    verified = {} if run.verified is None else dict(zip(run.verified.index.tolist(),
                                                        run.verified.labels.tolist(),
                                                        strict=True))
    rows = []
    for i in iss.order.tolist():
        suggested = int(iss.suggested_label[i])
        row = {"index": i}
        if run.paths is not None:
            row["path"] = run.shown_path(i)
        row |= {
            "given_label": names[run.labels[i]],
            "predicted_label": names[iss.predicted_label[i]],
            "label_quality": f"{iss.label_quality[i]:.6f}",
            "is_label_issue": bool(iss.is_label_issue[i]),
            "suggested_label": names[suggested] if suggested >= 0 else "",
            "selected_by": str(run.selected_by[i]),
            "given_id": int(run.labels[i]),
            "predicted_id": int(iss.predicted_label[i]),
            "suggested_id": suggested,
        }
        if run.true_labels is not None:
            row["true_label"] = names[run.true_labels[i]]
        if run.verified is not None:
            row["verified_label"] = names[verified[i]] if i in verified else ""
        rows.append(row)
    return rows


def summarize(run: RunIssues) -> dict:
    """issues_summary.json: counts and estimates always; measurements only against truth."""
    iss = run.issues
    est = noise_estimates(run.labels, iss.joint)
    per = est["per_class"]
    summary = {
        "samples": len(run.labels),
        "classes": list(run.classes),
        "method": run.method,
        "label_quality": QUALITY,
        "filter_by": FILTER,
        "counted_from": "late_probs" if run.counted_late else "final_probs",
        "suggest_threshold": run.tau,
        "label_issues": int(iss.is_label_issue.sum()),
        "suggested_labels": int((iss.suggested_label >= 0).sum()),
        "selected_by": {s: int((run.selected_by == s).sum()) for s in np.unique(run.selected_by)},
        "health_score": health_score(iss),  # the estimated clean share
        "estimated": {
            "how": "calibrated confident joint of the peers' predictions"
                   + (" averaged over the second half of training" if run.counted_late else "")
                   + " (no ground truth)",
            "wrong_labels": est["wrong"],
            "noise_rate": est["noise_rate"],
            "noise_rate_interval_95": est["noise_rate_interval"],
            "per_class": [{"class": c, "size": int(per["size"][j]), "wrong": int(per["wrong"][j]),
                           "noise_rate": float(per["noise_rate"][j]),
                           "interval_95": [float(per["low"][j]), float(per["high"][j])]}
                          for j, c in enumerate(run.classes)],
            # T̂[i, j] = P̂(given = j | true = i), the convention of noise.json
            "transition_matrix": est["transition_matrix"].round(4).tolist(),
        },
    }
    if run.from_scratch and run.true_labels is None:
        summary["estimated"]["caveat"] = SCRATCH_CAVEAT
    if run.true_labels is not None:
        summary["truth"] = _measured(run, np.arange(len(run.labels)), run.true_labels,
                                     run.truth_source) | _full_truth(run, est)
    elif run.verified is not None:
        v = run.verified
        summary["truth"] = _measured(run, v.index, v.labels, v.source) | {
            "not_in_training": v.not_in_training}
    return summary


def _measured(run: RunIssues, index: np.ndarray, true: np.ndarray, source: str) -> dict:
    """Detection quality on the samples `index` whose true labels are `true`."""
    iss, wrong = run.issues, true != run.labels[index]
    return {"source": source, "size": len(index), "wrong": int(wrong.sum()),
            "noise_rate": float(wrong.mean()),
            "detection": detection_metrics(iss.label_quality[index],
                                           iss.is_label_issue[index], wrong)}


def _full_truth(run: RunIssues, est: dict) -> dict:
    c = len(run.classes)
    true_t = transition_matrix(run.true_labels, run.labels, c)
    return {"transition_matrix": true_t.round(4).tolist(),
            "transition_matrix_mae": float(np.abs(true_t - est["transition_matrix"]).mean()),
            "predicted_accuracy": float((run.issues.predicted_label == run.true_labels).mean())}


def class_rows(run: RunIssues) -> list[dict]:
    """One dict per class: the rows of class_summary.csv."""
    kept = run.selected_by != "none"
    s = class_summary(run.labels, run.issues, len(run.classes), selected=kept)
    rows = []
    for j, name in enumerate(run.classes):
        row = {"class_id": j, "class": name, "size": int(s["size"][j]),
               "selected": int(s["selected"][j]), "issues": int(s["issues"][j]),
               "estimated_noise_rate": f"{s['estimated_noise_rate'][j]:.4f}",
               "estimated_low_95": f"{s['low'][j]:.4f}", "estimated_high_95": f"{s['high'][j]:.4f}"}
        if run.true_labels is not None:
            members = run.labels == j
            rate = run.is_wrong[members].mean() if members.any() else 0.0
            row["true_noise_rate"] = f"{rate:.4f}"
        rows.append(row)
    return rows


def write_tables(run_dir: Path, run: RunIssues) -> dict:
    """Write label_issues.csv, class_summary.csv and issues_summary.json; return the summary."""
    run_dir = Path(run_dir)
    _write_csv(run_dir / "label_issues.csv", issue_rows(run))
    _write_csv(run_dir / "class_summary.csv", class_rows(run))
    summary = summarize(run)
    runs.write_json(run_dir / "issues_summary.json", summary)
    return summary


def _write_csv(path: Path, rows: list[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


def _read_paths(run_dir: Path) -> tuple[str, ...] | None:
    """Absolute image paths from noisy_labels.csv (None for data without files)."""
    if not (run_dir / "noisy_labels.csv").is_file():
        return None
    rows = runs.read_labels(run_dir)
    return tuple(r["path"] for r in rows) if rows and "path" in rows[0] else None


def _any(outputs: dict, name: str) -> np.ndarray:
    """Union over peers of a saved uint8 mask (N,)."""
    return np.any([outputs[k].astype(bool) for k in outputs
                   if k.startswith(name) and k[len(name):].isdigit()], axis=0)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = np.exp(z - z.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)
