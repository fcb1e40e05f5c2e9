"""CIFAR-10 and CIFAR-100 in the standard python layout, from a folder or straight from the .tar.gz.

Layouts read (root may be any of them, or a folder holding one):
  cifar-10-batches-py/   data_batch_1..5, test_batch, batches.meta
  cifar-100-python/      train, test, meta
  cifar-10-python.tar.gz / cifar-100-python.tar.gz   (members streamed, nothing extracted)

The batches are pickles. They are read with a restricted unpickler that resolves only the
few globals a NumPy array needs, so a tampered archive cannot run code. Local files are
not checksummed (rebuilt copies have other md5 sums); downloads are.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .base import DataError, ImageSet

try:  # NumPy 2 moved the array internals to numpy._core
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - NumPy 1.x
    from numpy.core.multiarray import _reconstruct


@dataclass(frozen=True)
class CifarSpec:
    folder: str  # the folder inside the archive
    archive: str
    md5: str  # of the official archive
    train: tuple[str, ...]
    test: str
    meta: str
    label_key: str
    names_key: str


SPECS = {
    "cifar10": CifarSpec(
        "cifar-10-batches-py", "cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a",
        tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta",
        "labels", "label_names",
    ),
    "cifar100": CifarSpec(
        "cifar-100-python", "cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85",
        ("train",), "test", "meta", "fine_labels", "fine_label_names",
    ),
}
URL = "https://www.cs.toronto.edu/~kriz/"
DOWNLOAD_TIMEOUT = 10.0  # seconds without an answer before giving up (offline: fail fast)


@dataclass(frozen=True)
class Cifar:
    """train, test: (N, 3, 32, 32) uint8 image sets in the standard order.

    superclass: CIFAR-100 only, the coarse class (0..19) of every fine class, length 100.
    """

    train: ImageSet
    test: ImageSet
    superclass: tuple[int, ...] | None = None
    superclass_names: tuple[str, ...] | None = None


# --------------------------------------------------------------------------- safe unpickling

_SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    # Python 3 protocol-2 pickles write bytes as _codecs.encode(str, 'latin1').
    ("_codecs", "encode"): lambda text, encoding="utf-8": str(text).encode(encoding),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return _SAFE_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refused global {module}.{name}: a CIFAR batch holds only arrays, lists and "
                "strings"
            ) from None


def safe_unpickle(data: bytes, source: str) -> dict:
    """A CIFAR batch dict with str keys; anything but plain data and arrays is refused."""
    try:
        obj = _SafeUnpickler(io.BytesIO(data), encoding="latin1").load()
    except Exception as e:  # noqa: BLE001 - any failure means a bad file
        raise DataError(f"{source}: not a readable CIFAR batch ({e}); re-download it") from e
    if not isinstance(obj, dict):
        raise DataError(f"{source}: expected a dict, found {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


# --------------------------------------------------------------------------- reading


def load_cifar(name: str, root: str | os.PathLike, *, download: bool = False) -> Cifar:
    """Load 'cifar10' or 'cifar100' from root (folder or .tar.gz); fetch it if download."""
    spec = SPECS[name]
    source = locate(spec, Path(root).expanduser(), download=download)
    files = _read_members(source, spec)
    return _assemble(spec, files, str(source))


def locate(spec: CifarSpec, root: Path, *, download: bool) -> Path:
    """The folder of batches or the archive to read, or a DataError naming what to place where."""
    candidates = [root / spec.folder, root / spec.archive, root]
    for path in candidates:
        if path.is_dir() and (path / spec.meta).is_file():
            return path
        if path.is_file() and path.name.endswith((".tar.gz", ".tgz", ".tar")):
            return path
    if download:
        if root.suffix or root.is_file():
            raise DataError(f"--download needs root to be a folder, got the file {root}")
        return download_archive(spec, root)
    raise DataError(
        f"no {spec.folder}/ or {spec.archive} found at {root}: place the official "
        f"{spec.archive} in {root} (from {URL}{spec.archive}) or pass --download=true"
    )


def _read_members(source: Path, spec: CifarSpec) -> dict[str, bytes]:
    """Raw bytes of the meta, train and test files, from a folder or by streaming the tar."""
    wanted = {spec.meta, spec.test, *spec.train}
    if source.is_dir():
        missing = [f for f in sorted(wanted) if not (source / f).is_file()]
        if missing:
            raise DataError(f"{source} lacks {', '.join(missing)}: the folder is incomplete")
        return {f: (source / f).read_bytes() for f in wanted}
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(source, "r:*") as tar:
            for member in tar:  # stream: one pass, no extraction
                base = member.name.rsplit("/", 1)[-1]
                if member.isfile() and base in wanted and member.name.startswith(spec.folder):
                    files[base] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"{source} is not a readable tar archive ({e}); re-download it") from e
    missing = sorted(wanted - files.keys())
    if missing:
        raise DataError(
            f"{source} lacks {spec.folder}/{', '.join(missing)}: is it the {spec.archive}?"
        )
    return files


def _batch(data: bytes, spec: CifarSpec, source: str) -> tuple[np.ndarray, np.ndarray, list]:
    """(images (n, 3, 32, 32) uint8, labels (n,) int64, coarse labels or [])."""
    d = safe_unpickle(data, source)
    try:
        images = np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(d[spec.label_key], dtype=np.int64)
    except (KeyError, ValueError) as e:
        raise DataError(f"{source}: malformed CIFAR batch ({e})") from e
    if len(images) != len(labels):
        raise DataError(f"{source}: {len(images)} images but {len(labels)} labels")
    return images, labels, list(d.get("coarse_labels", []))


def _assemble(spec: CifarSpec, files: dict[str, bytes], source: str) -> Cifar:
    meta = safe_unpickle(files[spec.meta], f"{source}:{spec.meta}")
    classes = tuple(str(c) for c in meta[spec.names_key])
    parts = [_batch(files[f], spec, f"{source}:{f}") for f in spec.train]
    test_x, test_y, _ = _batch(files[spec.test], spec, f"{source}:{spec.test}")
    train_y = np.concatenate([p[1] for p in parts])
    train = ImageSet(
        torch.from_numpy(np.concatenate([p[0] for p in parts])), torch.from_numpy(train_y),
        classes,
    )
    test = ImageSet(torch.from_numpy(test_x), torch.from_numpy(test_y), classes)
    coarse = [c for p in parts for c in p[2]]
    if not coarse:
        return Cifar(train, test)
    superclass = [0] * len(classes)
    for fine, group in zip(train_y.tolist(), coarse, strict=True):
        superclass[fine] = int(group)
    names = tuple(str(c) for c in meta.get("coarse_label_names", ()))
    return Cifar(train, test, tuple(superclass), names or None)


# --------------------------------------------------------------------------- download


def download_archive(
    spec: CifarSpec,
    root: Path,
    *,
    url: str | None = None,
    md5: str | None = None,
    timeout: float = DOWNLOAD_TIMEOUT,
) -> Path:
    """Fetch the archive into root, check its md5, and rename it into place atomically."""
    url = url or URL + spec.archive
    md5 = md5 or spec.md5
    target = root / spec.archive
    root.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=spec.archive + ".", suffix=".part", dir=root)
    try:
        digest = hashlib.md5()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            while chunk := resp.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != md5:
            raise DataError(
                f"{url}: md5 {digest.hexdigest()} differs from the expected {md5}; the download "
                f"is corrupt or not the official file: retry, or place {spec.archive} in {root}"
            )
        os.replace(tmp, target)
    except (urllib.error.URLError, OSError) as e:  # timeouts are OSErrors
        raise DataError(
            f"could not download {url} ({e}); download it by hand and place it at {target}"
        ) from e
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target
