"""promix.issues on hand-built arrays: ranking, flags, suggestions, summaries, AUROC/AUPRC."""

import subprocess
import sys

import numpy as np
import pytest

from promix.issues import (
    auprc,
    auroc,
    class_summary,
    detection_metrics,
    find_label_issues,
    health_score,
    label_quality_scores,
    selected_by,
    transition_matrix,
)

# Six samples, three classes. 1 and 5 are mislabelled and both peers are sure of it (5 more
# than 1); 3 is doubtful and the peers disagree on it.
LABELS = np.array([0, 0, 1, 1, 2, 2])
P1 = np.array([
    [0.95, 0.03, 0.02],
    [0.05, 0.90, 0.05],
    [0.10, 0.80, 0.10],
    [0.60, 0.30, 0.10],
    [0.20, 0.20, 0.60],
    [0.97, 0.02, 0.01],
])
P2 = np.array([
    [0.90, 0.05, 0.05],
    [0.02, 0.95, 0.03],
    [0.20, 0.70, 0.10],
    [0.40, 0.50, 0.10],
    [0.10, 0.10, 0.80],
    [0.95, 0.03, 0.02],
])


def test_ranking_and_flags():
    out = find_label_issues(LABELS, P1, P2)
    # p[given] of the mean of the peers
    np.testing.assert_allclose(out.label_quality, [0.925, 0.035, 0.75, 0.4, 0.7, 0.015])
    margin = find_label_issues(LABELS, P1, P2, quality="normalized_margin")
    # (1 + p[given] - max other p) / 2: same order and, at 0.5, the same flags
    np.testing.assert_allclose(margin.label_quality, [0.9425, 0.055, 0.8, 0.45, 0.775, 0.0275])
    assert margin.order.tolist() == out.order.tolist()
    assert margin.is_label_issue.tolist() == out.is_label_issue.tolist()
    assert out.order.tolist() == [5, 1, 3, 4, 2, 0]
    assert out.predicted_label.tolist() == [0, 1, 1, 0, 2, 0]
    assert out.is_label_issue.tolist() == [False, True, False, True, False, True]
    np.testing.assert_allclose(out.pred_probs.sum(1), 1)
    assert len(out) == 6


def test_each_peer_counts_on_its_own_and_both_must_flag():
    """By hand. Peer 1: thresholds t = (.5, .55, .305); samples 1, 3 and 5 pass only another
    class's threshold (1 -> class 1, 3 -> class 0, 5 -> class 0), one per row of a joint
    whose rows hold two samples each: it flags 1, 3, 5. Peer 2: t = (.46, .60, .41); sample 3
    passes no threshold and leaves the count, 1 -> class 1 and 5 -> class 0: it flags 1, 5.
    Both: 1 and 5. Their joint: 1 in (0, its ensemble's best other class 1), 5 in (2, 0)."""
    single = [find_label_issues(LABELS, p) for p in (P1, P2)]
    assert [np.flatnonzero(o.is_label_issue).tolist() for o in single] == [[1, 3, 5], [1, 5]]
    out = find_label_issues(LABELS, P1, P2, filter_by="every_peer")
    assert np.flatnonzero(out.is_label_issue).tolist() == [1, 5]
    assert out.joint.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert health_score(out) == 4 / 6  # the flags' joint puts 2 of the 6 off its diagonal
    # the default, one count over the peers' mean (cleanlab's rule), flags 3 as well
    mean = find_label_issues(LABELS, P1, P2)
    assert np.flatnonzero(mean.is_label_issue).tolist() == [1, 3, 5]


@pytest.mark.parametrize("threshold, flagged", [
    (0.5, [1, 3, 5]),
    (0.3, [1, 5]),  # sample 3 (quality 0.4) is no longer low enough
    (0.02, [5]),
    (0.0, []),
])
def test_threshold(threshold, flagged):
    out = find_label_issues(LABELS, P1, P2, threshold=threshold, filter_by="predicted_neq_given")
    assert np.flatnonzero(out.is_label_issue).tolist() == flagged


@pytest.mark.parametrize("tau, suggested", [
    (0.9, [-1, -1, -1, -1, -1, 0]),  # peer 1 gives sample 1 exactly 0.90: not > τ
    (0.85, [-1, 1, -1, -1, -1, 0]),
    (0.99, [-1] * 6),
])
def test_suggestion_needs_both_peers_confident_and_agreeing(tau, suggested):
    out = find_label_issues(LABELS, P1, P2, suggest_threshold=tau)
    assert out.suggested_label.tolist() == suggested


def test_no_suggestion_when_the_peers_disagree():
    p2 = P2.copy()
    p2[5] = [0.02, 0.96, 0.02]  # confident, but on class 1 where peer 1 says 0
    out = find_label_issues(LABELS, P1, p2, suggest_threshold=0.5)
    assert out.suggested_label[5] == -1


def test_single_model():
    out = find_label_issues(LABELS, P1, quality="self_confidence")
    np.testing.assert_allclose(out.label_quality, P1[np.arange(6), LABELS])
    assert out.suggested_label.tolist() == [-1, -1, -1, -1, -1, 0]  # 0.90 is not > 0.9


def test_accepts_tensors():
    torch = pytest.importorskip("torch")
    out = find_label_issues(torch.tensor(LABELS), torch.tensor(P1), torch.tensor(P2))
    assert out.order.tolist() == [5, 1, 3, 4, 2, 0]


@pytest.mark.parametrize("method, expected", [
    ("self_confidence", [0.9, 0.7, 0.6, 0.8]),
    ("normalized_margin", [0.9, 0.7, 0.6, 0.8]),  # two classes: (1 + p - (1 - p)) / 2 = p
    # class thresholds t = (0.8, 0.7) lift every row to certainty for its own label
    ("confidence_adjusted", [1.0, 1.0, 1.0, 1.0]),
])
def test_quality_methods(method, expected):
    labels = np.array([0, 0, 1, 1])
    probs = np.array([[0.9, 0.1], [0.7, 0.3], [0.4, 0.6], [0.2, 0.8]])
    np.testing.assert_allclose(label_quality_scores(labels, probs, method=method), expected)


def test_normalized_margin_three_classes():
    q = label_quality_scores(np.array([0, 1]), np.array([[0.5, 0.3, 0.2], [0.5, 0.3, 0.2]]),
                             method="normalized_margin")
    np.testing.assert_allclose(q, [(1 + 0.5 - 0.3) / 2, (1 + 0.3 - 0.5) / 2])


@pytest.mark.parametrize("kwargs, message", [
    (dict(labels=LABELS, pred_probs_1=P1 * 2), "softmax"),
    (dict(labels=LABELS, pred_probs_1=P1[:5]), "one row"),
    (dict(labels=LABELS + 1, pred_probs_1=P1), "must lie in"),
    (dict(labels=LABELS.astype(float), pred_probs_1=P1), "integer"),
    (dict(labels=LABELS, pred_probs_1=P1, pred_probs_2=np.c_[P2, np.zeros(6)]),
     "same samples"),
    (dict(labels=LABELS, pred_probs_1=P1, quality="entropy"), "unknown quality"),
    (dict(labels=LABELS, pred_probs_1=P1, threshold=2.0), "in \\[0, 1\\]"),
    (dict(labels=LABELS, pred_probs_1=P1, filter_by="margin"), "unknown filter_by"),
])
def test_bad_input_says_what_to_do(kwargs, message):
    with pytest.raises(ValueError, match=message):
        find_label_issues(**kwargs)


def test_selected_by_rule_order():
    css = [1, 0, 0, 0, 1]
    confident = [1, 1, 0, 0, 0]
    chosen = [1, 1, 1, 0, 1]
    assert selected_by(css, confident, chosen).tolist() == ["css", "mhcs", "lga", "none", "css"]


def test_transition_matrix():
    t = transition_matrix([0, 0, 1, 1, 1, 2], [0, 1, 1, 1, 0, 2], 4)
    np.testing.assert_allclose(t, [[0.5, 0.5, 0, 0], [1 / 3, 2 / 3, 0, 0], [0, 0, 1, 0],
                                   [0, 0, 0, 0]])


def test_class_summary_and_health():
    out = find_label_issues(LABELS, P1, P2)
    summary = class_summary(LABELS, out, 3, selected=[1, 0, 1, 1, 1, 0])
    assert summary["size"].tolist() == [2, 2, 2]
    assert summary["selected"].tolist() == [1, 2, 1]
    assert summary["issues"].tolist() == [1, 1, 1]
    np.testing.assert_allclose(summary["estimated_noise_rate"], [0.5, 0.5, 0.5])
    assert class_summary(LABELS, out, 4)["selected"].tolist() == [-1] * 4
    assert health_score(out) == 0.5  # the joint puts 3 of the 6 off its diagonal


@pytest.mark.parametrize("scores, positive, roc, ap", [
    # pairs (pos, neg): 0.9>0.8, 0.9>0.6, 0.7<0.8, 0.7>0.6 -> 3/4
    # descending: P@1 = 1 (R .5), P@3 = 2/3 (R 1) -> AP = .5 * 1 + .5 * 2/3
    ([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0], 0.75, 0.5 + 1 / 3),
    ([0.5, 0.5], [1, 0], 0.5, 0.5),  # a tie counts half; one threshold, precision 1/2
    ([0.1, 0.2, 0.3], [0, 0, 1], 1.0, 1.0),
    ([0.1, 0.2, 0.3], [1, 0, 0], 0.0, 1 / 3),
    ([0.3, 0.3, 0.1, 0.2], [1, 0, 1, 0], 0.375, 0.5 * 0.5 + 0.5 * 0.5),  # (.5+1+0+0)/4
])
def test_auroc_auprc_by_hand(scores, positive, roc, ap):
    assert auroc(scores, positive) == pytest.approx(roc)
    assert auprc(scores, positive) == pytest.approx(ap)


def test_auroc_auprc_undefined_without_both_classes():
    assert np.isnan(auroc([0.1, 0.2], [0, 0])) and np.isnan(auprc([0.1, 0.2], [0, 0]))
    assert np.isnan(auroc([0.1, 0.2], [1, 1]))


def test_auroc_auprc_match_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics", reason="scikit-learn is a bench extra")
    rng = np.random.default_rng(0)
    scores = np.round(rng.random(500), 2)  # with ties
    positive = rng.random(500) < 0.3
    assert auroc(scores, positive) == pytest.approx(metrics.roc_auc_score(positive, scores))
    assert auprc(scores, positive) == pytest.approx(
        metrics.average_precision_score(positive, scores))


def test_detection_metrics():
    out = find_label_issues(LABELS, P1, P2)
    wrong = np.array([0, 1, 0, 0, 0, 1], bool)  # sample 3 flagged but actually right
    m = detection_metrics(out.label_quality, out.is_label_issue, wrong)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == 1.0
    assert m["f1"] == pytest.approx(0.8) and m["auroc"] == 1.0 and m["auprc"] == 1.0
    assert (m["flagged"], m["wrong"]) == (3, 2)


def test_lazy_export():
    code = ("import sys, promix; assert 'promix.issues' not in sys.modules; "
            "assert promix.find_label_issues.__module__ == 'promix.issues'")
    subprocess.run([sys.executable, "-c", code], check=True)
