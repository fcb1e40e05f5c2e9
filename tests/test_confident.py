"""promix.confident by hand (a 2-class, 8-sample case worked out below) and against cleanlab
on the same probabilities."""

import numpy as np
import pytest

from promix.confident import (
    confident_joint,
    confident_thresholds,
    flagged_joint,
    noise_estimates,
    prune_by_noise_rate,
    rank_by_class,
    wilson_interval,
)
from promix.issues import find_label_issues, health_score

# Class 0 holds s0..s3, class 1 s4..s7; the columns are p(class 0), p(class 1).
LABELS = np.array([0, 0, 0, 0, 1, 1, 1, 1])
P0 = np.array([0.9, 0.8, 0.45, 0.25, 0.1, 0.2, 0.25, 0.58])
PROBS = np.c_[P0, 1 - P0]
# t0 = mean(.9, .8, .45, .25) = .6, t1 = mean(.9, .8, .75, .42) = .7175.
# s0, s1: p0 >= .6 -> (0, 0). s2: .45 < .6 and .55 < t1 -> not counted. s3: p1 = .75 >= t1
# -> (0, 1). s4, s5, s6: p1 >= t1 -> (1, 1). s7: .58 < .6 and .42 < t1 -> not counted.
# Counts [[2, 1], [0, 3]]; rows scaled to the 4 labels each: [2.67, 1.33] -> [3, 1]; [0, 4].
JOINT = [[3, 1], [0, 4]]


def test_thresholds_and_joint_by_hand():
    np.testing.assert_allclose(confident_thresholds(LABELS, PROBS), [0.6, 0.7175])
    assert confident_joint(LABELS, PROBS).tolist() == JOINT


def test_flags_follow_the_estimated_count():
    # cell (0, 1) = 1: of class 0, the largest p1 - p0 is s3 (.5; s2 has .1) -> s3 alone.
    # The argmax rule would flag s2, s3 and s7, three for one estimated wrong label.
    joint = confident_joint(LABELS, PROBS)
    assert np.flatnonzero(prune_by_noise_rate(LABELS, PROBS, joint)).tolist() == [3]
    out = find_label_issues(LABELS, PROBS)
    assert np.flatnonzero(out.is_label_issue).tolist() == [3]
    old = find_label_issues(LABELS, PROBS, filter_by="predicted_neq_given")
    assert np.flatnonzero(old.is_label_issue).tolist() == [2, 3, 7]
    assert health_score(out) == 7 / 8


def test_a_sample_the_model_agrees_with_is_never_flagged():
    # three of class 0 said wrong: by margin s3, s2, s1; but s1's argmax is its label, 0
    joint = np.array([[1, 3], [0, 4]])
    assert np.flatnonzero(prune_by_noise_rate(LABELS, PROBS, joint)).tolist() == [2, 3]


def test_rank_by_class_flags_the_joints_count_lowest_quality_first():
    quality = PROBS[np.arange(8), LABELS]  # p(given): s0..s3 .9 .8 .45 .25; s4..s7 .9 .8 .75 .42
    # JOINT: one wrong label among class 0, none in class 1 -> class 0's lowest, s3 (.25).
    assert np.flatnonzero(rank_by_class(LABELS, quality, np.array(JOINT))).tolist() == [3]
    # All four of class 0 said wrong: three flagged (one stays), s3, s2 and s1 (.8) although
    # s1's argmax is its label; one of class 1 wrong: its lowest, s7 (.42).
    joint = np.array([[0, 4], [1, 3]])
    assert np.flatnonzero(rank_by_class(LABELS, quality, joint)).tolist() == [1, 2, 3, 7]


def test_count_probs_set_the_count_and_pred_probs_the_ranking():
    # Counted from probabilities that move s2 to class 1 (p0 .45 -> .1): t0 = (.9 + .8 + .1
    # + .25) / 4 = .5125, t1 = .7175 (class 1 unchanged). s0, s1 -> (0, 0); s2 (p1 .9) and s3
    # (p1 .75) -> (0, 1); s4..s6 -> (1, 1); s7 (p0 .58 >= .5125 now) -> (1, 0).
    counted = PROBS.copy()
    counted[2] = [0.1, 0.9]
    out = find_label_issues(LABELS, PROBS, count_probs=[counted], filter_by="rank_by_class")
    assert out.joint.tolist() == [[2, 2], [1, 3]]
    np.testing.assert_allclose(out.label_quality, PROBS[np.arange(8), LABELS])  # not counted
    # two of class 0 by the final p0 (s3 .25, s2 .45) and one of class 1 (s7, p1 .42)
    assert np.flatnonzero(out.is_label_issue).tolist() == [2, 3, 7]
    same = find_label_issues(LABELS, PROBS, count_probs=PROBS, filter_by="rank_by_class")
    assert same.joint.tolist() == JOINT and np.flatnonzero(same.is_label_issue).tolist() == [3]
    with pytest.raises(ValueError, match="does not count"):
        find_label_issues(LABELS, PROBS, count_probs=PROBS, filter_by="every_peer")
    with pytest.raises(ValueError, match="shape"):
        find_label_issues(LABELS, PROBS, count_probs=[np.c_[PROBS, np.zeros(8)]])


def test_noise_estimates_by_hand():
    est = noise_estimates(LABELS, np.array(JOINT))
    assert est["wrong"] == 1 and est["noise_rate"] == 1 / 8
    np.testing.assert_allclose(est["per_class"]["noise_rate"], [0.25, 0.0])
    # T[true i, given j]: joint.T = [[3, 0], [1, 4]], rows normalized
    np.testing.assert_allclose(est["transition_matrix"], [[1, 0], [0.2, 0.8]])
    # Wilson with k = 0: [0, z^2 / (n + z^2)]
    z2 = 1.959963984540054 ** 2
    assert est["per_class"]["low"][1] == 0
    assert est["per_class"]["high"][1] == pytest.approx(z2 / (4 + z2))


@pytest.mark.parametrize("k, n, low, high", [
    # Wilson 95% intervals from the closed form, computed by hand (z = 1.96)
    (5, 10, 0.2366, 0.7634),
    (1, 8, 0.0224, 0.4709),
    (0, 0, 0.0, 1.0),
])
def test_wilson_interval(k, n, low, high):
    lo, hi = wilson_interval(np.array([k]), np.array([n]))
    assert lo[0] == pytest.approx(low, abs=1e-4) and hi[0] == pytest.approx(high, abs=1e-4)


def test_same_as_cleanlab_on_the_same_probabilities():
    cl_filter = pytest.importorskip("cleanlab.filter", reason="cleanlab is a bench extra")
    from cleanlab.count import compute_confident_joint

    rng = np.random.default_rng(0)
    exact = total = 0
    for _ in range(60):
        n, c = int(rng.integers(100, 600)), int(rng.integers(2, 7))
        true = rng.integers(0, c, n)
        labels = np.where(rng.random(n) < rng.uniform(0, 0.5), rng.integers(0, c, n), true)
        if len(np.unique(labels)) < c:
            continue
        logits = rng.normal(0, 1, (n, c))
        logits[np.arange(n), true] += rng.uniform(0.5, 3)
        logits[np.arange(n), labels] += rng.uniform(0, 1)
        probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        joint = confident_joint(labels, probs)
        theirs = compute_confident_joint(labels, probs)
        # the same up to how a tie between equal fractions is rounded (last-bit float order)
        assert np.abs(joint - theirs).max() <= 1 and (joint.sum(1) == theirs.sum(1)).all()
        flags = prune_by_noise_rate(labels, probs, joint)
        their_flags = cl_filter.find_label_issues(labels, probs)
        assert abs(int(flags.sum()) - int(their_flags.sum())) <= 2
        exact += int((joint == theirs).all() and (flags == their_flags).all())
        total += 1
        # prune_by_class on one joint: cleanlab's then unflags the samples whose given label
        # is the argmax, a step rank_by_class leaves out
        by_class = cl_filter.find_label_issues(labels, probs, filter_by="prune_by_class",
                                               confident_joint=joint)
        agrees = (probs + 1e-6 * np.eye(c)[labels]).argmax(1) == labels
        mine = rank_by_class(labels, probs[np.arange(n), labels], joint)
        assert (mine & ~agrees).tolist() == by_class.tolist()
    assert exact >= 0.9 * total


def test_flagged_joint_counts_exactly_the_flags():
    # unflagged 0 stays on the diagonal; flagged 1 (given 0) goes to its best other class 2
    # (.5 > .3); flagged 2 (given 1) to class 0 (.6 > 0). Row sums = label counts.
    labels = np.array([0, 0, 1])
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.3, 0.5], [0.6, 0.4, 0.0]])
    joint = flagged_joint(labels, probs, np.array([False, True, True]))
    assert joint.tolist() == [[1, 0, 1], [1, 0, 0], [0, 0, 0]]
    assert noise_estimates(labels, joint)["wrong"] == 2
