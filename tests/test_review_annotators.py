"""Several annotators per image end to end: a tiny run on the embedded digits whose labels
come from three simulated annotators (--annotators, long format, by index)."""

import csv
import json

import numpy as np
import pytest

from promix.cli import main
from promix.config import load_preset
from promix.data.load import build_dataset

TINY = ["--per_class=20", "--epochs=2", "--warmup_epochs=1", "--width=4", "--batch_size=64",
        "--progress=false", "--noise=none"]
ACCURACY = {"ann": 0.95, "bob": 0.6, "cid": 0.6}

pytestmark = pytest.mark.slow


def test_training_takes_the_consensus(tmp_path):
    cfg = load_preset("demo")
    cfg.data.per_class, cfg.data.noise = 20, "none"
    data = build_dataset(cfg.data)
    true, classes = data.train.labels.numpy(), data.classes
    rng = np.random.default_rng(0)
    said = {}
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "annotator", "label"])
        for name, acc in ACCURACY.items():
            wrong = (true + rng.integers(1, len(classes), len(true))) % len(classes)
            said[name] = np.where(rng.random(len(true)) < acc, true, wrong)
            w.writerows((i, name, classes[y]) for i, y in enumerate(said[name]))
    out = tmp_path / "runs"
    assert main(["train", *TINY, f"--out_dir={out}", "--run.name=a", "--consensus=majority",
                 f"--annotators={tmp_path / 'labels.csv'}"]) == 0
    run = out / "a"
    with open(run / "noisy_labels.csv", newline="") as f:
        given = np.array([int(r["label"]) for r in csv.DictReader(f)])
    votes = np.stack(list(said.values()), 1)  # (N, 3)
    two = (votes[:, 0] == votes[:, 1]) | (votes[:, 0] == votes[:, 2])
    majority = np.where(two, votes[:, 0], votes[:, 1])  # valid where some two agree
    strict = two | (votes[:, 1] == votes[:, 2])
    assert (given[strict] == majority[strict]).all()
    assert all(given[i] in votes[i] for i in np.nonzero(~strict)[0])  # ties: one of theirs
    info = json.loads((run / "noise.json").read_text())["annotators"]
    assert [a["name"] for a in info["annotators"]] == list(ACCURACY)
    assert info["annotated"] == len(true) and info["method"] == "majority"
    page = (run / "report.html").read_text()
    assert "<h2>Annotators</h2>" in page and "estimated accuracy" in page
    assert (run / "annotators.csv").read_bytes() == (tmp_path / "labels.csv").read_bytes()
    assert json.loads((run / "config.json").read_text())["data"]["annotators_sha256"]
