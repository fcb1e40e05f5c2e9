"""Fast checks of what counts as truth: the given labels of your own data are not, --truth
files are read row by row, and paths are shown relative to the data root."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from promix.config import DataConfig
from promix.data.base import DataError
from promix.data.load import build_dataset
from promix.truth import data_base, read_truth, relative_path

CLASSES = ("cat", "dog")


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "pets"
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        for i in range(10):
            Image.new("RGB", (8, 8), (20 * i, 100, 0)).save(root / name / f"{i}.png")
    return root


@pytest.mark.parametrize("noise, known", [("none", False), ("sym", True)])
def test_only_injected_noise_gives_true_labels(folder, tmp_path, noise, known):
    data = build_dataset(DataConfig(dataset="folder", root=str(folder), noise=noise,
                                    noise_rate=0.4, cache_dir=str(tmp_path / "cache")))
    assert (data.true_labels is not None) == known
    if known:
        assert 0 < data.noise["realized_rate"] < 1
    else:  # no realized rate 0 or identity matrix that would read as "no noise"
        assert data.noise["known"] is False and "realized_rate" not in data.noise


def paths_of(folder):
    return tuple(str(p) for p in sorted(folder.rglob("*.png")))


def test_truth_rows_by_relative_absolute_and_own_folder_path(folder, tmp_path):
    paths = paths_of(folder)[:15]  # the last five play the held-out test images
    truth = tmp_path / "checked" / "t.csv"
    truth.parent.mkdir()
    (truth.parent / "dog").mkdir()
    truth.write_text("path,label\n"
                     "cat/0.png,dog\n"                      # relative to the data root
                     f"{folder / 'cat' / '3.png'},cat\n"    # absolute
                     "dog/9.png,dog\n")                     # in the data, held out
    t = read_truth(truth, classes=CLASSES, size=len(paths), paths=paths, base=folder)
    assert t.index.tolist() == [paths.index(str(folder / "cat/0.png")),
                                paths.index(str(folder / "cat/3.png"))]
    assert t.labels.tolist() == [1, 0] and t.not_in_training == 1 and len(t) == 2
    assert t.source == "verified labels (t.csv)"


@pytest.mark.parametrize("text, message", [
    ("file,label\ncat/0.png,cat\n", "header must be path,label"),
    ("path,label\ncat/0.png,bird\n", "'bird' is not a class"),
    ("path,label\ncat/0.png,cat\ncat/0.png,dog\n", "verified twice"),
    ("path,label\ncat/nope.png,cat\n", "nope.png: no such image"),
    ("index,label\n99,cat\n", "not a row of noisy_labels.csv"),
])
def test_bad_truth_files_say_which_row(folder, tmp_path, text, message):
    (tmp_path / "t.csv").write_text(text)
    paths = paths_of(folder)
    with pytest.raises(DataError, match=message):
        read_truth(tmp_path / "t.csv", classes=CLASSES, size=len(paths), paths=paths,
                   base=folder)


def test_index_rows_for_data_without_files(tmp_path):
    (tmp_path / "t.csv").write_text("index,label\n3,dog\n0,cat\n")
    t = read_truth(tmp_path / "t.csv", classes=CLASSES, size=5)
    assert t.index.tolist() == [3, 0] and t.labels.tolist() == [1, 0]


def test_paths_shown_relative_to_the_data_root(tmp_path):
    assert data_base("folder", "/d/pets") == Path("/d/pets")
    assert data_base("csv", "/d/list.csv") == Path("/d")
    assert data_base("cifar10", "/d") is None
    assert relative_path("/d/pets/cat/1.png", Path("/d/pets")) == "cat/1.png"
    assert relative_path("/e/cat/1.png", Path("/d/pets")) == "/e/cat/1.png"  # outside: as is
    assert np.array_equal([relative_path("x.png", None)], ["x.png"])


def test_one_path_rule_for_truth_and_corrections_through_a_linked_folder(folder, tmp_path):
    """Training saw the images through a symbolic link; a person wrote their real paths, or
    paths relative to the data root or to their own file's folder. --truth and
    --corrections find the same rows (a real path once read as a held-out image)."""
    from promix.data.paths import PathIndex
    from promix.review.corrections import Correction, locate

    link = tmp_path / "linked"
    link.symlink_to(folder)
    paths = paths_of(link)[:15]
    index = PathIndex(paths, link)
    real = str(folder / "cat" / "3.png")
    row = paths.index(str(link / "cat" / "3.png"))
    assert index.find(real) == index.find("cat/3.png") == row
    assert index.find("3.png", near=folder / "cat") == row
    assert index.find("dog/9.png") is None and index.find("cat/nope.png") is None
    (tmp_path / "t.csv").write_text(f"path,label\n{real},dog\n")
    t = read_truth(tmp_path / "t.csv", classes=CLASSES, size=15, paths=paths, base=link)
    assert t.index.tolist() == [row] and t.not_in_training == 0
    data = build_dataset(DataConfig(dataset="folder", root=str(link), noise="none",
                                    cache_dir=str(tmp_path / "cache")))
    trained = data.train.paths  # the split's own training images, seen through the link
    assert trained[0].startswith(str(link))
    real = str(folder / Path(trained[0]).relative_to(link))
    keys = [(c.path, c.index) for c in [Correction(real, 5, "cat", "keep", "cat")]]
    assert locate(keys, data, root=str(link)) == [0]
