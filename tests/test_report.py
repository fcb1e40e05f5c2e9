"""The run report end to end: a tiny real training through promix.api.train, then the tables,
the figures, report.html, `promix issues`, and the page rendered in headless Chromium."""

import csv
import json
import os
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from promix import find_label_issues
from promix.api import train_config
from promix.cli import main
from promix.config import apply_overrides, load_preset
from promix.data.load import build_dataset
from promix.runs import load_tensors

TINY = ["--per_class=20", "--epochs=2", "--warmup_epochs=1", "--width=4", "--batch_size=64",
        "--progress=false", "--tau=0.9", "--baseline=ce", "--run.name=tiny"]
COLUMNS = ["index", "given_label", "predicted_label", "label_quality", "is_label_issue",
           "suggested_label", "selected_by", "given_id", "predicted_id", "suggested_id",
           "true_label"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.slow  # one tiny training (ProMix and its CE baseline) for the module


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    cfg = apply_overrides(load_preset("demo"), TINY + [f"--out_dir={tmp_path_factory.mktemp('r')}"])
    data = build_dataset(cfg.data)
    data = replace(data, test=data.test.subset(torch.arange(200)))  # a faster evaluation
    result = train_config(cfg, data)
    return Path(result.run_dir), data


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_label_issue_table(run):
    run_dir, data = run
    rows = read_csv(run_dir / "label_issues.csv")
    assert list(rows[0]) == COLUMNS  # no path column: the embedded digits have no files
    assert sorted(int(r["index"]) for r in rows) == list(range(len(data.train)))
    quality = [float(r["label_quality"]) for r in rows]
    assert quality == sorted(quality) and 0 <= quality[0] and quality[-1] <= 1
    for r in rows:
        i = int(r["index"])
        assert r["given_label"] == data.classes[data.train.labels[i]]
        assert r["true_label"] == data.classes[data.true_labels[i]]
        assert r["predicted_label"] == data.classes[int(r["predicted_id"])]
        assert r["is_label_issue"] in ("True", "False")
        assert (r["suggested_label"] == "") == (r["suggested_id"] == "-1")
    outputs = load_tensors(run_dir / "train_outputs.safetensors")
    css = (outputs["css1"] | outputs["css2"]).bool()
    by = {int(r["index"]): r["selected_by"] for r in rows}
    assert {by[i] for i in torch.nonzero(css).flatten().tolist()} == {"css"}
    assert set(by.values()) <= {"css", "mhcs", "lga", "none"}


def test_python_api_matches_the_table(run):
    run_dir, data = run
    out = load_tensors(run_dir / "train_outputs.safetensors")
    # the report counts from the probabilities averaged over the second half of training
    late = [out["late_probs1"], out["late_probs2"]]
    assert not torch.allclose(late[0], out["logits1"].softmax(1))
    issues = find_label_issues(data.train.labels, out["logits1"].softmax(1),
                               out["logits2"].softmax(1), suggest_threshold=0.9,
                               filter_by="rank_by_class", count_probs=late)
    rows = read_csv(run_dir / "label_issues.csv")
    np.testing.assert_allclose([float(r["label_quality"]) for r in rows],
                               issues.label_quality[issues.order], atol=1e-5)
    flagged = {int(r["index"]) for r in rows if r["is_label_issue"] == "True"}
    assert flagged == set(np.flatnonzero(issues.is_label_issue).tolist())


def test_class_summary_and_health(run):
    run_dir, data = run
    rows = read_csv(run_dir / "class_summary.csv")
    assert [r["class"] for r in rows] == list(data.classes)
    assert [int(r["size"]) for r in rows] == torch.bincount(data.train.labels).tolist()
    assert all(0 <= float(r["estimated_noise_rate"]) <= 1 for r in rows)
    assert all(int(r["selected"]) <= int(r["size"]) for r in rows)
    s = json.loads((run_dir / "issues_summary.json").read_text())
    assert 0 <= s["health_score"] <= 1 and s["samples"] == len(data.train)
    assert s["health_score"] == pytest.approx(1 - s["estimated"]["noise_rate"])
    assert s["label_issues"] == sum(int(r["issues"]) for r in rows)
    c = len(data.classes)
    truth = s["truth"]  # synthetic noise: the labels before it are known
    assert truth["source"].startswith("synthetic noise") and truth["size"] == len(data.train)
    assert np.shape(truth["transition_matrix"]) == np.shape(s["estimated"]["transition_matrix"])
    assert np.shape(truth["transition_matrix"]) == (c, c)
    assert set(truth["detection"]) >= {"auroc", "auprc", "precision", "recall", "f1"}
    assert truth["noise_rate"] == pytest.approx(
        float((data.true_labels != data.train.labels).float().mean()))


def test_report_is_self_contained(run):
    run_dir, _ = run
    page = (run_dir / "report.html").read_text()
    pngs = sorted(p.name for p in (run_dir / "plots").glob("*.png"))
    assert pngs == ["accuracy.png", "class_counts.png", "confusion.png", "label_quality.png",
                    "selection.png", "transition.png"]
    assert page.count('src="data:image/png;base64,') == len(pngs) + 48  # figures + gallery
    assert not re.search(r'(src|href)="(?!data:)', page), "no external resource"
    assert "<script src" not in page and "@import" not in page


def test_no_report_for_the_baseline_until_asked(run, capsys):
    run_dir, _ = run
    base = run_dir / "baseline-ce"
    assert not (base / "report.html").exists()
    assert main(["issues", str(base), "--top", "3"]) == 0
    printed = capsys.readouterr().out
    assert "label issues flagged in 200 samples" in printed
    assert str(base / "report.html") in printed
    assert {r["selected_by"] for r in read_csv(base / "label_issues.csv")} == {"all"}


def test_cli_rebuilds_the_gallery(run, capsys):
    run_dir, _ = run
    assert main(["issues", str(run_dir), "--top", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    # flagged, estimated, measured (synthetic noise), the header, 5 rows, table, report
    assert lines[2].startswith("measured on 200 labels, synthetic noise")
    assert lines[3].split("\t")[:2] == ["index", "given_label"] and len(lines) == 4 + 5 + 2
    assert "no gallery" not in "\n".join(lines)


def test_gallery_left_out_when_the_data_changed(run):
    from promix.report import _training_images
    from promix.report.table import analyze_run

    run_dir, data = run
    other = replace(data, train=replace(data.train, labels=data.train.labels.roll(1)))
    images, note = _training_images(run_dir, analyze_run(run_dir), other)
    assert images is None and "does not match" in note


def test_cli_issues_on_a_wrong_directory(tmp_path, capsys):
    assert main(["issues", str(tmp_path)]) == 2
    assert "train it to the end" in capsys.readouterr().err


@pytest.mark.browser
def test_report_renders_in_chromium(run, tmp_path):
    if CHROMIUM is None:
        if os.environ.get("PROMIX_REQUIRE_BROWSER") == "1":
            pytest.fail("PROMIX_REQUIRE_BROWSER=1 but chromium is not installed: "
                        "apt-get install -y chromium")
        pytest.skip("chromium is not installed (apt-get install -y chromium to run this test)")
    run_dir, _ = run
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={tmp_path}", "--virtual-time-budget=5000",
         "--dump-dom", (run_dir / "report.html").resolve().as_uri()],
        capture_output=True, text=True, timeout=120,
    ).stdout
    body = re.search(r'<body data-images="(\d+)" data-images-loaded="(\d+)"', dom)
    assert body, "the page's script did not run: " + dom[:300]
    total, loaded = map(int, body.groups())
    assert total == 6 + 48 and loaded == total
    assert dom.count('data-loaded="1"') == total and 'data-loaded="0"' not in dom
