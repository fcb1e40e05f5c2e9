"""CIFAR-N label files: safe loading (weights_only + NumPy allow-list), checks, noise rate."""

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from promix.data.base import DataError
from promix.data.cifarn import cifarn_labels, read_label_file

N = 200


def clean(num_classes: int = 10) -> np.ndarray:
    return (np.arange(N) % num_classes).astype(np.int64)


def flipped(labels: np.ndarray, every: int, num_classes: int) -> np.ndarray:
    out = labels.copy()
    out[::every] = (out[::every] + 1) % num_classes
    return out


def cifar10_file(path: Path) -> Path:
    c = clean()
    torch.save({"clean_label": c, "aggre_label": flipped(c, 10, 10),
                "worse_label": flipped(c, 2, 10), "random_label1": flipped(c, 5, 10),
                "random_label2": flipped(c, 5, 10), "random_label3": flipped(c, 4, 10)}, path)
    return path


@pytest.mark.parametrize(
    "noise, rate", [("clean", 0.0), ("aggre", 0.1), ("worst", 0.5), ("rand1", 0.2),
                    ("rand2", 0.2), ("rand3", 0.25)],
)
def test_cifar10n_names_and_rates(tmp_path, noise, rate):
    path = cifar10_file(tmp_path / "CIFAR-10_human.pt")
    noisy, info = cifarn_labels(path, noise, torch.from_numpy(clean()), 10)
    assert noisy.dtype == torch.int64 and noisy.shape == (N,)
    assert info["realized_rate"] == pytest.approx(rate)
    assert info["kind"] == noise and len(info["transition_matrix"]) == 10


def test_cifar100n_lists_of_ints(tmp_path):
    path = tmp_path / "CIFAR-100_human.pt"
    c = clean(100)
    torch.save({"clean_label": c.tolist(), "noisy_label": flipped(c, 4, 100).tolist()}, path)
    noisy, info = cifarn_labels(path, "noisy100", torch.from_numpy(c), 100)
    assert info["realized_rate"] == pytest.approx(0.25)
    with pytest.raises(DataError, match="CIFAR-10_human.pt"):
        cifarn_labels(path, "aggre", torch.from_numpy(c), 100)


def test_numpy_1_module_names_are_accepted(tmp_path):
    # Files written under NumPy 1 name numpy.core.multiarray._reconstruct.
    path = cifar10_file(tmp_path / "new.pt")
    old = tmp_path / "old.pt"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(old, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("data.pkl"):
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            dst.writestr(item, data)
    assert read_label_file(old)["clean_label"].tolist() == clean().tolist()


def test_clean_label_must_match_the_dataset(tmp_path):
    path = cifar10_file(tmp_path / "h.pt")
    shuffled = torch.from_numpy(clean()).roll(1)
    with pytest.raises(DataError, match="standard CIFAR order"):
        cifarn_labels(path, "aggre", shuffled, 10)
    with pytest.raises(DataError, match="200 labels"):
        cifarn_labels(path, "aggre", torch.zeros(50, dtype=torch.int64), 10)


class Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_code_in_the_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "CIFAR-10_human.pt"
    torch.save({"clean_label": clean(), "aggre_label": Evil(marker)}, path)
    with pytest.raises(DataError, match="refused"):
        cifarn_labels(path, "aggre", torch.from_numpy(clean()), 10)
    assert not marker.exists()


@pytest.mark.parametrize(
    "content, match",
    [
        (torch.zeros(3), "holds a Tensor"),
        ("labels", "holds a str"),
        ({"clean_label": "abc", "aggre_label": clean()}, "not a 1-d array of integer labels"),
        ({"clean_label": np.zeros((2, 2), np.int64)}, "not a 1-d array"),
        ({"clean_label": np.zeros(N, np.float32)}, "refused.*Float32DType"),
    ],
)
def test_other_content_is_refused(tmp_path, content, match):
    path = tmp_path / "x.pt"
    torch.save(content, path)
    with pytest.raises(DataError, match=match):
        cifarn_labels(path, "aggre", torch.from_numpy(clean()), 10)


def test_missing_file_and_unknown_name(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_label_file(tmp_path / "nope.pt")
    with pytest.raises(DataError, match="unknown CIFAR-N noise"):
        cifarn_labels(tmp_path / "nope.pt", "worse", torch.zeros(3, dtype=torch.int64), 10)
