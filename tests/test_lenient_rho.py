"""rho_mode = lenient and bayes in the trainer: the per-class ratio is estimated at the first
selection pass and held, across epochs and across a resume (the estimates themselves:
test_selection.py)."""

import math

import pytest
import torch

import promix.trainer
from promix import checkpoint
from promix.config import apply_overrides, load_preset
from promix.data.load import build_dataset
from promix.trainer import Trainer

TINY = ["--per_class=20", "--width=4", "--batch_size=32", "--epochs=4", "--warmup_epochs=1",
        "--progress=false", "--baseline=none", "--tau=0.9", "--quota=per_class",
        "--keep_checkpoints=10"]
# What the estimator would return at the 1st, 2nd, 3rd selection pass: later estimates move,
# as loss-based ones do once training sees only the selection, but must not be used.
ESTIMATES = [0.9, 0.4, 0.95]


pytestmark = pytest.mark.usefixtures("one_thread")


def falling(calls):
    def estimate(loss, labels, num_classes, *, low, high, threshold=None):
        calls.append(threshold)
        value = ESTIMATES[min(len(calls) - 1, len(ESTIMATES) - 1) // 2]  # two peers per pass
        return torch.full((num_classes,), value, dtype=torch.float64)
    return estimate


@pytest.mark.parametrize("mode, estimator, threshold", [
    ("lenient", "lenient_rho", None), ("bayes", "auto_rho", 0.1)])
def test_the_ratio_is_estimated_once_and_survives_a_resume(
        mode, estimator, threshold, tmp_path, monkeypatch):
    cfg = apply_overrides(load_preset("demo"), TINY + [f"--rho_mode={mode}"])
    data = build_dataset(cfg.data)
    calls = []
    monkeypatch.setattr(promix.trainer, estimator, falling(calls))
    full = Trainer(cfg, data, tmp_path)
    full.fit(on_epoch=lambda t, record: checkpoint.save(tmp_path, t, record["epoch"]))
    passes = [r for r in full.history if r["phase"] == "promix"]
    assert len(passes) == 3 and calls == [threshold] * 2  # once per peer, at the first pass
    per_class = torch.bincount(full.labels, minlength=full.num_classes)
    for r in passes:
        assert r["rho_auto_1"] == r["rho_auto_2"] == [0.9] * full.num_classes
        assert "rho" not in r  # the ramp's ρ is not what was applied, so it is not logged
        assert r["selected/css_1"] == sum(math.ceil(0.9 * int(n)) for n in per_class)

    # Resumed after the second pass, the held 0.9 comes from the restored history; a fresh
    # start would estimate again (and get 0.4 here).
    calls[:] = [threshold] * 4
    again = Trainer(cfg, data, tmp_path)
    tensors, state = checkpoint.load(checkpoint.folder(tmp_path) / "ckpt-epoch0002.json")
    again.fit(start_epoch=checkpoint.restore(again, tensors, state))
    assert again.history[-1]["rho_auto_1"] == [0.9] * full.num_classes
    assert again.history[-1]["selected/css_1"] == passes[-1]["selected/css_1"]
    assert len(calls) == 4
