"""Corrections and annotators: parsing, applying to a Dataset, the consensus math, and the
trainer hooks (verified samples always selected; the annotators' prior in CSS)."""

import hashlib

import numpy as np
import pytest
import torch

from promix.config import Config, ConfigError, DataConfig, apply_overrides
from promix.data.base import DataError, Dataset, ImageSet
from promix.inference import PeerOutputs
from promix.review.annotators import dawid_skene, encode, majority_vote, read_annotations
from promix.review.corrections import (
    Correction,
    apply_corrections,
    read_corrections,
    write_corrections,
)
from promix.review.inputs import apply_annotators, check_review_inputs

CLASSES = ("cat", "dog", "fox")
HEADER = "path,index,given_label,decision,label\n"


def dataset(labels=(0, 1, 2, 0, 1, 2), paths=None, true=None):
    n = len(labels)
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 4, 4).clone()
    train = ImageSet(images, torch.tensor(labels), CLASSES, paths)
    return Dataset("t", train, true_labels=None if true is None else torch.tensor(true))


def write(tmp_path, text, name="c.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------- corrections


def test_corrections_replace_verify_and_drop(tmp_path):
    data = dataset(true=(1, 1, 2, 0, 0, 2))
    rows = [Correction("", 0, "cat", "accept", "dog"),  # a wrong label fixed
            Correction("", 1, "dog", "keep", "dog"),  # a right one confirmed
            Correction("", 2, "fox", "invalid", ""),  # dropped
            Correction("", 4, "dog", "relabel", "cat"),
            Correction("", 5, "fox", "unsure", "")]  # no verdict: nothing changes
    path = write_corrections(tmp_path / "c.csv", rows)
    out = apply_corrections(data, read_corrections(path))
    # sample 2 is gone: the remaining samples are 0, 1, 3, 4, 5 in that order
    assert out.train.labels.tolist() == [1, 1, 0, 0, 2]
    assert out.verified.tolist() == [True, True, False, True, False]
    assert out.true_labels.tolist() == [1, 1, 0, 0, 2]
    assert out.train.images[:, 0, 0, 0].tolist() == [0, 1, 3, 4, 5]
    assert out.noise["corrections"] == {"rows": 5, "accept": 1, "keep": 1, "relabel": 1,
                                        "invalid": 1, "unsure": 1, "changed": 2}
    assert data.train.labels.tolist() == [0, 1, 2, 0, 1, 2]  # the input is not modified


def test_corrections_match_files_by_path(tmp_path):
    root = tmp_path / "imgs"
    paths = tuple(str(root / c / f"{i}.png") for i, c in enumerate(["cat", "dog", "fox"] * 2))
    data = dataset(paths=paths)
    text = HEADER + f"{paths[3]},99,cat,relabel,fox\ndog/1.png,0,dog,invalid,\n"
    out = apply_corrections(data, read_corrections(write(tmp_path, text)), root=str(root))
    # the index column is ignored when the data has files: rows are found by their path
    assert out.train.paths == (paths[0], paths[2], paths[3], paths[4], paths[5])
    assert out.train.labels.tolist() == [0, 2, 2, 1, 2]
    assert out.verified.tolist() == [False, False, True, False, False]


@pytest.mark.parametrize("text, message", [
    ("path,index,decision\n", "lacks the column(s) given_label, label"),
    (HEADER + ",0,cat,maybe,dog\n", "decision 'maybe' must be one of"),
    (HEADER + ",0,cat,relabel,\n", "decision relabel needs a label"),
    (HEADER + ",x,cat,keep,cat\n", "index 'x' must be a non-negative integer"),
])
def test_bad_corrections_file(tmp_path, text, message):
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_corrections(write(tmp_path, text))


@pytest.mark.parametrize("text, message", [
    (HEADER + ",9,cat,keep,cat\n", "index 9 is outside the training set"),
    (HEADER + ",0,dog,keep,dog\n", "given_label 'dog' but the data labels sample 0 'cat'"),
    (HEADER + ",0,cat,keep,cat\n,0,cat,accept,dog\n", "sample 0 is already on line 2"),
    (HEADER + ",0,cat,relabel,wolf\n", "label 'wolf' is not a class"),
    (HEADER + "".join(f",{i},{CLASSES[i % 3]},invalid,\n" for i in range(6)), "every training"),
])
def test_corrections_that_do_not_fit_the_data(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        apply_corrections(dataset(), read_corrections(write(tmp_path, text)))


def test_a_changed_corrections_file_is_refused_on_resume(tmp_path):
    path = write(tmp_path, HEADER + ",0,cat,keep,cat\n")
    cfg = DataConfig(corrections=str(path),
                     corrections_sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    check_review_inputs(cfg)  # the same file: fine
    path.write_text(HEADER + ",0,cat,relabel,dog\n")
    with pytest.raises(DataError, match="changed since the run started"):
        check_review_inputs(cfg)
    with pytest.raises(DataError, match="no such file"):
        check_review_inputs(DataConfig(corrections=str(tmp_path / "missing.csv")))


# ----------------------------------------------------------------------------- annotators


def test_majority_vote_breaks_ties_by_reliability():
    y = np.array([[0, 0, 1],  # a clear majority: 0
                  [1, 1, 0],
                  [2, 2, 2],
                  [0, 1, -1],  # a tie between annotators 0 and 1
                  [-1, 2, 1]])  # a tie between annotators 1 and 2
    # agreement with the untied majority (rows 0-2): annotator 0: 3/3, 1: 3/3, 2: 1/3
    c = majority_vote(y, 3)
    assert c.label.tolist() == [0, 1, 2, 0, 2]  # row 3 could go either way: first max wins
    assert c.agreement.tolist() == [2 / 3, 2 / 3, 1, 1 / 2, 1 / 2]
    assert c.counts.tolist() == [4, 5, 4]
    np.testing.assert_allclose(c.posterior[0], [2 / 3, 1 / 3, 0])


def test_majority_vote_tie_goes_to_the_more_reliable_annotator():
    y = np.array([[0, 0, 0], [1, 1, 1], [2, 2, 0], [0, 0, 1], [1, 2, -1]])
    # untied rows 0-3: annotator 0 agrees 4/4, annotator 1 4/4, annotator 2 2/4; row 4 ties
    # annotators 0 (says 1) and 1 (says 2): equal reliability, so the first class wins
    assert majority_vote(y, 3).label[4] == 1
    y[4] = [-1, 2, 1]  # annotator 1 (4/4) against annotator 2 (2/4): class 2
    assert majority_vote(y, 3).label[4] == 2


def simulate(accuracies, n=3000, classes=4, seed=0):
    """Annotators who give the true class with their accuracy, else a uniform other class."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, classes, n)
    labels = np.empty((n, len(accuracies)), np.int64)
    for a, acc in enumerate(accuracies):
        wrong = (true + rng.integers(1, classes, n)) % classes
        labels[:, a] = np.where(rng.random(n) < acc, true, wrong)
    return true, labels


def bayes_labels(labels, accuracies, classes=4):
    """The consensus with the true annotator model (an independent reference): argmax_j of
    Π_a (acc_a if y_a = j else (1 - acc_a) / (C - 1)), uniform class prior."""
    log_p = np.zeros((len(labels), classes))
    for a, acc in enumerate(accuracies):
        for j in range(classes):
            log_p[:, j] += np.where(labels[:, a] == j, np.log(acc),
                                    np.log((1 - acc) / (classes - 1)))
    return log_p.argmax(1)


def test_dawid_skene_matches_the_true_model_and_beats_the_majority():
    true, labels = simulate([0.95, 0.45, 0.45])
    ds, mv = dawid_skene(labels, 4), majority_vote(labels, 4)
    oracle = bayes_labels(labels, [0.95, 0.45, 0.45])
    assert (ds.label == oracle).mean() > 0.99  # it learns to trust the good annotator
    assert (ds.label == true).mean() > (mv.label == true).mean() + 0.05
    # three annotators identify the full confusion matrices only loosely (the maximum
    # likelihood puts the good one at ~0.89 here); the order is right
    assert ds.accuracy[0] > 0.85 and abs(ds.accuracy[1:] - 0.45).max() < 0.05
    np.testing.assert_allclose(ds.posterior.sum(1), 1)
    np.testing.assert_allclose(ds.confusion.sum(2), 1)


def test_dawid_skene_with_missing_labels():
    true, labels = simulate([0.9, 0.8, 0.7, 0.6], n=2000)
    rng = np.random.default_rng(1)
    labels[rng.random(labels.shape) < 0.4] = -1
    labels[(labels < 0).all(1), 0] = true[(labels < 0).all(1)]  # at least one label each
    ds = dawid_skene(labels, 4)
    assert ds.counts.tolist() == (labels >= 0).sum(0).tolist()
    np.testing.assert_allclose(ds.accuracy, [0.9, 0.8, 0.7, 0.6], atol=0.05)


def test_wide_and_long_annotator_files_agree(tmp_path):
    wide = write(tmp_path, "index,ann,bob\n0,cat,dog\n1,,fox\n2,fox,fox\n", "w.csv")
    long = write(tmp_path, "index,annotator,label\n0,ann,cat\n0,bob,dog\n1,bob,fox\n"
                           "2,bob,fox\n2,ann,fox\n", "l.csv")
    a, b = read_annotations(wide), read_annotations(long)
    assert a.annotators == b.annotators == ["ann", "bob"]
    assert a.rows == b.rows == [("", 0), ("", 1), ("", 2)]
    assert a.labels.tolist() == b.labels.tolist() == [["cat", "dog"], ["", "fox"], ["fox", "fox"]]
    assert encode(a.labels, CLASSES).tolist() == [[0, 1], [-1, 2], [2, 2]]


@pytest.mark.parametrize("text, message", [
    ("annotator,label\nann,cat\n", "needs a path or index column"),
    ("index,annotator,label\n0,ann,cat\n0,ann,dog\n", "annotator ann labels 0 twice"),
    ("index,a,b\n0,cat,wolf\n", "'wolf' are not classes"),
])
def test_bad_annotator_files(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        apply_annotators(dataset(), write(tmp_path, text))


def test_apply_annotators_sets_consensus_and_prior(tmp_path):
    text = "index,a,b,c\n0,dog,dog,dog\n1,dog,dog,cat\n2,fox,cat,cat\n"
    out = apply_annotators(dataset(), write(tmp_path, text), method="majority")
    assert out.train.labels.tolist() == [1, 1, 0, 0, 1, 2]  # rows 3-5 keep their label
    prior = out.label_prior.tolist()
    assert prior[:3] == pytest.approx([1, 2 / 3, 2 / 3])
    assert prior[3:] == pytest.approx([7 / 9] * 3)  # unannotated: the mean, a neutral value
    info = out.noise["annotators"]
    assert info["unanimous"] == 1 and info["annotated"] == 3
    assert [a["labels"] for a in info["annotators"]] == [3, 3, 3]
    assert apply_annotators(dataset(), write(tmp_path, text), prior=False).label_prior is None


def test_consensus_is_a_literal_choice():
    cfg = apply_overrides(Config(), ["--consensus=majority"])
    assert cfg.data.consensus == "majority"
    with pytest.raises(ConfigError, match="expected dawid_skene | majority"):
        apply_overrides(Config(), ["--consensus=vote"])


# ----------------------------------------------------------------------------- trainer hooks


def fixed_outputs(logits):
    logits = torch.tensor(logits, dtype=torch.float32)
    return [PeerOutputs(logits, logits), PeerOutputs(logits, logits)]


@pytest.mark.parametrize("verified, prior, expected", [
    # six samples of class 0; rho = 0.5 keeps the 3 with the smallest loss (rows 0-2)
    (None, None, [1, 1, 1, 0, 0, 0]),
    # a verified sample is selected on top of CSS, whatever its loss
    ([0, 0, 0, 0, 0, 1], None, [1, 1, 1, 0, 0, 1]),
    # and takes no quota slot: the three smallest losses of the others are kept too
    ([1, 0, 0, 0, 0, 0], None, [1, 1, 1, 1, 0, 0]),
    # the annotators' prior: loss - log P(label); a unanimous label (1.0) beats a contested one
    (None, [0.2, 1, 1, 1, 1, 1], [0, 1, 1, 1, 0, 0]),
])
def test_trainer_selection_hooks(verified, prior, expected):
    from promix.schedules import Schedule
    from promix.trainer import Trainer

    n = 6
    train = ImageSet(torch.zeros(n, 1, 4, 4, dtype=torch.uint8), torch.zeros(n, dtype=torch.long),
                     ("a", "b"))
    data = Dataset("t", train, mean=(0.5,), std=(0.5,),
                   verified=None if verified is None else torch.tensor(verified, dtype=torch.bool),
                   label_prior=None if prior is None else torch.tensor(prior, dtype=torch.float64))
    cfg = apply_overrides(Config(), ["--width=2", "--progress=false", "--rho=0.5",
                                     "--quota=per_class", "--mhcs=false", "--device=cpu",
                                     "--epochs=20"])
    trainer = Trainer(cfg, data)
    # logit margins for class 0: losses increase down the rows (0.05, 0.1, ... in log space)
    margins = [6.0, 5.0, 4.0, 3.0, 2.0, 1.0]
    trainer.infer_train = lambda: fixed_outputs([[m, 0.0] for m in margins])
    trainer.select(Schedule(cfg.schedule, cfg.promix, 0.1, 0.0).at(15))
    for mask in [peer.clean for peer in trainer.state.selection]:
        assert mask.int().tolist() == expected
