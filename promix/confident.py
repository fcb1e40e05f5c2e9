"""How many given labels are wrong, and which: the calibrated confident joint (Northcutt et
al., "Confident Learning", JAIR 2021), written over the peers' probabilities.

    joint = confident_joint(labels, probs)        # (C, C) counts of (given i, estimated true j)
    flags = prune_by_noise_rate(labels, probs, joint)   # (N,) bool, about joint's off-diagonal
    flags = rank_by_class(labels, quality, joint)  # (N,) bool, exactly the joint's count
    noise_estimates(labels, joint)                 # noise rates with 95% intervals, T̂
    flagged_joint(labels, probs, flags)            # the joint of any set of flags

Without ground truth these are estimates: they count what the model is confident about,
so a model that memorized wrong labels underestimates the noise. The same rules as cleanlab's
`find_label_issues(filter_by="prune_by_noise_rate")` (tests compare the two on the same
probabilities), in NumPy only.
"""

from __future__ import annotations

import numpy as np

Z95 = 1.959963984540054  # two-sided 95% normal quantile, for the Wilson intervals


def confident_thresholds(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """t_j = mean of p[:, j] over the samples labelled j; (N,), (N, C) -> (C,). A class no
    sample carries gets 2, a threshold no probability reaches."""
    c = probs.shape[1]
    sums = np.bincount(labels, weights=probs[np.arange(len(labels)), labels], minlength=c)
    counts = np.bincount(labels, minlength=c)
    return np.where(counts > 0, sums / np.maximum(counts, 1), 2.0)


def confident_joint(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Calibrated confident joint, (C, C) int: row i = given label, column j = estimated true
    label; row i sums to the number of samples labelled i.

    A sample counts in (given, j) when p_j ≥ t_j (its class's threshold); with several such
    classes, j is the argmax of p. Samples confident of no class are left out of the counts,
    every diagonal cell is at least 1, and each row is then scaled to its label count and
    rounded keeping the row total.
    """
    n, c = probs.shape
    confident = probs >= confident_thresholds(labels, probs) - 1e-6  # (N, C)
    several = confident.sum(1) > 1
    guess = np.where(several, probs.argmax(1), confident.argmax(1))
    keep = confident.any(1)
    counts = np.zeros((c, c))
    np.add.at(counts, (labels[keep], guess[keep]), 1)
    np.fill_diagonal(counts, np.maximum(counts.diagonal(), 1))
    label_counts = np.bincount(labels, minlength=c)
    scaled = counts / counts.sum(1, keepdims=True) * label_counts[:, None]
    scaled = scaled / scaled.sum() * label_counts.sum()  # cleanlab's float order (ties)
    return np.stack([_round_keeping_sum(row) for row in scaled])


def prune_by_noise_rate(labels: np.ndarray, probs: np.ndarray, joint: np.ndarray) -> np.ndarray:
    """Flags (N,) bool: for every off-diagonal cell (i, j) of the joint, the joint[i, j]
    samples labelled i with the largest margin p_j - p_i; then unflag every sample whose given
    label is the argmax of p (ties go to the given label). At least one sample per class
    stays unflagged. So about as many samples are flagged as the joint estimates are wrong."""
    flags = np.zeros(len(labels), dtype=bool)
    for i in range(probs.shape[1]):
        members = np.flatnonzero(labels == i)
        if len(members) <= 1:
            continue
        for j in np.flatnonzero(joint[i] > 0):
            if j == i:
                continue
            take = min(int(joint[i, j]), len(members) - 1)
            margin = probs[members, j] - probs[members, i]
            flags[members[np.argsort(-margin, kind="stable")[:take]]] = True
    boosted = probs.copy()
    boosted[np.arange(len(labels)), labels] += 1e-6
    return flags & (boosted.argmax(1) != labels)


def rank_by_class(labels: np.ndarray, quality: np.ndarray, joint: np.ndarray) -> np.ndarray:
    """Flags (N,) bool: for every given class i, the Σ_{j≠i} joint[i, j] samples labelled i
    of lowest quality (at least one sample per class stays unflagged). So exactly as many
    samples are flagged, class by class, as the joint estimates are wrong. cleanlab's
    prune_by_class ranks the same way, then unflags samples whose given label is the
    model's argmax; that step is left out here, because with a joint counted from earlier
    probabilities (`find_label_issues`' count_probs) those are the wrong labels the network
    memorized late, which the count was taken to see. labels (N,), quality (N,), joint (C, C)."""
    flags = np.zeros(len(labels), dtype=bool)
    for i in range(joint.shape[0]):
        members = np.flatnonzero(labels == i)
        take = min(int(joint[i].sum() - joint[i, i]), max(len(members) - 1, 0))
        flags[members[np.argsort(quality[members], kind="stable")[:take]]] = True
    return flags


def flagged_joint(labels: np.ndarray, probs: np.ndarray, flags: np.ndarray) -> np.ndarray:
    """The joint (C, C) int of a set of flags: an unflagged sample counts in (given, given), a
    flagged one in (given, its most probable other class). Row i sums to the number of
    samples labelled i, and the off-diagonal sum is the number of flags, so the estimates of
    `noise_estimates` describe exactly what is flagged. labels (N,), probs (N, C), flags (N,)."""
    n, c = probs.shape
    others = probs.copy()
    others[np.arange(n), labels] = -np.inf
    column = np.where(flags, others.argmax(1), labels)
    return np.bincount(labels * c + column, minlength=c * c).reshape(c, c)


def noise_estimates(labels: np.ndarray, joint: np.ndarray) -> dict:
    """What the joint says about the noise, all marked as estimates.

    wrong: estimated number of wrong labels, the joint's off-diagonal sum. noise_rate,
    noise_rate_interval: its share of the N samples, with a 95% Wilson interval (sampling
    only: it does not cover the model's own error). per_class: per given class j (C,) arrays
    `size`, `wrong`, `noise_rate` = P̂(true ≠ j | given = j), `low`, `high`.
    transition_matrix: T̂[i, j] = P̂(given = j | true = i), the convention of noise.json.
    """
    joint = np.asarray(joint, dtype=float)
    size = joint.sum(1)
    wrong = size - joint.diagonal()
    n = float(size.sum())
    low, high = wilson_interval(wrong, size)
    total_low, total_high = wilson_interval(np.array([wrong.sum()]), np.array([n]))
    by_true = joint.T  # (true, given)
    transition = by_true / np.maximum(by_true.sum(1, keepdims=True), 1)
    return {
        "wrong": int(round(wrong.sum())),
        "noise_rate": float(wrong.sum() / max(n, 1)),
        "noise_rate_interval": [float(total_low[0]), float(total_high[0])],
        "per_class": {"size": size.astype(int), "wrong": wrong.astype(int),
                      "noise_rate": wrong / np.maximum(size, 1), "low": low, "high": high},
        "transition_matrix": transition,
    }


def wilson_interval(k, n, z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of the proportion k/n, elementwise over arrays; (0, 1) where n = 0."""
    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    safe = np.maximum(n, 1)
    p = k / safe
    centre = (p + z * z / (2 * safe)) / (1 + z * z / safe)
    half = z * np.sqrt(p * (1 - p) / safe + z * z / (4 * safe * safe)) / (1 + z * z / safe)
    return np.where(n > 0, np.clip(centre - half, 0, 1), 0.0), np.where(
        n > 0, np.clip(centre + half, 0, 1), 1.0)


def _round_keeping_sum(row: np.ndarray) -> np.ndarray:
    """Integers with the same (rounded) total as `row`: round each, then move the cells
    furthest from their rounding by one until the total matches (cleanlab's rule)."""
    ints = np.rint(row)
    diff = int(np.rint(row.sum()) - ints.sum())
    if diff:
        step = 1 if diff > 0 else -1
        ints[np.argsort(row - ints)[::-step][:abs(diff)]] += step
    return ints.astype(int)
