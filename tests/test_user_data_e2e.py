"""`promix train --data FOLDER` end to end: the user preset, bad files skipped and listed."""

import json

import numpy as np
import pytest
from command import promix
from PIL import Image

from promix.runs import read_metrics


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    for c, colour in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200)]):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(14):
            pixels = np.clip(rng.normal(colour, 40, (12, 12, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / f"class{c}" / f"{i}.png")
    (root / "class0" / "broken.png").write_bytes(b"\x89PNG not really")
    return root


@pytest.mark.slow
def test_train_on_a_folder_skips_and_lists_bad_files(folder, tmp_path):
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}
    out = tmp_path / "runs"
    proc = promix("train", "--data", str(folder), f"--out_dir={out}", "--run.name=mine",
                  "--skip_bad_images=true", "--epochs=4", "--width=4", "--batch_size=16",
                  "--progress=false", f"--cache_dir={tmp_path / 'cache'}")
    assert proc.returncode == 0, proc.stderr
    run = out / "mine"
    assert (run / "skipped_files.txt").read_text().startswith(str(folder / "class0" / "broken.png"))
    config = json.loads((run / "config.json").read_text())
    assert config["preset"] == "user" and config["promix"]["quota"] == "per_class"
    assert config["promix"]["rho_mode"] == "lenient"
    assert config["promix"]["passes"] == "efficient"
    data = json.loads((run / "data.json").read_text())
    assert data["classes"] == ["class0", "class1", "class2"] and data["image_shape"] == [3, 12, 12]
    assert data["train_size"] + data["test_size"] == 42
    assert read_metrics(run)[-1]["phase"] == "promix"
    counts = np.bincount([int(r.split(",")[1]) for r in
                          (run / "noisy_labels.csv").read_text().splitlines()[1:]])
    last = read_metrics(run)[-1]
    rho = np.array(last["rho_auto_1"])  # estimated from the losses, one ratio per class
    assert rho.shape == counts.shape and ((rho >= 0.05) & (rho <= 1)).all()
    assert last["selected/css_1"] == sum(np.ceil(rho * counts).astype(int))  # ⌈ρ_j·n_j⌉
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == before  # user files untouched
