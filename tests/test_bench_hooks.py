"""The benchmarks' hooks into the trainer still reach it: benchmarks/throughput.py counts the
chosen samples of every ProMix step by wrapping `train_step` where the ProMix method calls it
(a refactor that moved the call once left the wrapper counting nothing)."""

import sys
from pathlib import Path

import pytest

from promix.config import apply_overrides, load_preset
from promix.data.load import build_dataset
from promix.trainer import Trainer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import throughput  # noqa: E402

TINY = ["--per_class=6", "--epochs=2", "--warmup_epochs=1", "--batch_size=16",
        "--model.name=small_cnn", "--width=4", "--progress=false", "--baseline=none",
        "--checkpoint_every=0"]

pytestmark = pytest.mark.usefixtures("one_thread")


def test_chosen_sizes_sees_every_promix_step(tmp_path):
    cfg = apply_overrides(load_preset("demo"), TINY)
    data = build_dataset(cfg.data)
    trainer = Trainer(cfg, data, tmp_path)
    with throughput.chosen_sizes() as sizes:
        trainer.fit()
    steps = len(data.train) // cfg.optim.batch_size  # drop_last; one ProMix epoch
    assert len(sizes) == steps and all(len(s) == 2 for s in sizes)
    assert all(0 <= k <= cfg.optim.batch_size for s in sizes for k in s)
