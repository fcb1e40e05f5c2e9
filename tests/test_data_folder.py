"""The user's files: ImageFolder trees, CSV manifests, decoding, cache, bad input."""

import hashlib
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from promix.data import cache as cache_mod
from promix.data.base import DataError
from promix.data.cache import decode_files
from promix.data.folder import load_csv, load_folder


def save(path: Path, img: Image.Image) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def rgb(value: int, size=(32, 32)) -> Image.Image:
    return Image.new("RGB", size, (value, 255 - value, 7))


def tree(root: Path, counts: dict[str, int], size=(32, 32), ext="png") -> Path:
    for k, (name, n) in enumerate(counts.items()):
        for i in range(n):
            save(root / name / f"{i:03d}.{ext}", rgb(10 * k + i, size))
    return root


def snapshot(root: Path) -> dict:
    """mtime and content hash of every file: the user's data must stay untouched."""
    return {p: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def cache_dir(tmp_path) -> Path:
    return tmp_path / "cache"


def test_imagefolder_tree(tmp_path, cache_dir):
    root = tree(tmp_path / "data", {"dog": 3, "cat": 2, "ant": 4})
    (root / "dog" / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    before = snapshot(root)
    data = load_folder(root, cache_dir=cache_dir)
    assert data.train.classes == ("ant", "cat", "dog")
    assert data.train.labels.tolist() == [0] * 4 + [1] * 2 + [2] * 3
    assert data.train.images.shape == (9, 3, 32, 32) and data.test is None
    assert data.train.paths[0].endswith("ant/000.png")
    assert data.train.images[4, :, 0, 0].tolist() == [10, 245, 7]  # cat/000: value 10
    assert snapshot(root) == before
    assert not any(p.suffix in (".npy", ".json") for p in root.rglob("*"))


def test_train_test_layout(tmp_path, cache_dir):
    root = tmp_path / "data"
    tree(root / "train", {"a": 3, "b": 2})
    tree(root / "test", {"a": 1, "b": 1})
    data = load_folder(root, cache_dir=cache_dir)
    assert len(data.train) == 5 and len(data.test) == 2
    assert data.test.classes == ("a", "b") and data.test.labels.tolist() == [0, 1]


def test_test_class_without_training_folder(tmp_path, cache_dir):
    root = tmp_path / "data"
    tree(root / "train", {"a": 2, "b": 2})
    tree(root / "test", {"c": 1})
    with pytest.raises(DataError, match="no training folder"):
        load_folder(root, cache_dir=cache_dir)


def test_modes_sizes_and_16_bit(tmp_path, cache_dir):
    root = tmp_path / "gray"
    save(root / "a" / "l.png", Image.new("L", (28, 28), 100))
    save(root / "a" / "one.png", Image.new("1", (28, 28), 1))
    save(root / "b" / "i16.png", Image.fromarray(np.full((28, 28), 32896, np.uint16)))
    save(root / "b" / "big.png", Image.new("L", (20, 40), 50))
    data = load_folder(root, cache_dir=cache_dir)
    assert data.train.images.shape == (4, 1, 28, 28)  # all gray -> L; most common side 28
    assert data.train.images[:, 0, 5, 5].tolist() == [100, 255, 50, 128]  # 32896/257 = 128

    root = tmp_path / "mixed"
    save(root / "a" / "rgba.png", Image.new("RGBA", (300, 200), (200, 10, 20, 0)))
    save(root / "a" / "gray.png", Image.new("L", (64, 64), 90))
    pal = Image.new("P", (16, 16), 1)
    pal.putpalette([0, 0, 0, 1, 2, 3] + [0] * 762)
    save(root / "b" / "pal.gif", pal)
    save(root / "b" / "photo.jpg", rgb(120, (500, 375)))
    data = load_folder(root, cache_dir=cache_dir)
    assert data.train.images.shape == (4, 3, 32, 32)  # one image > 64 px -> 32
    assert data.train.images[0, :, 3, 3].tolist() == [90, 90, 90]
    assert data.train.images[1, :, 3, 3].tolist() == [200, 10, 20]
    assert data.train.images[2, :, 3, 3].tolist() == [1, 2, 3]
    assert load_folder(root, cache_dir=cache_dir, image_size=8).train.images.shape[2:] == (8, 8)


def test_cache_second_run_and_invalidation(tmp_path, cache_dir):
    root = tree(tmp_path / "data", {"a": 3, "b": 3})
    paths = sorted(root.rglob("*.png"))
    first = decode_files(paths, image_size=None, cache_dir=cache_dir, data_dirs=[root])
    second = decode_files(paths, image_size=None, cache_dir=cache_dir, data_dirs=[root])
    assert not first.cached and second.cached
    assert np.array_equal(first.images, second.images)
    assert {p.suffix for p in cache_dir.iterdir()} == {".npy", ".json"}
    other = decode_files(paths, image_size=16, cache_dir=cache_dir, data_dirs=[root])
    assert not other.cached and other.images.shape[2:] == (16, 16)
    time.sleep(0.01)
    save(paths[0], rgb(99))  # edited file: new size/mtime -> new key
    edited = decode_files(paths, image_size=None, cache_dir=cache_dir, data_dirs=[root])
    assert not edited.cached and edited.images[0, 0, 0, 0] == 99


def test_cache_never_inside_the_data(tmp_path):
    root = tree(tmp_path / "data", {"a": 2, "b": 2})
    with pytest.raises(DataError, match="inside the data folder"):
        load_folder(root, cache_dir=root / "cache")


def test_parallel_decoding_matches_serial(tmp_path, cache_dir, monkeypatch):
    root = tree(tmp_path / "data", {"a": 20, "b": 20}, ext="jpg")
    serial = load_folder(root, cache_dir=cache_dir / "s", workers=1)
    monkeypatch.setattr(cache_mod, "PARALLEL_MIN", 10)
    parallel = load_folder(root, cache_dir=cache_dir / "p", workers=2)
    assert np.array_equal(serial.train.images.numpy(), parallel.train.images.numpy())


def bad_tree(root: Path) -> tuple[Path, Path]:
    tree(root, {"a": 3, "b": 3}, ext="jpg")
    good = (root / "a" / "000.jpg").read_bytes()
    truncated = root / "a" / "truncated.jpg"
    truncated.write_bytes(good[: len(good) // 2])
    garbage = root / "b" / "garbage.png"
    garbage.write_bytes(b"this is not a png")
    return truncated, garbage


def test_bad_images_fail_with_names(tmp_path, cache_dir):
    root = tmp_path / "data"
    truncated, garbage = bad_tree(root)
    before = snapshot(root)
    with pytest.raises(DataError, match="skip_bad_images") as e:
        load_folder(root, cache_dir=cache_dir)
    assert str(truncated) in str(e.value) and str(garbage) in str(e.value)
    assert snapshot(root) == before


def test_bad_images_skipped_on_request(tmp_path, cache_dir):
    root = tmp_path / "data"
    truncated, garbage = bad_tree(root)
    before = snapshot(root)
    for _ in range(2):  # decoded, then from the cache
        data = load_folder(root, cache_dir=cache_dir, skip_bad=True)
        assert len(data.train) == 6
        assert [s.split(":")[0] for s in data.skipped] == [str(truncated), str(garbage)]
    assert snapshot(root) == before


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda r: r.mkdir(), "no class folders"),
        (lambda r: tree(r, {"only": 3}), "single class"),
        (lambda r: (tree(r, {"a": 2}), (r / "b").mkdir()), "holds no image files"),
        (lambda r: None, "is not a folder"),
    ],
)
def test_bad_folders(tmp_path, cache_dir, make, match):
    root = tmp_path / "data"
    make(root)
    with pytest.raises(DataError, match=match):
        load_folder(root, cache_dir=cache_dir)


# --------------------------------------------------------------------------- CSV


def manifest(tmp_path: Path, text: str) -> Path:
    tree(tmp_path / "imgs", {"x": 4})
    path = tmp_path / "labels.csv"
    path.write_text(text)
    return path


def test_csv_with_split_and_numeric_labels(tmp_path, cache_dir):
    csv = manifest(tmp_path, "path,label,split\nimgs/x/000.png,10,train\n"
                             "imgs/x/001.png,2,train\nimgs/x/002.png,10,test\n"
                             f"{tmp_path}/imgs/x/003.png,2,\n")
    before = snapshot(tmp_path / "imgs")
    data = load_csv(csv, cache_dir=cache_dir)
    assert data.train.classes == ("2", "10")  # numeric order, not "10" < "2"
    assert data.train.labels.tolist() == [1, 0, 0] and data.test.labels.tolist() == [1]
    assert snapshot(tmp_path / "imgs") == before


@pytest.mark.parametrize(
    "text, match",
    [
        ("file,label\nimgs/x/000.png,a\n", "lacks the column.*path"),
        ("path,label\n", "no rows"),
        ("path,label\nimgs/x/000.png,a\nimgs/x/001.png,b\nimgs/x/000.png,b\n",
         "line 4: imgs/x/000.png is listed twice.*line 2"),
        ("path,label\nimgs/x/000.png,a\nimgs/x/nope.png,b\n", "line 3: .*nope.png does not exist"),
        ("path,label\nimgs/x/000.png,a\nimgs/x/001.png,a\n", "single class"),
        ("path,label,split\nimgs/x/000.png,a,val\n", "line 2: split 'val'"),
        ("path,label\nimgs/x/000.png,\n", "line 2: empty path or label"),
    ],
)
def test_csv_errors(tmp_path, cache_dir, text, match):
    with pytest.raises(DataError, match=match):
        load_csv(manifest(tmp_path, text), cache_dir=cache_dir)


def test_csv_label_not_in_class_list(tmp_path, cache_dir):
    csv = manifest(tmp_path, "path,label\nimgs/x/000.png,cat\nimgs/x/001.png,cow\n")
    with pytest.raises(DataError, match="line 3: label 'cow' is not in the class list"):
        load_csv(csv, classes=["cat", "dog"], cache_dir=cache_dir)
    data = load_csv(csv, classes=["dog", "cat", "cow"], cache_dir=cache_dir)
    assert data.train.labels.tolist() == [1, 2]
