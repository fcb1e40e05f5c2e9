"""Clothing1M's own layout, on a tiny fake tree with the official file names and formats."""

import pytest
from PIL import Image

from promix.config import ConfigError, load_preset
from promix.data.base import DataError
from promix.data.clothing1m import CLASSES, list_clothing1m
from promix.data.load import build_dataset


def fake_clothing1m(root, annotations_dir=""):
    """9 noisy training images (3 of class 0, 3 of class 5, 3 of class 13), 2 clean test
    images; one image also has a clean label that differs from its noisy one."""
    ann = root / annotations_dir
    ann.mkdir(parents=True, exist_ok=True)
    train = [(f"images/{k % 10}/{k:02d}/{1000 + k},{k}.jpg", label)
             for k, label in enumerate([0, 5, 13, 0, 5, 13, 0, 5, 13])]
    test = [("images/3/77/9001,1.jpg", 2), ("images/8/01/9002,2.jpg", 11)]
    for path, label in train + test:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 30), (label * 18, 90, 200 - label * 10)).save(root / path)
    (ann / "noisy_label_kv.txt").write_text(
        "".join(f"{p} {y}\n" for p, y in train) + "images/0/99/unused.jpg 4\n")
    (ann / "clean_label_kv.txt").write_text(
        "".join(f"{p} {y}\n" for p, y in test) + f"{train[0][0]} 7\n")
    (ann / "noisy_train_key_list.txt").write_text("".join(f"{p}\n" for p, _ in train))
    (ann / "clean_test_key_list.txt").write_text("".join(f"{p}\n" for p, _ in test))
    (ann / "category_names_eng.txt").write_text("\n".join(CLASSES) + "\n")
    return root, train, test


@pytest.mark.parametrize("annotations_dir", ["", "annotations"])
def test_lists_noisy_training_and_clean_test_labels(tmp_path, annotations_dir):
    root, train, test = fake_clothing1m(tmp_path / "c1m", annotations_dir)
    listing = list_clothing1m(root)
    assert listing.classes == CLASSES and len(CLASSES) == 14
    assert listing.splits == ["train"] * 9 + ["test"] * 2
    assert listing.labels == [y for _, y in train] + [2, 11]  # noisy for train, clean for test
    assert listing.paths[0] == root / train[0][0]


def test_the_preset_builds_the_dataset(tmp_path):
    root, train, _ = fake_clothing1m(tmp_path / "c1m")
    cfg = load_preset("clothing1m")
    assert cfg.model.name == "timm:resnet50" and cfg.paper_accuracy == 74.94
    cfg.data.root, cfg.data.cache_dir = str(root), str(tmp_path / "cache")
    cfg.data.per_class, cfg.data.image_size = 2, 16
    data = build_dataset(cfg.data)
    assert data.train.labels.tolist() == [0, 5, 13, 0, 5, 13]  # the first 2 of each class
    assert data.test.labels.tolist() == [2, 11]
    assert data.train.images.shape == (6, 3, 16, 16)


@pytest.mark.parametrize("damage, match", [
    ("missing", "clean_test_key_list.txt missing"),
    ("unlabelled", "has no label in noisy_label_kv.txt"),
    ("bad_line", "expected '<image path> <label>'"),
    ("bad_label", "label 14 is not in 0..13"),
])
def test_broken_layouts_are_one_line_errors(tmp_path, damage, match):
    root, train, _ = fake_clothing1m(tmp_path / "c1m")
    if damage == "missing":
        (root / "clean_test_key_list.txt").unlink()
    elif damage == "unlabelled":
        with open(root / "noisy_train_key_list.txt", "a") as f:
            f.write("images/1/11/nolabel.jpg\n")
    elif damage == "bad_line":
        with open(root / "noisy_label_kv.txt", "a") as f:
            f.write("images/1/11/x.jpg\n")
    else:
        with open(root / "noisy_label_kv.txt", "a") as f:
            f.write("images/1/11/x.jpg 14\n")
    with pytest.raises((DataError, ConfigError), match=match) as err:
        list_clothing1m(root)
    assert "\n" not in str(err.value)
