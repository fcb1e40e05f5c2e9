"""build_dataset: dispatch, held-out split, per_class, noise, CIFAR-N, normalization."""

import numpy as np
import pytest
import torch
from PIL import Image
from test_data_cifar import tar_up, write_cifar

from promix.config import DataConfig
from promix.data.base import DataError
from promix.data.load import CIFAR_STATS, build_dataset, dataset_from_arrays


@pytest.fixture
def cifar10(tmp_path):
    return tar_up(write_cifar(tmp_path / "src", "cifar10", n=40), tmp_path / "c10.tar.gz")


def test_mnist5k_still_works():
    data = build_dataset(DataConfig(dataset="mnist5k", per_class=20, noise="sym", noise_rate=0.5))
    assert data.train.images.shape == (200, 1, 28, 28) and data.mean == (0.1307,)
    assert torch.bincount(data.true_labels).tolist() == [20] * 10


def test_digits_is_the_default():
    data = build_dataset(DataConfig(noise="sym", noise_rate=0.5))
    assert data.name == "digits" and data.train.images.shape[1:] == (1, 8, 8)
    assert len(data.train) + len(data.test) == 1797
    assert data.mean is None  # computed from the training images
    assert 0.4 < data.noise["realized_rate"] < 0.5


def test_cifar10_noise_and_normalization(cifar10):
    cfg = DataConfig(dataset="cifar10", root=str(cifar10), noise="asym", noise_rate=0.4)
    data = build_dataset(cfg)
    assert len(data.train) == 200 and len(data.test) == 40
    assert (data.mean, data.std) == CIFAR_STATS["cifar10"]
    assert data.noise["kind"] == "asym" and data.noise["per_class_rate"][0] == 0
    changed = data.train.labels != data.true_labels
    assert set(data.train.labels[changed].tolist()) <= {0, 1, 3, 5, 7}


def test_cifar100_asym_uses_superclasses(tmp_path):
    folder = write_cifar(tmp_path, "cifar100", n=100)
    data = build_dataset(DataConfig(dataset="cifar100", root=str(folder), noise="asym",
                                    noise_rate=1.0))
    # the tiny archive puts fine class c in superclass c % 20: the next member is c + 20
    assert torch.equal(data.train.labels, (data.true_labels + 20) % 100)
    assert (data.mean, data.std) == CIFAR_STATS["cifar100"]


def test_cifarn_with_per_class(tmp_path, cifar10):
    train = build_dataset(DataConfig(dataset="cifar10", root=str(cifar10), noise="none"))
    clean = train.train.labels.numpy()  # noise none: the labels as given (no true_labels)
    worse = clean.copy()
    worse[::2] = (worse[::2] + 1) % 10
    path = tmp_path / "CIFAR-10_human.pt"
    torch.save({"clean_label": clean, "worse_label": worse}, path)
    cfg = DataConfig(dataset="cifar10", root=str(cifar10), noise="worst", noise_file=str(path))
    data = build_dataset(cfg)
    assert torch.equal(data.train.labels, torch.from_numpy(worse))
    assert data.noise["realized_rate"] == pytest.approx(0.5)
    cfg.per_class = 3
    small = build_dataset(cfg)
    assert torch.bincount(small.true_labels).tolist() == [3] * 10
    keep = [i for i in range(len(clean)) if (clean[: i + 1] == clean[i]).sum() <= 3]
    assert small.train.labels.tolist() == worse[keep].tolist()
    assert small.noise["per_class"] == 3


def folder_data(root, counts, size=12):
    for k, (name, n) in enumerate(counts.items()):
        (root / name).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (size, size), (40 * k, i, 100)).save(root / name / f"{i}.png")
    return root


def test_imbalanced_binary_folder_with_held_out_test(tmp_path):
    root = folder_data(tmp_path / "data", {"rare": 5, "common": 45})
    cfg = DataConfig(dataset="folder", root=str(root), noise="sym", noise_rate=0.2,
                     cache_dir=str(tmp_path / "cache"))
    data = build_dataset(cfg)
    assert data.classes == ("common", "rare")
    assert torch.bincount(data.true_labels).tolist() == [36, 4]
    assert torch.bincount(data.test.labels).tolist() == [9, 1]
    assert data.mean is None and len(data.normalization()[0]) == 3
    with pytest.raises(DataError, match="class_map"):
        build_dataset(DataConfig(dataset="folder", root=str(root), noise="asym",
                                 cache_dir=str(tmp_path / "cache")))


def test_csv_dataset_and_skipped_files(tmp_path):
    root = folder_data(tmp_path / "imgs", {"a": 6, "b": 6})
    (root / "b" / "bad.png").write_bytes(b"oops")
    rows = [f"{p.relative_to(tmp_path)},{p.parent.name}" for p in sorted(root.rglob("*.png"))]
    csv = tmp_path / "m.csv"
    csv.write_text("path,label\n" + "\n".join(rows) + "\n")
    cfg = DataConfig(dataset="csv", root=str(csv), noise="none", skip_bad_images=True,
                     cache_dir=str(tmp_path / "cache"), image_size=8)
    data = build_dataset(cfg)
    assert len(data.train) + len(data.test) == 12 and data.train.images.shape[2:] == (8, 8)
    assert len(data.skipped) == 1 and "bad.png" in data.skipped[0]


def test_arrays_dataset():
    x = np.random.default_rng(0).integers(0, 256, (30, 8, 8, 3), dtype=np.uint8)
    y = ["cat"] * 20 + ["dog"] * 10
    data = dataset_from_arrays(x, y, cfg=DataConfig(dataset="arrays", noise="sym_exact",
                                                    noise_rate=0.5, test_fraction=0.2))
    assert data.classes == ("cat", "dog") and len(data.train) == 24 and len(data.test) == 6
    assert data.noise["realized_rate"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    "cfg, match",
    [
        (dict(dataset="mnist10k"), "unknown dataset 'mnist10k'"),
        (dict(dataset="cifar10"), "needs --root"),
        (dict(dataset="cifar10", root="/nonexistent"), "cifar-10-python.tar.gz"),
        (dict(noise="sym", noise_file="x.pt"), "noise_file is set but noise=sym"),
        (dict(noise="aggre"), "--noise_file"),
        (dict(noise="aggre", noise_file="x.pt"), "cifar10 and cifar100 only"),
    ],
)
def test_config_errors(cfg, match):
    with pytest.raises(DataError, match=match):
        build_dataset(DataConfig(**cfg))
