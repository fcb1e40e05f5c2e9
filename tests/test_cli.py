"""End to end through the real CLI: `python -m promix ...` in a subprocess."""

import json

import numpy as np
import pytest
import torch
from command import promix
from PIL import Image

from promix.hardware import cpu_isa
from promix.runs import load_tensors, read_metrics

SMALL = ["--per_class=40", "--epochs=5", "--warmup_epochs=2", "--batch_size=64", "--width=8",
         "--progress=false", "--tau=0.9"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    proc = promix("train", f"--out_dir={out}", "--run.name=e2e", *SMALL, cwd=out)
    assert proc.returncode == 0, proc.stderr
    assert "ProMix" in proc.stdout and "cross-entropy" in proc.stdout
    return out / "e2e"


@pytest.mark.slow
def test_run_directory_contents(run_dir):
    config = json.loads((run_dir / "config.json").read_text())
    assert config["schedule"]["epochs"] == 5 and config["data"]["per_class"] == 40
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["seed"] == 123 and meta["promix_version"]
    assert meta["cpu_isa"] == cpu_isa()  # what decides the precision `auto` picked
    noise = json.loads((run_dir / "noise.json").read_text())
    assert 0.3 < noise["realized_rate"] < 0.6  # 50% symmetric: about 45% wrong

    metrics = read_metrics(run_dir)
    assert [m["epoch"] for m in metrics] == list(range(5))
    assert [m["phase"] for m in metrics] == ["warmup"] * 2 + ["promix"] * 3
    last = metrics[-1]
    for key in ("loss/ce_1", "loss/unl_2", "loss/mix_ap_1", "test/acc", "selected/css_1",
                "select/css_1/precision"):
        assert key in last, key
    assert last["selected/css_1"] == 200  # uniform quota: ceil(0.5 * 400 / 10) per class

    labels = (run_dir / "noisy_labels.csv").read_text().splitlines()
    assert labels[0] == "index,label,class" and len(labels) == 401
    outputs = load_tensors(run_dir / "train_outputs.safetensors")
    assert outputs["logits1"].shape == (400, 10)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["test_accuracy"] > 0.3  # well above chance (0.1) after 5 short epochs
    assert summary["baseline"]["method"] == "ce"
    assert (run_dir / "baseline-ce" / "metrics.jsonl").is_file()


@pytest.mark.slow
def test_eval_matches_the_last_epoch(run_dir):
    proc = promix("eval", str(run_dir), cwd=run_dir)
    assert proc.returncode == 0, proc.stderr
    acc = float(next(line.split()[1] for line in proc.stdout.splitlines()
                     if line.startswith("acc ")))
    assert acc == pytest.approx(read_metrics(run_dir)[-1]["test/acc"], abs=1e-6)


@pytest.mark.slow
def test_eval_runs_at_the_runs_precision(run_dir, tmp_path, monkeypatch):
    """eval computes the test accuracy as training did (bf16 autocast for a bf16 run), so
    its numbers are metrics.jsonl's, not an fp32 recomputation that can differ."""
    import shutil

    from promix import evaluate

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    config = json.loads((copy / "config.json").read_text())
    config["run"]["precision"] = "bf16"
    (copy / "config.json").write_text(json.dumps(config))
    used = []
    real = evaluate.autocast
    monkeypatch.setattr(evaluate, "autocast", lambda device, dtype: used.append(dtype) or real(
        device, dtype))
    evaluate.evaluate_run(copy)
    assert used == [torch.bfloat16]


@pytest.mark.slow
def test_predict_image_files(run_dir, tmp_path):
    files = []
    for i, value in enumerate([0, 255]):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(np.full((40, 30, 3), value, dtype=np.uint8)).save(path)
        files.append(str(path))
    proc = promix("predict", str(run_dir), *files, "--top_k=3", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    header, *rows = [line.split(",") for line in proc.stdout.strip().splitlines()]
    assert header == ["path", "class_1", "prob_1", "class_2", "prob_2", "class_3", "prob_3"]
    assert [r[0] for r in rows] == files
    for r in rows:
        assert all(c in "0123456789" for c in r[1::2])
        probs = [float(p) for p in r[2::2]]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    proc = promix("predict", str(run_dir), str(bad), cwd=tmp_path)
    assert proc.returncode == 2 and "bad.png" in proc.stderr


def test_bad_override_is_a_clear_error(tmp_path):
    proc = promix("train", "--tua=0.5", cwd=tmp_path)
    assert proc.returncode == 2
    assert "did you mean tau" in proc.stderr
    assert not (tmp_path / "runs").exists()  # nothing written for a bad command


def test_presets_and_config_listing(tmp_path):
    proc = promix("presets", cwd=tmp_path)
    assert proc.returncode == 0 and "demo" in proc.stdout
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines()[1:-1]}
    # preset dataset noise(2 words) epochs hours paper ...: the full run takes ~10x the fast
    full, fast = float(rows["cifar10-sym50"][5]), float(rows["cifar10-sym50-fast"][5])
    assert 5 < full < 8 and 8 < full / fast < 12
    assert rows["demo"][5] == "-"  # no measured throughput for the embedded data's size
    proc = promix("config", "--preset", "demo", cwd=tmp_path)
    assert "promix.tau = 0.95" in proc.stdout


def test_expected_h100_hours_follows_the_measured_throughput():
    from promix.cli import H100_IMAGES_PER_S, expected_h100_hours
    from promix.config import load_preset

    warm, promix_rate = H100_IMAGES_PER_S["resnet18"]
    cfg = load_preset("cifar10-sym50")  # 601 epochs, 10 of them warm-up, 50k images
    assert expected_h100_hours(cfg) == pytest.approx(
        (10 * 50_000 / warm + 591 * 50_000 / promix_rate) / 3600)
    cfg.data.per_class = 1000  # a subset: the size is not the preset's
    assert expected_h100_hours(cfg) is None
