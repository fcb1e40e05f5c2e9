"""Which training labels are wrong: pure functions over the peers' predicted probabilities.

The core is `find_label_issues(labels, pred_probs_1, pred_probs_2)`. It ranks every sample
by `label_quality` (0 to 1, higher means the given label is more likely right), flags about
as many samples as it estimates are wrong (the calibrated confident joint of the peers' mean,
`promix.confident`), and suggests a replacement label where both peers agree on another
class with high confidence. The rest of the module summarizes a dataset (per-class noise
rates, a health score) and, when the true labels are known, measures detection (AUROC,
AUPRC, precision, recall, F1). Inputs are NumPy arrays or tensors; outputs are NumPy
arrays. No scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from .confident import (
    confident_joint,
    flagged_joint,
    noise_estimates,
    prune_by_noise_rate,
    rank_by_class,
)
from .metrics import precision_recall_f1

QUALITY_METHODS = ("self_confidence", "normalized_margin", "confidence_adjusted")
SOURCES = ("css", "mhcs", "lga", "none")  # values of `selected_by`, most trusted first
# How is_label_issue is decided: prune_by_noise_rate flags as many as the ensemble's confident
# joint estimates are wrong (cleanlab's default, applied to the peers' mean); rank_by_class
# flags exactly that many per given class, lowest label_quality first; every_peer flags
# what each peer's own prune_by_noise_rate flags (fewer: for short runs, docs/label-issues.md);
# predicted_neq_given flags every sample whose ensemble argmax is another class with
# label_quality < threshold (far more).
FILTERS = ("prune_by_noise_rate", "rank_by_class", "every_peer", "predicted_neq_given")


@dataclass(frozen=True)
class LabelIssues:
    """What `find_label_issues` returns; every array has one entry per sample, (N,).

    label_quality: float in [0, 1], higher means the given label is more likely right.
    is_label_issue: bool, by `filter_by` (default: about as many as `joint` estimates wrong).
    predicted_label: int, argmax of the ensemble (the mean of the peers' probabilities).
    suggested_label: int, the class both peers agree on with high confidence when it is not
        the given label; -1 where there is no suggestion.
    order: int indices of all samples, most suspicious (lowest label_quality) first.
    pred_probs: (N, C) float, the ensemble's probabilities.
    joint: (C, C) int, given label (row) by estimated true label (column); its off-diagonal
        sum is the estimated number of wrong labels: the calibrated confident joint of the
        peers' mean (of count_probs' mean when given); with every_peer, the joint of the
        flags themselves (`confident.flagged_joint`), whose estimate is the flagged count.
    """

    label_quality: np.ndarray
    is_label_issue: np.ndarray
    predicted_label: np.ndarray
    suggested_label: np.ndarray
    order: np.ndarray
    pred_probs: np.ndarray
    joint: np.ndarray

    def __len__(self) -> int:
        return len(self.label_quality)


def find_label_issues(
    labels, pred_probs_1, pred_probs_2=None, *, quality: str = "self_confidence",
    threshold: float = 0.5, suggest_threshold: float = 0.9,
    filter_by: Literal["prune_by_noise_rate", "rank_by_class", "every_peer",
                       "predicted_neq_given"] = "prune_by_noise_rate",
    count_probs=None,
) -> LabelIssues:
    """Rank and flag the given labels that the peers' ensemble rejects.

    labels: (N,) int given (noisy) labels in [0, C). pred_probs_k: (N, C) probabilities of
    peer k on the training samples (rows sum to 1); give out-of-sample probabilities when the
    model was not trained with ProMix-style selection. pred_probs_2 is optional: with one
    model the ensemble is that model.
    quality: how label_quality is computed from the ensemble (`label_quality_scores`); the
        default is the ensemble's probability of the given label (docs/label-issues.md).
    filter_by: prune_by_noise_rate (default) flags, per pair (given i, true j), as many of
        the samples labelled i as the confident joint of the peers' mean puts in (i, j),
        those with the largest p_j - p_i (cleanlab's rule); so the flagged count follows the
        estimated number of wrong labels. rank_by_class flags, per given class i, as many
        of the samples labelled i as row i of the joint puts off the diagonal, those of
        lowest label_quality (what a run's report uses, with count_probs). every_peer flags a
        sample when each peer's own prune_by_noise_rate flags it: a weak model's mistakes on
        right labels inflate one count, and the two peers make them on different samples
        more often than on the same, so it flags fewer; measured in docs/label-issues.md, it
        fits short runs, and undercounts once the peers have trained long enough to fit some
        wrong labels. With one peer it is prune_by_noise_rate. predicted_neq_given flags
        where the ensemble's argmax is another class (many more).
    count_probs: optional probabilities (one (N, C) array per peer, like pred_probs) to count
        the wrong labels from: the joint (and so the flagged count and the noise estimates) is
        the confident joint of their mean instead of the pred_probs' mean; the ranking and the
        suggestions still come from pred_probs. A promix run saves the peers' probabilities
        averaged over the second half of training (`late_probs1/2` in train_outputs): a network
        that has memorized some wrong labels by the last epoch counts too few, and one early
        in training too many (measured in docs/label-issues.md). prune_by_noise_rate and
        rank_by_class only.
    threshold: predicted_neq_given only: flag only below this label_quality.
    suggest_threshold: a suggestion needs every peer's top probability above this, on the
        same class, which is not the given label.
    """
    labels = _check_labels(labels)
    peers = [_check_probs(p, labels, f"pred_probs_{k}")
             for k, p in enumerate((pred_probs_1, pred_probs_2), start=1) if p is not None]
    if peers[0].shape != peers[-1].shape:
        raise ValueError(f"pred_probs_1 has shape {peers[0].shape} but pred_probs_2 has "
                         f"{peers[-1].shape}: give both peers' probabilities over the same "
                         "samples and classes")
    if not 0 <= threshold <= 1 or not 0 <= suggest_threshold <= 1:
        raise ValueError("threshold and suggest_threshold are probabilities: use values in [0, 1]")
    if filter_by not in FILTERS:
        raise ValueError(f"unknown filter_by {filter_by!r}: use one of {', '.join(FILTERS)}")
    counted = None
    if count_probs is not None:
        if filter_by not in ("prune_by_noise_rate", "rank_by_class"):
            raise ValueError(f"count_probs counts the wrong labels of prune_by_noise_rate and "
                             f"rank_by_class; filter_by={filter_by!r} does not count: drop one")
        # one array or tensor, or a sequence of them (one per peer)
        arrays = [count_probs] if hasattr(count_probs, "shape") else list(count_probs)
        arrays = [_check_probs(p, labels, f"count_probs[{k}]") for k, p in enumerate(arrays)]
        if any(p.shape != peers[0].shape for p in arrays):
            raise ValueError(f"count_probs must have the pred_probs' shape {peers[0].shape}: "
                             "one (N, C) array per peer, over the same samples and classes")
        counted = sum(arrays) / len(arrays)
    probs = sum(peers) / len(peers)  # (N, C)
    score = label_quality_scores(labels, probs, method=quality)
    predicted = probs.argmax(1)
    if filter_by == "every_peer":
        flags = np.all([prune_by_noise_rate(labels, p, confident_joint(labels, p))
                        for p in peers], axis=0)
        joint = flagged_joint(labels, probs, flags)
    else:
        joint = confident_joint(labels, probs if counted is None else counted)
        if filter_by == "prune_by_noise_rate":
            flags = prune_by_noise_rate(labels, probs, joint)
        elif filter_by == "rank_by_class":
            flags = rank_by_class(labels, score, joint)
        else:
            flags = (predicted != labels) & (score < threshold)
    return LabelIssues(
        label_quality=score,
        is_label_issue=flags,
        predicted_label=predicted,
        suggested_label=agreed_label(labels, peers, suggest_threshold),
        order=np.argsort(score, kind="stable"),
        pred_probs=probs,
        joint=joint,
    )


def label_quality_scores(labels: np.ndarray, pred_probs: np.ndarray, *,
                         method: str = "self_confidence") -> np.ndarray:
    """Per-sample quality of the given label in [0, 1] from probabilities (N, C) -> (N,).

    self_confidence: p_i[ỹ_i], the probability of the given label.
    normalized_margin: (1 + p_i[ỹ_i] - max_{k≠ỹ_i} p_i[k]) / 2.
    confidence_adjusted: self-confidence after cleanlab's class-threshold adjustment: each
        class's mean self-confidence t_j is subtracted from column j, rows are shifted to be
        non-negative and renormalized (classes the model is unsure about are not penalized).
    """
    if method == "self_confidence":
        return pred_probs[np.arange(len(labels)), labels]
    if method == "normalized_margin":
        given = pred_probs[np.arange(len(labels)), labels]
        others = pred_probs.copy()
        others[np.arange(len(labels)), labels] = -np.inf
        return (1 + given - others.max(1)) / 2
    if method == "confidence_adjusted":
        c = pred_probs.shape[1]
        t = np.array([pred_probs[labels == j, j].mean() if np.any(labels == j) else 0.0
                      for j in range(c)])
        adjusted = pred_probs - t
        adjusted -= adjusted.min(1, keepdims=True)
        adjusted /= np.maximum(adjusted.sum(1, keepdims=True), 1e-12)
        return adjusted[np.arange(len(labels)), labels]
    raise ValueError(f"unknown quality {method!r}: use one of {', '.join(QUALITY_METHODS)}")


def agreed_label(labels: np.ndarray, peers: list[np.ndarray], tau: float) -> np.ndarray:
    """The class every peer predicts with probability > tau, when it differs from the given
    label; -1 elsewhere. labels: (N,); peers: list of (N, C). Returns int (N,)."""
    preds = [p.argmax(1) for p in peers]
    agree = np.all([(p.max(1) > tau) & (q == preds[0]) for p, q in zip(peers, preds,
                                                                        strict=True)], axis=0)
    return np.where(agree & (preds[0] != labels), preds[0], -1)


def selected_by(css, confident, chosen) -> np.ndarray:
    """Which ProMix rule kept each sample at the end of training, as strings (N,).

    css: (N,) bool, in either peer's class-wise small-loss set. confident: (N,) bool, matched
    high-confidence (some peer's probability of the given label > τ). chosen: (N,) bool, in
    either peer's final chosen set (CSS ∪ MHCS ∪ LGA). The first rule that holds wins:
    css, then mhcs, then lga (chosen by neither of the others), else none.
    """
    css, confident, chosen = (np.asarray(a, dtype=bool) for a in (css, confident, chosen))
    return np.select([css, confident, chosen], ["css", "mhcs", "lga"], default="none")


# ----------------------------------------------------------------------------- summaries


def transition_matrix(source, target, num_classes: int) -> np.ndarray:
    """T[i, j] = P(target = j | source = i), from counts; rows with no sample are 0. (C, C).

    With source = true labels and target = given labels this is the noise transition matrix;
    with source = the ensemble's predictions it is its estimate from the training set.
    """
    counts = np.zeros((num_classes, num_classes))
    np.add.at(counts, (np.asarray(source), np.asarray(target)), 1)
    return counts / np.maximum(counts.sum(1, keepdims=True), 1)


def class_summary(labels, issues: LabelIssues, num_classes: int, selected=None) -> dict:
    """Per class j of the given labels, arrays of shape (C,).

    size: samples labelled j. issues: of those, flagged. selected: of those, kept by some
    selection rule (`selected` is an (N,) bool mask; -1 everywhere when not given).
    estimated_noise_rate, low, high: P̂(true ≠ j | given = j) from `issues.joint`, with
    its 95% Wilson interval (`confident.noise_estimates`).
    """
    labels = np.asarray(labels)
    size = np.bincount(labels, minlength=num_classes)
    kept = (np.bincount(labels, weights=np.asarray(selected, bool), minlength=num_classes)
            if selected is not None else np.full(num_classes, -1))
    per_class = noise_estimates(labels, issues.joint)["per_class"]
    return {
        "size": size,
        "selected": kept.astype(int),
        "issues": np.bincount(labels, weights=issues.is_label_issue,
                              minlength=num_classes).astype(int),
        "estimated_noise_rate": per_class["noise_rate"],
        "low": per_class["low"],
        "high": per_class["high"],
    }


def health_score(issues: LabelIssues) -> float:
    """The estimated clean share: 1 - the estimated fraction of wrong labels (the joint's
    trace over N). An estimate, as cleanlab's overall label health score is."""
    joint = issues.joint
    return float(np.trace(joint) / max(joint.sum(), 1))


# ----------------------------------------------------------------------------- detection


def auroc(scores, positive) -> float:
    """Area under the ROC curve of `scores` (N,) for the bool `positive` (N,); ties count
    half (Mann-Whitney U). NaN when either class is empty."""
    scores, positive = np.asarray(scores, float), np.asarray(positive, bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auprc(scores, positive) -> float:
    """Average precision, Σ_k (R_k - R_{k-1}) P_k over distinct thresholds of `scores` (N,),
    descending (scikit-learn's definition). NaN when there is no positive."""
    scores, positive = np.asarray(scores, float), np.asarray(positive, bool)
    if not positive.any():
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], positive[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # end of each tie group
    tp = np.cumsum(y)[last]
    precision = tp / (last + 1)
    recall = tp / y.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def detection_metrics(label_quality, is_label_issue, is_wrong) -> dict[str, float]:
    """How well the ranking (AUROC, AUPRC of 1 - quality) and the flagged set (precision,
    recall, F1) find the truly wrong labels. All inputs (N,)."""
    flagged, wrong = np.asarray(is_label_issue, bool), np.asarray(is_wrong, bool)
    score = 1 - np.asarray(label_quality, float)
    return {
        "auroc": auroc(score, wrong),
        "auprc": auprc(score, wrong),
        **precision_recall_f1(float(np.sum(flagged & wrong)), float(flagged.sum()),
                              float(wrong.sum())),
        "flagged": int(flagged.sum()),
        "wrong": int(wrong.sum()),
    }


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of x (N,), ties given the mean of their ranks."""
    order = np.argsort(x, kind="stable")
    s = x[order]
    starts = np.r_[0, np.nonzero(np.diff(s))[0] + 1]
    ends = np.r_[starts[1:], len(s)]
    ranks = np.empty(len(x))
    ranks[order] = np.repeat((starts + ends + 1) / 2, ends - starts)
    return ranks


def _check_labels(labels) -> np.ndarray:
    labels = _numpy(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 1-d integer array, got {labels.dtype} "
                         f"{labels.shape}")
    return labels.astype(np.int64)


def _check_probs(probs, labels: np.ndarray, name: str) -> np.ndarray:
    probs = _numpy(probs).astype(np.float64)
    if probs.ndim != 2 or probs.shape[0] != len(labels):
        raise ValueError(f"{name} must have shape (N, C) = ({len(labels)}, C), got "
                         f"{probs.shape}: one row of class probabilities per label")
    if len(labels) and (labels.min() < 0 or labels.max() >= probs.shape[1]):
        raise ValueError(f"labels must lie in [0, {probs.shape[1]}) to match {name}'s "
                         f"{probs.shape[1]} columns")
    if not np.all(np.isfinite(probs)) or np.any(probs < 0) or not np.allclose(
            probs.sum(1), 1, atol=1e-3):
        raise ValueError(f"{name} must hold probabilities (rows >= 0 summing to 1): apply "
                         "softmax to logits first")
    return probs


def _numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, without importing torch
        x = x.detach().cpu().numpy()
    return np.asarray(x)
