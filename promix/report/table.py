"""The label-issue table of a run directory: label_issues.csv, class_summary.csv and
issues_summary.json, computed from train_outputs.safetensors (no model is re-run)."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from .. import runs
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

QUALITY = "self_confidence"  # the label_quality definition (docs/label-issues.md says why)
THRESHOLD = 0.5  # is_label_issue: ensemble argmax ≠ given label and label_quality < this


@dataclass(frozen=True)
class RunIssues:
    """Everything the report needs about the training labels of one run; arrays are (N,)."""

    classes: tuple[str, ...]
    labels: np.ndarray  # given (noisy) labels
    true_labels: np.ndarray | None  # when known (benchmarks, CIFAR-N): diagnostics only
    issues: LabelIssues
    selected_by: np.ndarray  # css | mhcs | lga | none, or all for a cross-entropy run
    paths: tuple[str, ...] | None
    method: str
    tau: float  # the run's τ: MHCS, and the confidence a suggested label needs

    @property
    def is_wrong(self) -> np.ndarray | None:
        return None if self.true_labels is None else self.true_labels != self.labels


def analyze_run(run_dir: Path, *, quality: str = QUALITY,
                threshold: float = THRESHOLD) -> RunIssues:
    """Label issues of a finished run from its train_outputs.safetensors and config."""
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
    issues = find_label_issues(labels, *probs, quality=quality, threshold=threshold,
                               suggest_threshold=tau)
    if cfg.run.method == "ce":
        source = np.full(len(labels), "all")  # cross-entropy trains on every sample
    else:
        confident = np.any([high_confidence(torch.from_numpy(p), torch.from_numpy(labels),
                                            tau).numpy() for p in probs], axis=0)
        source = selected_by(css=_any(out, "css"), confident=confident, chosen=_any(out, "chosen"))
    if "verified" in out:  # labels a reviewer verified (corrections.csv): never flagged
        verified = out["verified"].astype(bool)
        issues = replace(issues, is_label_issue=issues.is_label_issue & ~verified,
                         suggested_label=np.where(verified, -1, issues.suggested_label))
        source = np.where(verified, "verified", source)
    return RunIssues(
        classes=tuple(info["classes"]), labels=labels,
        true_labels=out["true_labels"].astype(np.int64) if "true_labels" in out else None,
        issues=issues, selected_by=source, paths=_read_paths(run_dir / "noisy_labels.csv"),
        method=cfg.run.method, tau=tau,
    )


def issue_rows(run: RunIssues) -> list[dict]:
    """One dict per training sample, most suspicious first: the rows of label_issues.csv."""
    names, iss = run.classes, run.issues
    rows = []
    for i in iss.order.tolist():
        suggested = int(iss.suggested_label[i])
        row = {"index": i}
        if run.paths is not None:
            row["path"] = run.paths[i]
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
        rows.append(row)
    return rows


def summarize(run: RunIssues) -> dict:
    """issues_summary.json: counts, health score, transition matrices, detection quality."""
    c, iss = len(run.classes), run.issues
    summary = {
        "samples": len(run.labels),
        "classes": list(run.classes),
        "method": run.method,
        "label_quality": QUALITY,
        "threshold": THRESHOLD,
        "suggest_threshold": run.tau,
        "health_score": health_score(run.labels, iss),
        "label_issues": int(iss.is_label_issue.sum()),
        "suggested_labels": int((iss.suggested_label >= 0).sum()),
        "selected_by": {s: int((run.selected_by == s).sum()) for s in np.unique(run.selected_by)},
        # rows: the ensemble's prediction (a stand-in for the true class), columns: given
        "estimated_transition_matrix": transition_matrix(
            iss.predicted_label, run.labels, c).round(4).tolist(),
    }
    if run.true_labels is not None:
        true_t = transition_matrix(run.true_labels, run.labels, c)
        est_t = transition_matrix(iss.predicted_label, run.labels, c)
        summary |= {
            "true_noise_rate": float(run.is_wrong.mean()),
            "detection": detection_metrics(iss.label_quality, iss.is_label_issue, run.is_wrong),
            "true_transition_matrix": true_t.round(4).tolist(),
            "transition_matrix_mae": float(np.abs(true_t - est_t).mean()),
            "predicted_accuracy": float((iss.predicted_label == run.true_labels).mean()),
        }
    return summary


def class_rows(run: RunIssues) -> list[dict]:
    """One dict per class: the rows of class_summary.csv."""
    kept = run.selected_by != "none"
    s = class_summary(run.labels, run.issues, len(run.classes), selected=kept)
    rows = []
    for j, name in enumerate(run.classes):
        row = {"class_id": j, "class": name, "size": int(s["size"][j]),
               "selected": int(s["selected"][j]), "issues": int(s["issues"][j]),
               "estimated_noise_rate": f"{s['estimated_noise_rate'][j]:.4f}"}
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


def _read_paths(path: Path) -> tuple[str, ...] | None:
    if not path.is_file():
        return None
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if "path" not in (reader.fieldnames or ()):
            return None
        return tuple(row["path"] for row in reader)


def _any(outputs: dict, name: str) -> np.ndarray:
    """Union over peers of a saved uint8 mask (N,)."""
    return np.any([outputs[k].astype(bool) for k in outputs
                   if k.startswith(name) and k[len(name):].isdigit()], axis=0)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = np.exp(z - z.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)
