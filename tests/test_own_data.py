"""A user's own folder with known flips (issue 18): no surface presents the given labels as
truth, the estimates are there and marked, --truth measures against a hand count, and
eval/issues/predict/export work from another working directory without touching the data."""

import contextlib
import csv
import hashlib
import io
import json
import shutil
from functools import partial
from pathlib import Path

import command
import numpy as np
import pytest
from PIL import Image

from promix.cli import main

COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
PER_CLASS, FLIPPED = 16, 4  # in each class folder, the first 4 images are of the next class
TINY = ["--epochs=3", "--width=4", "--batch_size=16", "--progress=false", "--run.name=mine"]
# What only real ground truth can give; none of it may appear without truth.
FAKE_TRUTH = ["true noise rate", "AUROC", "AUPRC", "flag precision", "flag recall",
              "sel. precision", "against the true labels", "true_label", "true_noise_rate",
              "truly wrong", ">true "]

pytestmark = pytest.mark.slow  # one tiny training for the module (~15 s)


def make_folder(root: Path) -> dict[str, str]:
    """root/<class>/<i>.png; {path relative to root: true class}."""
    rng = np.random.default_rng(0)
    truth = {}
    for c in range(3):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(PER_CLASS):
            true = (c + 1) % 3 if i < FLIPPED else c
            pixels = np.clip(rng.normal(COLOURS[true], 40, (12, 12, 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(root / f"c{c}" / f"{i}.png")
            truth[f"c{c}/{i}.png"] = f"c{true}"
    return truth


def digest(root: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file()}


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


promix = partial(command.promix, timeout=300)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Train in-process from the data's parent folder with a relative --data path."""
    base = tmp_path_factory.mktemp("own")
    truth = make_folder(base / "photos")
    before = digest(base / "photos")
    monkey = pytest.MonkeyPatch()
    monkey.chdir(base)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["train", "--data", "photos", "--out_dir=runs", *TINY,
                     f"--cache_dir={base / 'cache'}"])
    monkey.undo()
    assert code == 0
    return base, base / "runs" / "mine", truth, before, out.getvalue()


def test_no_fake_truth_anywhere_and_the_estimates_are_there(trained):
    base, run, _, before, console = trained
    issues = promix("issues", str(run), cwd=base)
    assert issues.returncode == 0, issues.stderr
    page = (run / "report.html").read_text()
    labels_csv = (run / "label_issues.csv").read_text().splitlines()[0]
    class_csv = (run / "class_summary.csv").read_text().splitlines()[0]
    metrics = (run / "metrics.jsonl").read_text()
    for surface, text in [("console", console), ("issues", issues.stdout), ("report", page),
                          ("label_issues.csv", labels_csv), ("class_summary.csv", class_csv),
                          ("metrics.jsonl", metrics)]:
        for phrase in FAKE_TRUTH:
            assert phrase not in text, f"{surface} shows {phrase!r}"
    assert "select/" not in metrics  # no selection precision against the given labels
    summary = json.loads((run / "issues_summary.json").read_text())
    assert "truth" not in summary and "detection" not in json.dumps(summary)
    assert json.loads((run / "noise.json").read_text())["known"] is False
    est = summary["estimated"]
    low, high = est["noise_rate_interval_95"]
    assert low <= est["noise_rate"] <= high and len(est["per_class"]) == 3
    assert np.allclose(np.sum(est["transition_matrix"], 1), 1)
    # the peers started from random weights (the offline fallback): the count is an upper bound
    assert "upper bound" in est["caveat"] and "upper bound" in page
    for text in (console, issues.stdout):
        assert "estimated from the model (no ground truth)" in text
        assert f"note: {est['caveat']}" in text
        assert f"{summary['label_issues']} label issues flagged" in text
    assert "labels as given (their noise is unknown)" in console and "none noise" not in console
    assert "estimated wrong labels" in page and "estimated clean share" in page
    assert "<b>estimates</b>" in page
    assert "estimated_noise_rate,estimated_low_95,estimated_high_95" in class_csv
    assert labels_csv.startswith("index,path,given_label")
    assert digest(base / "photos") == before  # the user's files were only read


def test_no_upper_bound_note_from_pretrained_weights(trained, tmp_path):
    from promix.report.table import analyze_run, summarize

    _, run, _, _, _ = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    config = json.loads((copy / "config.json").read_text())
    config["model"]["weights"] = str(tmp_path / "backbone.safetensors")  # started from a file
    (copy / "config.json").write_text(json.dumps(config))
    assert "caveat" not in summarize(analyze_run(copy))["estimated"]
    assert "caveat" in summarize(analyze_run(run))["estimated"]


def test_truth_file_measures_against_a_hand_count(trained, tmp_path):
    base, run, truth, _, _ = trained
    rows = {r["path"]: r for r in read_csv(run / "label_issues.csv")}
    chosen = sorted(rows)[::2]  # every other training image, flipped and not
    (tmp_path / "checked.csv").write_text(
        "path,label\n" + "".join(f"{p},{truth[p]}\n" for p in chosen))
    proc = promix("issues", str(run), f"--truth={tmp_path / 'checked.csv'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    wrong = {p for p in chosen if truth[p] != rows[p]["given_label"]}
    flagged = {p for p in chosen if rows[p]["is_label_issue"] == "True"}
    hits = len(wrong & flagged)
    t = json.loads((run / "issues_summary.json").read_text())["truth"]
    assert t["size"] == len(chosen) and t["wrong"] == len(wrong) and t["source"].startswith(
        "verified labels (checked.csv)")
    assert t["detection"]["flagged"] == len(flagged)
    assert t["detection"]["precision"] == pytest.approx(hits / max(len(flagged), 1))
    assert t["detection"]["recall"] == pytest.approx(hits / max(len(wrong), 1))
    assert f"measured on {len(chosen)} labels, verified labels (checked.csv)" in proc.stdout
    verified = {r["path"]: r["verified_label"] for r in read_csv(run / "label_issues.csv")}
    assert all(verified[p] == truth[p] for p in chosen) and verified[sorted(rows)[1]] == ""
    (tmp_path / "bad.csv").write_text("path,label\nc0/nope.png,c1\n")
    bad = promix("issues", str(run), f"--truth={tmp_path / 'bad.csv'}", cwd=tmp_path)
    assert bad.returncode == 2 and "nope.png" in bad.stderr


def test_eval_issues_predict_from_another_directory(trained, tmp_path):
    base, run, _, _, _ = trained
    data = json.loads((run / "data.json").read_text())
    assert Path(data["root"]).is_absolute() and data["files_sha256"]
    ev = promix("eval", str(run), cwd=tmp_path)
    assert ev.returncode == 0, ev.stderr
    assert "as given (not verified" in ev.stdout
    iss = promix("issues", str(run), cwd=tmp_path)
    assert iss.returncode == 0 and "no gallery" not in iss.stdout
    # reading the data again trains nothing, and says nothing about a training size
    assert "training at" in trained[4] and "training at" not in ev.stdout + iss.stdout
    page = (run / "report.html").read_text()
    # the gallery shows every training image (fewer than 48), each with its file
    assert page.count('<div class="card">') == data["train_size"]
    assert page.count("c0/") >= 2 * sum(p.startswith("c0/") for p in (
        r["path"] for r in read_csv(run / "label_issues.csv")))
    pred = promix("predict", str(run), str(base / "photos" / "c1"), "--top_k=2",
                  f"--out={tmp_path / 'p.csv'}", cwd=tmp_path)
    assert pred.returncode == 0, pred.stderr
    rows = read_csv(tmp_path / "p.csv")
    assert len(rows) == PER_CLASS and list(rows[0]) == ["path", "class_1", "prob_1", "class_2",
                                                        "prob_2"]


def test_issues_keeps_a_report_that_has_the_gallery(trained, tmp_path):
    """A copy of the run whose data has moved away: the tables are rewritten, the report with
    the gallery is kept, and the new page goes beside it."""
    _, run, _, _, _ = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    old = (copy / "report.html").read_bytes()
    root = json.loads((copy / "data.json").read_text())["root"]
    for name in ("data.json", "config.json", "noisy_labels.csv"):
        path = copy / name
        path.write_text(path.read_text().replace(root, str(tmp_path / "gone")))
    proc = promix("issues", str(copy), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (copy / "report.html").read_bytes() == old
    assert "kept" in proc.stdout and "missing or changed since training" in proc.stdout
    assert "No gallery" in (copy / "report-without-gallery.html").read_text()


def test_export_applies_only_sure_fixes_and_never_touches_the_data(trained, tmp_path):
    base, run, truth, before, _ = trained
    out = tmp_path / "clean"
    proc = promix("export", str(run), f"--to={out}", "--min_confidence=0.5", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    issues = {r["path"]: r for r in read_csv(run / "label_issues.csv")}
    rows = read_csv(out / "export.csv")
    assert len(rows) == 3 * PER_CLASS  # every file: the held-out ones too, as not_checked
    for r in rows:
        rel = Path(r["source"]).relative_to(base / "photos").as_posix()
        assert (out / r["path"]).read_bytes() == (base / "photos" / rel).read_bytes()
        assert Path(r["path"]).parts[0] == r["label"]
        i = issues.get(rel)
        if i is None:
            assert r["status"] == "not_checked" and r["label"] == r["given_label"]
        elif i["is_label_issue"] == "False":
            assert r["status"] == "kept" and r["label"] == i["given_label"]
        else:
            sure = float(r["confidence"]) >= 0.5
            assert r["status"] == ("relabelled" if sure else "review")
            assert r["label"] == (i["predicted_label"] if sure else i["given_label"])
    review = {r["source"] for r in read_csv(out / "review.csv")}
    assert review == {r["source"] for r in rows if r["status"] == "review"}
    refused = promix("export", str(run), f"--to={base / 'photos' / 'fixed'}", cwd=tmp_path)
    assert refused.returncode == 2 and "inside your data folder" in refused.stderr
    table = tmp_path / "fixed.csv"
    assert promix("export", str(run), f"--csv={table}", "--unsure=drop",
                  cwd=tmp_path).returncode == 0
    assert "review" not in {r["status"] for r in read_csv(table)}
    assert digest(base / "photos") == before


def test_predict_decodes_like_training(trained, tmp_path):
    """An image with an EXIF rotation is predicted as its upright pixels, as training reads it."""
    _, run, _, _, _ = trained
    rng = np.random.default_rng(1)
    pixels = np.zeros((12, 20, 3), np.uint8)
    pixels[:, :10] = COLOURS[0]
    pixels[:, 10:] = rng.integers(0, 255, (12, 10, 3))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    Image.fromarray(pixels).save(tmp_path / "tagged.jpg", exif=exif, quality=100)
    with Image.open(tmp_path / "tagged.jpg") as img:
        Image.fromarray(np.asarray(img)).rotate(-90, expand=True).save(tmp_path / "upright.png")
        Image.fromarray(np.asarray(img)).save(tmp_path / "raw.png")
    proc = promix("predict", str(run), "tagged.jpg", "upright.png", "raw.png", "--top_k=3",
                  cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = {r["path"]: r for r in csv.DictReader(proc.stdout.splitlines())}
    probs = {k: {r[f"class_{j}"]: float(r[f"prob_{j}"]) for j in (1, 2, 3)}
             for k, r in rows.items()}
    assert probs["tagged.jpg"] == pytest.approx(probs["upright.png"], abs=2e-3)
    assert probs["tagged.jpg"] != pytest.approx(probs["raw.png"], abs=2e-3)


def test_predict_resizes_with_the_runs_filter(trained, tmp_path):
    """A run whose training resized bicubic (a timm model's own filter) predicts files from
    bicubic-resized pixels, in the command and in Run.predict_proba, not the bilinear default."""
    from promix import Run

    _, run, _, _, _ = trained
    copy = tmp_path / "bicubic"
    shutil.copytree(run, copy)
    cfg = json.loads((copy / "config.json").read_text())
    cfg["data"]["interpolation"] = "bicubic"
    (copy / "config.json").write_text(json.dumps(cfg))
    rng = np.random.default_rng(2)
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "big.png")
    side = json.loads((run / "data.json").read_text())["image_shape"][-1]
    with Image.open(tmp_path / "big.png") as img:  # the expected pixels, by PIL directly
        pixels = {f: np.asarray(img.resize((side, side), getattr(Image.Resampling, f)))
                  .transpose(2, 0, 1)[None] for f in ("BICUBIC", "BILINEAR")}
    model = Run(copy)
    want = model.predict_proba(pixels["BICUBIC"])[0]
    assert not np.allclose(want, model.predict_proba(pixels["BILINEAR"])[0], atol=1e-3)
    np.testing.assert_allclose(model.predict_proba([tmp_path / "big.png"])[0], want, atol=1e-6)
    proc = promix("predict", str(copy), "big.png", "--top_k=3", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    row = next(csv.DictReader(proc.stdout.splitlines()))
    got = {row[f"class_{j}"]: float(row[f"prob_{j}"]) for j in (1, 2, 3)}
    assert got == pytest.approx(dict(zip(model.classes, want.tolist(), strict=True)), abs=1e-4)
