"""promix.export without training: the status of every file, and where export may write."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from promix.data.base import DataError
from promix.data.folder import Listing
from promix.export import _check_outside, plan

# Four training files and one held out; 1 and 2 are flagged, 1 surely (0.95), 2 not (0.6).
RUN = SimpleNamespace(
    paths=("/d/a/0.png", "/d/a/1.png", "/d/b/2.png", "/d/b/3.png"), classes=("a", "b"),
    labels=np.array([0, 0, 1, 1]),
    issues=SimpleNamespace(
        predicted_label=np.array([0, 1, 0, 1]),
        pred_probs=np.array([[0.9, 0.1], [0.05, 0.95], [0.6, 0.4], [0.2, 0.8]]),
        is_label_issue=np.array([False, True, True, False]),
        label_quality=np.array([0.9, 0.05, 0.4, 0.8])))
LISTING = Listing([Path(p) for p in (*RUN.paths, "/d/b/4.png")], [0, 0, 1, 1, 1],
                  ["train"] * 5, ("a", "b"))


@pytest.mark.parametrize("threshold, statuses, labels", [
    (0.9, ["kept", "relabelled", "review", "kept", "not_checked"], ["a", "b", "b", "b", "b"]),
    (0.5, ["kept", "relabelled", "relabelled", "kept", "not_checked"], ["a", "b", "a", "b", "b"]),
    (0.99, ["kept", "review", "review", "kept", "not_checked"], ["a", "a", "b", "b", "b"]),
])
def test_plan_applies_only_sure_fixes(threshold, statuses, labels):
    rows = plan(RUN, LISTING, min_confidence=threshold)
    assert [r["status"] for r in rows] == statuses and [r["label"] for r in rows] == labels
    assert [r["given_label"] for r in rows] == ["a", "a", "b", "b", "b"]


def test_a_reviewers_verdicts_come_first():
    from promix.review.corrections import Correction

    decided = {2: Correction("/d/b/2.png", 2, "b", "relabel", "a"),
               3: Correction("/d/b/3.png", 3, "b", "invalid", "")}
    rows = plan(RUN, LISTING, min_confidence=0.9, decided=decided)
    assert [r["status"] for r in rows] == ["kept", "relabelled", "reviewed", "invalid",
                                           "not_checked"]
    assert rows[2]["label"] == "a"


@pytest.mark.parametrize("out, data_dir, new_dir, message", [
    ("/d/clean", "/d", True, "inside your data folder"),
    ("/d", "/d", True, "inside your data folder"),
    ("/d/list.csv", None, False, "one of your data files"),  # never over the manifest
    ("/d/a/0.png", None, False, "one of your data files"),
])
def test_never_writes_into_the_data(out, data_dir, new_dir, message):
    files = [Path("/d/a/0.png"), Path("/d/list.csv")]
    with pytest.raises(DataError, match=message):
        _check_outside(Path(out), None if data_dir is None else Path(data_dir), files,
                       new_dir=new_dir)


def test_a_new_folder_must_be_empty(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("")
    with pytest.raises(DataError, match="not an empty folder"):
        _check_outside(tmp_path / "out", tmp_path / "data", [], new_dir=True)
    _check_outside(tmp_path / "fresh", tmp_path / "data", [], new_dir=True)  # fine
