"""CIFAR-10/100 readers: tiny archives in the exact python format, download, safe unpickling."""

import hashlib
import os
import pickle
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from promix.data.base import DataError
from promix.data.cifar import SPECS, download_archive, load_cifar, safe_unpickle

SHARED = Path(__file__).parents[2] / "shared" / "data" / "cifar10"
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck"]


def _dump(path: Path, obj: dict) -> None:
    # Python-2-style byte-string keys, pickle protocol 2, as in the official archives.
    path.write_bytes(pickle.dumps({k.encode(): v for k, v in obj.items()}, protocol=2))


def _batch(rng, n, num_classes, label_key, coarse=False):
    labels = [int(v) for v in rng.integers(0, num_classes, n)]
    batch = {"batch_label": "tiny", "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             label_key: labels, "filenames": [f"img_{i}.png" for i in range(n)]}
    if coarse:
        batch["coarse_labels"] = [c % 20 for c in labels]
    return batch


def write_cifar(root: Path, name: str, n: int = 6, seed: int = 0) -> Path:
    """A tiny CIFAR folder (n images per batch file) under root; returns the folder."""
    spec, rng = SPECS[name], np.random.default_rng(seed)
    folder = root / spec.folder
    folder.mkdir(parents=True)
    if name == "cifar10":
        _dump(folder / "batches.meta", {"label_names": CIFAR10_NAMES, "num_vis": 3072})
        for f in (*spec.train, spec.test):
            _dump(folder / f, _batch(rng, n, 10, "labels"))
    else:
        _dump(folder / "meta", {"fine_label_names": [f"fine{i}" for i in range(100)],
                                "coarse_label_names": [f"coarse{i}" for i in range(20)]})
        for f in (*spec.train, spec.test):
            _dump(folder / f, _batch(rng, 4 * n, 100, "fine_labels", coarse=True))
    return folder


def tar_up(folder: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return archive


def raw_batch(folder: Path, f: str) -> dict:
    raw = pickle.loads((folder / f).read_bytes(), encoding="latin1")
    return {k.decode(): v for k, v in raw.items()}


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
@pytest.mark.parametrize("form", ["folder", "parent", "archive", "archive_parent"])
def test_reads_every_layout(tmp_path, name, form):
    folder = write_cifar(tmp_path / "src", name)
    spec = SPECS[name]
    if form.startswith("archive"):
        (tmp_path / "dst").mkdir()
        tar_up(folder, tmp_path / "dst" / spec.archive)
    root = {"folder": folder, "parent": folder.parent, "archive": tmp_path / "dst" / spec.archive,
            "archive_parent": tmp_path / "dst"}[form]
    data = load_cifar(name, root)
    per_batch = 6 if name == "cifar10" else 24
    assert data.train.images.shape == (len(spec.train) * per_batch, 3, 32, 32)
    assert data.test.images.shape == (per_batch, 3, 32, 32)
    assert data.train.images.dtype == torch.uint8 and data.train.labels.dtype == torch.int64
    first = raw_batch(folder, spec.train[0])
    assert data.train.labels[:per_batch].tolist() == first[spec.label_key]
    # row layout: R plane, then G, then B, each 32x32 row-major
    assert torch.equal(data.train.images[1, 1].flatten(),
                       torch.from_numpy(first["data"][1, 1024:2048]))
    assert data.train.num_classes == (10 if name == "cifar10" else 100)
    if name == "cifar10":
        assert data.train.classes == tuple(CIFAR10_NAMES) and data.superclass is None
    else:
        seen = set(data.train.labels.tolist())
        assert all(data.superclass[c] == c % 20 for c in seen)
        assert data.superclass_names[0] == "coarse0"


def test_missing_data_names_the_expected_path(tmp_path):
    with pytest.raises(DataError, match="cifar-10-python.tar.gz") as e:
        load_cifar("cifar10", tmp_path)
    assert str(tmp_path) in str(e.value) and "--download" in str(e.value)


def test_incomplete_folder(tmp_path):
    folder = write_cifar(tmp_path, "cifar10")
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3"):
        load_cifar("cifar10", folder)


def test_malicious_batch_is_refused_and_runs_nothing(tmp_path):
    folder = write_cifar(tmp_path / "src", "cifar10")
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    (folder / "data_batch_2").write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    tar_up(folder, tmp_path / "evil.tar.gz")
    for root in (folder, tmp_path / "evil.tar.gz"):
        with pytest.raises(DataError, match="refused global"):
            load_cifar("cifar10", root)
    assert not marker.exists()


def test_safe_unpickle_reads_numpy_1_names():
    # Archives written under NumPy 1 name numpy.core.multiarray._reconstruct.
    data = pickle.dumps({b"data": np.arange(6, dtype=np.uint8)}, protocol=2)
    data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert safe_unpickle(data, "x")["data"].tolist() == list(range(6))


# --------------------------------------------------------------------------- download


def _archive(tmp_path: Path) -> tuple[Path, str]:
    archive = tar_up(write_cifar(tmp_path / "src", "cifar10"), tmp_path / "upstream.tar.gz")
    return archive, hashlib.md5(archive.read_bytes()).hexdigest()


def test_download_verifies_and_renames(tmp_path):
    archive, md5 = _archive(tmp_path)
    root = tmp_path / "data"
    path = download_archive(SPECS["cifar10"], root, url=archive.as_uri(), md5=md5)
    assert path == root / "cifar-10-python.tar.gz" and path.read_bytes() == archive.read_bytes()
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-python.tar.gz"]
    assert len(load_cifar("cifar10", root).train) == 30


def test_download_checksum_mismatch_leaves_nothing(tmp_path):
    archive, _ = _archive(tmp_path)
    root = tmp_path / "data"
    with pytest.raises(DataError, match="md5"):
        download_archive(SPECS["cifar10"], root, url=archive.as_uri(), md5="0" * 32)
    assert list(root.iterdir()) == []


def test_download_offline_fails_fast_with_instructions(tmp_path):
    start = time.monotonic()
    with pytest.raises(DataError, match="place it at") as e:
        download_archive(SPECS["cifar10"], tmp_path, url="http://127.0.0.1:9/x.tar.gz",
                         timeout=2)
    assert time.monotonic() - start < 5
    assert str(tmp_path / "cifar-10-python.tar.gz") in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_local_files_need_no_official_md5(tmp_path):
    # The rebuilt shared copy has other md5 sums: reading never checks them.
    folder = write_cifar(tmp_path / "src", "cifar10")
    tar_up(folder, tmp_path / "cifar-10-python.tar.gz")
    assert len(load_cifar("cifar10", tmp_path).test) == 6


# --------------------------------------------------------------------------- real data


@pytest.mark.shared_data
def test_real_cifar10_archive():
    archive = SHARED / "cifar-10-python.tar.gz"
    if not archive.is_file():
        pytest.skip(f"shared CIFAR-10 not found at {archive}")
    before = archive.stat().st_mtime_ns
    data = load_cifar("cifar10", SHARED)
    assert data.train.images.shape == (50_000, 3, 32, 32)
    assert data.test.images.shape == (10_000, 3, 32, 32)
    assert data.train.classes == tuple(CIFAR10_NAMES)
    assert torch.bincount(data.train.labels).tolist() == [5000] * 10
    assert torch.bincount(data.test.labels).tolist() == [1000] * 10
    # README: labels equal the standard training order (frog, truck, truck, deer, car, ...)
    assert data.train.labels[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    # README: train per-channel mean 125.27 / 122.93 / 113.86
    mean = data.train.images.float().mean((0, 2, 3))
    assert mean.tolist() == pytest.approx([125.27, 122.93, 113.86], abs=0.01)
    assert archive.stat().st_mtime_ns == before
