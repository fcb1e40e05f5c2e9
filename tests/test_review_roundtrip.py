"""The review loop end to end on a tiny image folder: train, `promix review`, decisions made
with real key presses in headless Chromium, corrections.csv downloaded, a second run trained
with --corrections: labels replaced, verified samples never flagged, the invalid image
dropped, the corrections recorded in the run directory."""

import contextlib
import csv
import hashlib
import json
import threading
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from cdp import Browser
from PIL import Image

from promix.cli import main
from promix.review.serve import review_server
from promix.runs import load_tensors

CLASSES = ["blue", "green", "red"]
TINY = ["--epochs=3", "--warmup_epochs=1", "--width=4", "--batch_size=16", "--progress=false",
        "--tau=0.6", "--test_fraction=0.25", "--seed=1"]
# keys pressed on the first five images of the page, and what each means
KEYS = ["a", "k", "2", "x", "u"]

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """16 images per colour class; 3 of each class filed under the next class's folder."""
    root = tmp_path_factory.mktemp("data") / "images"
    rng = np.random.default_rng(0)
    colours = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}
    for c, name in enumerate(CLASSES):
        for i in range(16):
            filed = CLASSES[(c + 1) % 3] if i < 3 else name
            (root / filed).mkdir(parents=True, exist_ok=True)
            pixels = np.clip(rng.normal(colours[name], 40, (8, 8, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / filed / f"{name}{i}.png")
    return root


def train(folder, out, name, *extra):
    assert main(["train", "--data", str(folder), f"--out_dir={out}", f"--run.name={name}",
                 f"--cache_dir={out / 'cache'}", *TINY, *extra]) == 0
    return out / name


@contextlib.contextmanager
def served(run_dir):
    """`promix review --serve`'s server on a free loopback port, in a thread: its root URL."""
    with review_server(run_dir, port=0) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/"
        finally:
            server.shutdown()


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def expected_rows(items, classes):
    """What the keys must produce, derived from the page's items (its own data, not its
    export code): a accepts the suggestion, k keeps the given label, 2 picks class 1 (keep,
    accept or relabel by what it equals), x marks invalid, u unsure."""
    out = []
    for key, it in zip(KEYS, items, strict=False):
        given = classes[it["given"]]
        if key == "a":
            decision, label = "accept", classes[it["sug"]]
        elif key == "k":
            decision, label = "keep", given
        elif key == "2":
            decision = "keep" if it["given"] == 1 else "accept" if it["sug"] == 1 else "relabel"
            label = classes[1]
        else:
            decision, label = {"x": "invalid", "u": "unsure"}[key], ""
        out.append({"path": it["path"], "index": str(it["i"]), "given_label": given,
                    "decision": decision, "label": label})
    return out


@pytest.fixture(scope="module")
def reviewed(folder, tmp_path_factory):
    """The first run, its review page driven by key presses, and the downloaded CSV."""
    out = tmp_path_factory.mktemp("runs")
    run = train(folder, out, "first")
    assert main(["review", str(run), "--top=8"]) == 0
    downloads = tmp_path_factory.mktemp("downloads")
    with Browser((run / "review.html").as_uri(), tmp_path_factory.mktemp("profile"),
                 downloads) as page:
        data = page.evaluate("JSON.parse(document.getElementById('review-data').textContent)")
        assert page.evaluate("document.getElementById('progress').textContent") == (
            "0 reviewed of 8")
        for key in KEYS:
            page.press(key)
        page.press("ArrowLeft")  # moving does not decide anything
        page.press("ArrowRight")
        progress = page.evaluate("document.getElementById('progress').textContent")
        address = page.evaluate("location.hash")
        page.reload()  # decisions survive a reload (localStorage, and the page's address)
        after_reload = page.evaluate("window.promixReview.exportCsv()")
        page.press("e")  # the real download, through a Blob link
        target = downloads / "corrections.csv"
        for _ in range(100):
            if target.is_file() and target.stat().st_size:
                break
            page.evaluate("new Promise(r => setTimeout(r, 50))")
    return {"run": run, "out": out, "data": data, "progress": progress, "csv": target,
            "after_reload": after_reload, "address": address}


def test_the_page_lists_the_most_suspicious_images(reviewed):
    data, run = reviewed["data"], reviewed["run"]
    table = rows(run / "label_issues.csv")  # most suspicious first
    assert [it["i"] for it in data["items"]] == [int(r["index"]) for r in table[:8]]
    assert data["classes"] == CLASSES
    for it, r in zip(data["items"], table, strict=False):
        # the page keeps the absolute file; label_issues.csv names it relative to the data root
        assert it["path"].endswith("/" + r["path"]) and CLASSES[it["given"]] == r["given_label"]
        assert it["img"].startswith("data:image/png;base64,")  # embedded: works offline
        assert len(it["peers"]) == 2 and len(it["peers"][0]) == 3
    page = (run / "review.html").read_text()
    assert "<script src" not in page and "http://" not in page and "https://" not in page


def test_keys_make_the_expected_corrections(reviewed):
    expected = expected_rows(reviewed["data"]["items"], CLASSES)
    assert rows(reviewed["csv"]) == expected
    assert reviewed["after_reload"] == reviewed["csv"].read_text()
    verdicts = [r for r in expected if r["decision"] in ("accept", "keep", "relabel")]
    wrong = sum(r["label"] != r["given_label"] for r in verdicts)
    assert reviewed["progress"].startswith(f"5 reviewed of 8 \u2014 {wrong} of {len(verdicts)}")


def test_the_address_alone_restores_the_decisions(reviewed, tmp_path):
    """Chromium sometimes reloads a file:// page with an empty localStorage: the page's address
    keeps the decisions too. A browser with a new profile (no storage at all) given only the
    address must show them; an address for other labels, or entries that do not fit the page,
    are ignored."""
    uri, key, items = (reviewed["run"] / "review.html").as_uri(), reviewed["data"]["key"], \
        reviewed["data"]["items"]
    export = "window.promixReview.exportCsv()"
    with Browser(uri + reviewed["address"], tmp_path / "fresh") as page:
        assert page.evaluate(export) == reviewed["csv"].read_text()
    first, second = items[0]["i"], items[1]["i"]
    absent = max(it["i"] for it in items) + 1
    with Browser(uri + f"?1#review=other&d={first}:keep:0", tmp_path / "other") as page:
        assert page.evaluate(export).count("\n") == 1  # header only: not this page's labels
        page.goto(uri + f"?2#review={quote(key, safe='')}&d={first}:relabel:2,{second}:keep:9,"
                  f"{absent}:keep:0,{second}:oops:1")
        got = page.evaluate(export).splitlines()[1:]
    assert [line.split(",")[1:] for line in got] == [
        [str(first), CLASSES[items[0]["given"]], "relabel", CLASSES[2]]]


def test_served_page_reopened_without_its_address_keeps_the_decisions(reviewed, tmp_path):
    """Over `--serve` (http) the page opened again, without the address, reads localStorage."""
    with served(reviewed["run"]) as root:
        url = root + "review.html"
        with Browser(url, tmp_path) as page:
            for key in ("a", "k"):
                page.press(key)
            decided = page.evaluate("window.promixReview.exportCsv()")
            page.goto(url + "?again")
            assert page.evaluate("window.promixReview.exportCsv()") == decided
            assert decided.count("\n") == 3  # the header and two decisions


def test_corrections_feed_the_next_run(reviewed, folder):
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}
    run = train(folder, reviewed["out"], "second", f"--corrections={reviewed['csv']}")
    decided = {r["path"]: r for r in rows(reviewed["csv"])}
    first = {r["path"]: r for r in rows(reviewed["run"] / "noisy_labels.csv")}
    second = rows(run / "noisy_labels.csv")
    paths = [r["path"] for r in second]
    invalid = [p for p, r in decided.items() if r["decision"] == "invalid"]
    assert len(invalid) == 1 and invalid[0] not in paths  # dropped
    assert len(second) == len(first) - 1
    verified = {p for p, r in decided.items() if r["decision"] in ("accept", "keep", "relabel")}
    for r in second:
        want = decided[r["path"]]["label"] if r["path"] in verified else first[r["path"]]["class"]
        assert r["class"] == want  # corrected labels replace the given ones, others unchanged
    outputs = load_tensors(run / "train_outputs.safetensors")
    mask = outputs["verified"].bool().numpy()
    assert [paths[i] for i in np.nonzero(mask)[0]] == [p for p in paths if p in verified]
    for k in (1, 2):  # always in the clean set
        assert outputs[f"css{k}"].bool().numpy()[mask].all()
    for r in rows(run / "label_issues.csv"):  # never flagged
        if r["path"] in verified:
            assert r["is_label_issue"] == "False" and r["selected_by"] == "verified"
            assert r["suggested_label"] == ""
    config = json.loads((run / "config.json").read_text())["data"]
    copy = run / "corrections.csv"
    assert copy.read_bytes() == reviewed["csv"].read_bytes()
    assert config["corrections"] == str(reviewed["csv"].resolve())
    assert config["corrections_sha256"] == hashlib.sha256(copy.read_bytes()).hexdigest()
    assert json.loads((run / "noise.json").read_text())["corrections"]["invalid"] == 1
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == before  # user files untouched


def test_review_of_a_directory_that_is_not_a_run(tmp_path, capsys):
    assert main(["review", str(tmp_path)]) == 2
    assert "not a promix run directory" in capsys.readouterr().err


def test_corrections_for_other_data_are_refused_before_training(reviewed, folder, tmp_path,
                                                               capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("path,index,given_label,decision,label\n"
                   f"{Path(folder) / 'red' / 'nothere.png'},0,red,keep,red\n")
    assert main(["train", "--data", str(folder), f"--out_dir={tmp_path}", *TINY,
                 f"--corrections={bad}"]) == 2
    assert "nothere.png is not in the training set" in capsys.readouterr().err
    assert not any(p.is_dir() for p in tmp_path.iterdir())  # no run directory was created


def test_labelstudio_and_fiftyone_from_the_cli(reviewed, folder, tmp_path):
    run = reviewed["run"]
    assert main(["review", str(run), "--top=8", "--to=labelstudio"]) == 0
    tasks = json.loads((run / "labelstudio" / "tasks.json").read_text())
    assert [t["data"]["index"] for t in tasks] == [it["i"] for it in reviewed["data"]["items"]]
    assert all(t["data"]["image"].startswith("/data/local-files/?d=") for t in tasks)
    assert main(["review", str(run), "--top=8", "--to=fiftyone"]) == 0
    files = json.loads((run / "fiftyone" / "data.json").read_text())
    assert all(Path(p).is_file() and Path(p).is_relative_to(folder.resolve())
               for p in files.values())  # the user's own files, not copies
    export = [{**t, "annotations": [{"result": [{
        "from_name": "label", "to_name": "image", "type": "choices",
        "value": {"choices": [t["data"]["given_label"]]}}]}]} for t in tasks[:3]]
    (tmp_path / "export.json").write_text(json.dumps(export))
    assert main(["review", str(run), f"--from-labelstudio={tmp_path / 'export.json'}"]) == 0
    got = rows(run / "corrections.csv")
    assert [r["decision"] for r in got] == ["keep"] * 3
    assert [r["path"] for r in got] == [t["data"]["path"] for t in tasks[:3]]


def test_filters_narrow_the_list(reviewed, tmp_path):
    items = reviewed["data"]["items"]
    given, sug = items[0]["given"], items[0]["sug"]
    pair = sum(it["given"] == given and it["sug"] == sug for it in items)
    either = sum(given in (it["given"], it["sug"]) for it in items)
    select = ("(function (id, v) { var s = document.getElementById(id); s.value = v;"
              " s.dispatchEvent(new Event('change')); return document.querySelector("
              "'#card .info div:last-child').textContent; })")
    with Browser((reviewed["run"] / "review.html").as_uri(), tmp_path) as page:
        assert page.evaluate(f"{select}('f-pair', '{given}>{sug}')") == f"1 / {pair} shown"
        page.evaluate(f"{select}('f-pair', '')")
        assert page.evaluate(f"{select}('f-class', '{given}')") == f"1 / {either} shown"
        page.press("c")  # focuses the any-class picker (classes beyond the digit keys)
        assert page.evaluate("document.activeElement.id") == "pick"
        page.evaluate(f"{select}('pick', '2')")
        row = page.evaluate("window.promixReview.exportCsv()").splitlines()[1].split(",")
        assert row[1] == str(items[0]["i"]) and row[4] == CLASSES[2]


def test_serve_saves_the_export_in_the_run_dir(reviewed, tmp_path):
    import urllib.error
    import urllib.request

    run = tmp_path / "run"
    run.mkdir()
    (run / "review.html").write_text("<html>page</html>")
    with served(run) as url:
        assert urllib.request.urlopen(url).read() == b"<html>page</html>"
        text = reviewed["csv"].read_bytes()
        request = urllib.request.Request(url + "corrections.csv", data=text, method="POST")
        assert urllib.request.urlopen(request).status == 204
        assert (run / "corrections.csv").read_bytes() == text
        bad = urllib.request.Request(url + "corrections.csv", data=b"rm -rf", method="POST")
        with pytest.raises(urllib.error.HTTPError, match="400"):
            urllib.request.urlopen(bad)


def test_measured_precision_on_the_verified_images(reviewed, capsys):
    """`--measure`: the first run's flags against the reviewer's verdicts, by hand."""
    run, decided = reviewed["run"], rows(reviewed["csv"])
    table = {r["index"]: r for r in rows(run / "label_issues.csv")}
    verdicts = [r for r in decided if r["decision"] in ("accept", "keep", "relabel")]
    wrong = [r["label"] != r["given_label"] for r in verdicts]
    flagged = [table[r["index"]]["is_label_issue"] == "True" for r in verdicts]
    hits = sum(w and f for w, f in zip(wrong, flagged, strict=True))
    capsys.readouterr()
    assert main(["review", str(run), f"--measure={reviewed['csv']}"]) == 0
    out = capsys.readouterr().out
    assert f"measured on the {len(verdicts)} labels verified" in out
    assert f"({sum(wrong)} were wrong)" in out
    assert f"precision {hits / max(sum(flagged), 1):.1%} ({sum(flagged)} flagged)" in out
    assert f"recall {hits / max(sum(wrong), 1):.1%}" in out
