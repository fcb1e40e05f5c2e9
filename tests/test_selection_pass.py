"""The trainer's selection pass (SPEC §5, §6.3) and its per-epoch record of the chosen sets
(§13.5), on hand-built predictions: the networks' outputs are replaced by a test hook, so the
expected masks and counts below are derived by hand from the table of probabilities."""

import math
from dataclasses import replace

import pytest
import torch

import promix.methods
import promix.trainer
from promix.config import Config
from promix.data.base import Dataset, ImageSet
from promix.inference import PeerOutputs
from promix.schedules import EpochSchedule
from promix.selection import class_quotas
from promix.trainer import Trainer

LABELS = [0, 0, 0, 1, 1, 1, 2, 2, 2]
TRUE = [1, 0, 0, 1, 1, 0, 2, 2, 0]  # samples 0, 5 and 8 carry a wrong label
# p[ỹ] of each sample for each peer; the rest of the mass is split between the other classes
# (sample 4 of peer 2 puts 0.895 on class 0: confident, but not in its label).
P_LABEL = [
    [0.995, 0.996, 0.997, 0.2, 0.8, 0.5, 0.4, 0.7, 0.1],
    [0.3, 0.5, 0.9, 0.995, 0.1, 0.2, 0.6, 0.7, 0.995],
]
# ρ = 0.34, uniform quota ⌈0.34·9/3⌉ = 2 per class: each class keeps its two largest p[ỹ].
CSS = [[1, 2, 4, 5, 6, 7], [1, 2, 3, 5, 7, 8]]
MHCS = [[0, 1, 2, 4, 5, 6, 7], [1, 2, 3, 5, 7, 8]]  # τ = 0.99 adds sample 0 to peer 1


def outputs(peer):
    probs = torch.zeros(len(LABELS), 3)
    for i, (y, p) in enumerate(zip(LABELS, P_LABEL[peer], strict=True)):
        probs[i] = (1 - p) / 2
        probs[i, y] = p
    if peer == 1:
        probs[4] = torch.tensor([0.895, 0.1, 0.005])
    return PeerOutputs(probs.log(), torch.zeros_like(probs))


def trainer(monkeypatch, *, verified=None, label_prior=None, **promix):
    cfg = Config()
    cfg.model.width, cfg.run.progress, cfg.run.device = 4, False, "cpu"
    cfg.optim.batch_size = 4
    for key, value in ({"tau": 0.99} | promix).items():
        setattr(cfg.promix, key, value)
    n = len(LABELS)
    data = Dataset("hand", ImageSet(torch.zeros(n, 1, 8, 8, dtype=torch.uint8),
                                    torch.tensor(LABELS), ("a", "b", "c")),
                   true_labels=torch.tensor(TRUE), verified=verified, label_prior=label_prior)
    t = Trainer(cfg, data)
    monkeypatch.setattr(t, "infer_train", lambda: [outputs(0), outputs(1)])
    return t


def sched(rho=0.34):
    return EpochSchedule(epoch=3, lr=0.1, warmup=False, rho=rho, w=1.0, lambda_u=0.1, lga=False)


def masks(t, name):
    """Each peer's `name` mask (clean, chosen or selected) from the trainer's state."""
    return [getattr(peer, name) for peer in t.state.selection]


def members(mask):
    return [i for i, m in enumerate(mask.tolist()) if m]


def quality(selected):
    clean = {i for i, (a, b) in enumerate(zip(LABELS, TRUE, strict=True)) if a == b}
    tp = len(clean & set(selected))
    return tp / len(selected), tp / len(clean)


def test_css_then_mhcs_per_peer(monkeypatch):
    t = trainer(monkeypatch)
    record = t.select(sched())
    assert [members(m) for m in masks(t, "clean")] == CSS
    assert [members(m) for m in masks(t, "chosen")] == MHCS
    assert [members(m) for m in masks(t, "selected")] == MHCS
    # the step overwrites chosen, not selected
    assert masks(t, "chosen")[0] is not masks(t, "selected")[0]
    assert record["rho"] == 0.34
    assert {key for key in record if key.startswith("select/")} == {
        f"select/{name}_{k}/{q}" for name in ("css", "mhcs") for k in (1, 2)
        for q in ("precision", "recall", "f1")}
    for k in range(2):
        assert record[f"selected/css_{k + 1}"] == len(CSS[k])
        assert record[f"selected/mhcs_{k + 1}"] == len(MHCS[k])
        for name, sets in (("css", CSS), ("mhcs", MHCS)):
            precision, recall = quality(sets[k])
            assert record[f"select/{name}_{k + 1}/precision"] == pytest.approx(precision)
            assert record[f"select/{name}_{k + 1}/recall"] == pytest.approx(recall)
            f1 = 2 * precision * recall / (precision + recall)
            assert record[f"select/{name}_{k + 1}/f1"] == pytest.approx(f1)


def test_mhcs_in_the_selection_pass_is_strict(monkeypatch):
    # τ set to exactly the probability the pass computes for sample 0 of peer 1: not above τ.
    tau = float(outputs(0).probs[0, 0])
    t = trainer(monkeypatch, tau=tau)
    t.select(sched())
    assert members(masks(t, "chosen")[0]) == CSS[0]
    t = trainer(monkeypatch, tau=tau - 1e-6)
    t.select(sched())
    assert members(masks(t, "chosen")[0]) == MHCS[0]


def test_without_mhcs_the_chosen_set_is_the_css_set(monkeypatch):
    t = trainer(monkeypatch, mhcs=False)
    record = t.select(sched())
    assert [members(m) for m in masks(t, "chosen")] == CSS
    assert masks(t, "chosen")[0] is not masks(t, "clean")[0]
    assert record["selected/mhcs_1"] == len(CSS[0])


def test_the_quota_follows_rho_and_the_rule(monkeypatch):
    # The classes are of equal size, where both rules give the same quotas: the rule passed
    # to class_quotas is checked directly.
    rules = []

    def spy(*args, rule):
        rules.append(rule)
        return class_quotas(*args, rule=rule)

    monkeypatch.setattr(promix.trainer, "class_quotas", spy)
    t = trainer(monkeypatch, quota="per_class")
    t.select(sched(rho=0.1))  # ⌈0.1·3⌉ = 1 per class: the largest p[ỹ] of each
    assert [members(m) for m in masks(t, "clean")] == [[2, 4, 7], [2, 3, 8]]
    assert rules == ["per_class"] * 2


def test_verified_labels_join_each_css_set(monkeypatch):
    """Verified samples 0 and 8 join each peer's set and take none of the two slots of their
    class: peer 2's class 2 (p[ỹ] 0.6, 0.7, 0.995) would have kept 7 and 8 by loss; with 8
    verified its two slots go to 6 and 7."""
    t = trainer(monkeypatch, verified=torch.tensor([1, 0, 0, 0, 0, 0, 0, 0, 1]).bool())
    record = t.select(sched())
    assert [members(m) for m in masks(t, "clean")] == [[0, 1, 2, 4, 5, 6, 7, 8],
                                                       [0, 1, 2, 3, 5, 6, 7, 8]]
    assert record["selected/css_1"] == 8 and record["selected/css_2"] == 8


def test_css_ranks_by_loss_minus_the_log_label_prior(monkeypatch):
    # loss - log(prior) = -log(p[ỹ]·prior): each class keeps its two largest p[ỹ]·prior.
    # peer 1: class 0 0.995, 0.498, 0.4985; class 1 0.2, 0.08, 0.5; class 2 0.4, 0.7, 0.1
    # peer 2: class 0 0.3, 0.25, 0.45; class 1 0.995, 0.01, 0.2; class 2 0.6, 0.7, 0.995
    prior = torch.tensor([1, 0.5, 0.5, 1, 0.1, 1, 1, 1, 1])
    t = trainer(monkeypatch, label_prior=prior)
    t.select(sched())
    assert [members(m) for m in masks(t, "clean")] == [[0, 2, 3, 5, 6, 7], [0, 2, 3, 5, 7, 8]]


@pytest.mark.parametrize("mode, estimator, threshold", [
    ("auto", "auto_rho", 0.5), ("bayes", "auto_rho", 0.25), ("lenient", "lenient_rho", None)])
def test_estimated_rho_per_peer(monkeypatch, mode, estimator, threshold):
    """Each peer's ratio comes from its own losses, clipped to [0.05, 1]; lenient and bayes
    hold the first estimate, auto re-estimates at every pass."""
    calls = []

    def fake(loss, labels, num_classes, *, low, high, threshold=None):
        assert labels.tolist() == LABELS and num_classes == 3
        calls.append((loss.clone(), low, high, threshold))
        return torch.tensor([1.0, 0.34, 0.1], dtype=torch.float64)[:num_classes]

    monkeypatch.setattr(promix.trainer, estimator, fake)
    t = trainer(monkeypatch, rho_mode=mode, quota="per_class", rho_posterior=0.25)
    record = t.select(sched())
    assert "rho" not in record and len(calls) == 2
    for k, (loss, low, high, thr) in enumerate(calls):
        expected = torch.tensor([-math.log(p) for p in P_LABEL[k]])
        torch.testing.assert_close(loss, expected)
        assert (low, high, thr) == (0.05, 1.0, threshold)
        assert record[f"rho_auto_{k + 1}"] == [1.0, 0.34, 0.1]
    # ⌈1·3⌉, ⌈0.34·3⌉ = 2 and ⌈0.1·3⌉ = 1: all of class 0, two of class 1, one of class 2
    assert [members(m) for m in masks(t, "clean")] == [[0, 1, 2, 4, 5, 7], [0, 1, 2, 3, 5, 8]]
    # 1/3 is held as a float64: ⌈(1/3)·3⌉ = 1 (as a float32, 1/3 rounds up and the quota to 2)
    held = [1.0, 1 / 3, 1.0]
    t.state.history += [record, {"epoch": 4}, {"rho_auto_1": held, "rho_auto_2": held},
                        {"epoch": 5}]
    again = t.select(sched())
    if mode == "auto":  # estimated again at every pass
        assert len(calls) == 4 and again["rho_auto_1"] == [1.0, 0.34, 0.1]
    else:  # the latest estimate in the history is held
        assert len(calls) == 2 and again["rho_auto_1"] == held
        # all of classes 0 and 2, and the largest p[ỹ] of class 1
        assert [members(m) for m in masks(t, "clean")] == [[0, 1, 2, 4, 6, 7, 8],
                                                           [0, 1, 2, 3, 6, 7, 8]]


def test_gmm_selection(monkeypatch):
    seen = []

    def fake(loss):
        seen.append(loss.clone())
        return torch.arange(len(loss)) % 2 == 0

    monkeypatch.setattr(promix.trainer, "gmm_clean", fake)
    t = trainer(monkeypatch, selection="gmm", mhcs=False)
    record = t.select(sched())
    assert "rho" not in record and len(seen) == 2
    torch.testing.assert_close(seen[1], torch.tensor([-math.log(p) for p in P_LABEL[1]]))
    assert members(masks(t, "clean")[0]) == [0, 2, 4, 6, 8]


def test_the_epoch_record_holds_the_final_chosen_sets(monkeypatch):
    """What each step returns as L_k (LGA included) is written into the trainer's masks at the
    batch's indices and counted in the epoch record, with its quality."""
    t = trainer(monkeypatch)
    t.select(sched())
    final = [{0, 3, 6, 7, 8}, {1, 2}]  # what the (fake) steps choose, by sample index

    def fake_step(nets, optimizer, batch, **kwargs):
        chosen = [torch.tensor([int(i) in f for i in batch.index]) for f in final]
        return {"loss": 0.0}, chosen

    monkeypatch.setattr(promix.methods, "train_step", fake_step)
    monkeypatch.setattr(t, "batches", lambda drop_last: iter([torch.arange(0, 5),
                                                              torch.arange(5, 9)]))
    record = t.train_epoch(sched())
    assert [members(m) for m in masks(t, "chosen")] == [sorted(f) for f in final]
    for k in range(2):
        assert record[f"selected/chosen_{k + 1}"] == len(final[k])
        precision, recall = quality(sorted(final[k]))
        assert record[f"select/chosen_{k + 1}/precision"] == pytest.approx(precision)
        assert record[f"select/chosen_{k + 1}/recall"] == pytest.approx(recall)


def test_passes_from_the_middle_epoch_on_make_the_late_average(monkeypatch):
    # 8 epochs: the passes of epochs 4 and up count, with the final probabilities; epoch 3's
    # does not. Each pass hands the peers another table, so a wrong window changes the mean.
    t = trainer(monkeypatch)
    t.cfg.schedule.epochs = 8
    a, b = outputs(0).probs, outputs(1).probs
    passes = {3: [outputs(1), outputs(1)], 4: [outputs(0), outputs(1)], 5: [outputs(1), outputs(0)]}
    for epoch, outs in passes.items():
        monkeypatch.setattr(t, "infer_train", lambda outs=outs: outs)
        t.select(replace(sched(), epoch=epoch))
    final = torch.full_like(a, 1 / 3)
    first, second = t.state.selection
    assert int(first.late_passes) == 2 and int(second.late_passes) == 2
    torch.testing.assert_close(first.late_probs(final), (a + b + final) / 3)
    torch.testing.assert_close(second.late_probs(final), (b + a + final) / 3)
    # the average of one pass table is that table
    t = trainer(monkeypatch)
    t.cfg.schedule.epochs = 8
    t.select(replace(sched(), epoch=7))
    torch.testing.assert_close(t.state.selection[0].late_probs(a), a)
