"""Decode the user's image files once, in parallel, and cache the result on disk.

`decode_files(paths, image_size=..., cache_dir=...)` turns any list of image files (any size,
any mode: grayscale, RGBA, palette, 16-bit) into one uint8 array (K, C, S, S):

- mode: L when every image is grayscale, else RGB (alpha is dropped, palettes expanded,
  16-bit values scaled to 8 bits, EXIF orientation applied);
- size: `image_size` if given; otherwise the most common long side when every image is at
  most 64 px (e.g. 28 for MNIST-like data), else 32. Images are resized to S×S with PIL's
  antialiased bilinear filter (the aspect ratio is not kept: no crop drops part of an object).

Decoding runs in a process pool in chunks. The result is cached under `cache_dir`
(default ~/.cache/promix) as `<key>.npy` (uint8) + `<key>.json`, keyed on the files' paths,
sizes and mtimes and the resize settings; it is read back with `allow_pickle=False`. The
cache never lives inside the data folder and the user's files are only ever opened for reading.
"""

from __future__ import annotations

import collections
import concurrent.futures
import hashlib
import json
import multiprocessing
import os
import tempfile
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .base import DataError

CACHE_VERSION = 1  # bump when decoding changes, so old entries are not reused
SMALL_SIDE = 64  # auto size: keep the common size when every image is at most this
DEFAULT_SIDE = 32  # auto size otherwise
PARALLEL_MIN = 2000  # fewer files are decoded in this process (a pool costs ~0.2 s to start)
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


@dataclass(frozen=True)
class Decoded:
    """images: (K, C, S, S) uint8 of the readable files; good: (K,) their indices in the
    input list; bad: (path, reason) of the unreadable ones; cached: read from the cache."""

    images: np.ndarray
    good: np.ndarray
    bad: tuple[tuple[str, str], ...]
    cached: bool = False


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "promix"


def decode_files(
    paths: list[Path],
    *,
    image_size: int | None,
    cache_dir: str | os.PathLike | None,
    data_dirs: Iterable[Path] = (),
    workers: int | None = None,
) -> Decoded:
    """Decode `paths` (or read them from the cache); see the module docstring.

    data_dirs: the user's data folders (the ImageFolder root; for a CSV, the folders holding
    its images): the cache may not be inside any of them.
    """
    if image_size is not None and image_size < 1:
        raise DataError(f"image_size must be a positive number of pixels, got {image_size}")
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    _check_outside(cache, data_dirs)
    key = cache_key(paths, image_size)
    hit = _load(cache, key)
    if hit is not None:
        return hit
    decoded = _decode_all(paths, image_size, workers)
    _save(cache, key, decoded)
    return decoded


# --------------------------------------------------------------------------- cache


def _check_outside(cache: Path, data_dirs: Iterable[Path]) -> None:
    cache = cache.resolve()
    inside = {cache, *cache.parents}
    for folder in {Path(d).resolve() for d in data_dirs}:
        if folder in inside:
            raise DataError(
                f"the cache directory {cache} is inside the data folder {folder}: set "
                "--cache_dir to a folder outside your data (promix never writes into it)"
            )


def cache_key(paths: list[Path], image_size: int | None) -> str:
    """sha256 over the version, resize settings and every file's path, size and mtime."""
    h = hashlib.sha256(json.dumps([CACHE_VERSION, image_size, SMALL_SIDE, DEFAULT_SIDE]).encode())
    for p in paths:
        try:
            st = os.stat(p)
            h.update(f"{os.path.abspath(p)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{os.path.abspath(p)}\0missing\n".encode())
    return h.hexdigest()[:32]


def _load(cache: Path, key: str) -> Decoded | None:
    meta_path, array_path = cache / f"{key}.json", cache / f"{key}.npy"
    try:
        meta = json.loads(meta_path.read_text())
        images = np.load(array_path, allow_pickle=False)
    except (OSError, ValueError):
        return None  # absent or damaged: decode again
    good = np.asarray(meta["good"], dtype=np.int64)
    if images.dtype != np.uint8 or images.ndim != 4 or len(images) != len(good):
        return None
    bad = tuple((str(p), str(r)) for p, r in meta["bad"])
    return Decoded(images, good, bad, cached=True)


def _save(cache: Path, key: str, decoded: Decoded) -> None:
    """Write atomically (temp file + rename); a cache that cannot be written is only a warning."""
    meta = {"version": CACHE_VERSION, "good": decoded.good.tolist(), "bad": decoded.bad,
            "shape": list(decoded.images.shape)}
    try:
        cache.mkdir(parents=True, exist_ok=True)
        for suffix, write in ((".npy", lambda f: np.save(f, decoded.images)),
                              (".json", lambda f: f.write(json.dumps(meta).encode()))):
            fd, tmp = tempfile.mkstemp(dir=cache, suffix=suffix + ".part")
            with os.fdopen(fd, "wb") as f:
                write(f)
            os.replace(tmp, cache / f"{key}{suffix}")
    except OSError as e:
        warnings.warn(f"could not write the image cache in {cache} ({e})", stacklevel=3)


# --------------------------------------------------------------------------- decoding


def _decode_all(paths: list[Path], image_size: int | None, workers: int | None) -> Decoded:
    names = [str(p) for p in paths]
    n_workers = workers or min(os.cpu_count() or 1, 8)
    pool = None
    if n_workers > 1 and len(names) >= PARALLEL_MIN:
        pool = concurrent.futures.ProcessPoolExecutor(n_workers, mp_context=_context())
    try:
        chunks = _chunks(names, n_workers)
        probes = [r for part in _map(pool, _probe_chunk, chunks) for r in part]
        bad = {i: r for i, r in enumerate(probes) if isinstance(r, str)}
        ok = [r for r in probes if not isinstance(r, str)]
        if not ok:
            return Decoded(np.zeros((0, 1, 1, 1), np.uint8), np.zeros(0, np.int64),
                           tuple((names[i], r) for i, r in bad.items()))
        size, gray = image_size or auto_size(ok), all(m in GRAY_MODES for _, _, m in ok)
        todo = [i for i in range(len(names)) if i not in bad]
        parts = _map(pool, _decode_chunk, _chunks([names[i] for i in todo], n_workers),
                     size=size, gray=gray)
    finally:
        if pool is not None:
            pool.shutdown()
    arrays, good = [], []
    offset = 0
    for images, errors in parts:
        failed = dict(errors)
        for j in range(len(images)):
            index = todo[offset + j]
            if j in failed:
                bad[index] = failed[j]
            else:
                good.append(index)
        arrays.append(np.delete(images, list(failed), axis=0) if failed else images)
        offset += len(images)
    return Decoded(np.concatenate(arrays), np.asarray(good, dtype=np.int64),
                   tuple((names[i], bad[i]) for i in sorted(bad)))


def auto_size(probes: list[tuple[int, int, str]]) -> int:
    """The most common long side when every image is at most SMALL_SIDE, else DEFAULT_SIDE."""
    sides = [max(w, h) for w, h, _ in probes]
    if max(sides) > SMALL_SIDE:
        return DEFAULT_SIDE
    counts = collections.Counter(sides)
    return max(counts, key=lambda s: (counts[s], s))


def _context():
    # fork starts workers at once and is what torch's DataLoader uses on Linux; the workers
    # only run PIL and NumPy. Elsewhere (macOS, Windows) spawn is the safe choice.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _chunks(items: list[str], n_workers: int) -> list[list[str]]:
    size = max(256, min(4096, -(-len(items) // (4 * n_workers))))
    return [items[i : i + size] for i in range(0, len(items), size)]


def _map(pool, fn, chunks, **kwargs) -> list:
    if pool is None:
        return [fn(c, **kwargs) for c in chunks]
    futures = [pool.submit(fn, c, **kwargs) for c in chunks]
    return [f.result() for f in futures]


def _probe_chunk(names: list[str]) -> list[tuple[int, int, str] | str]:
    """(width, height, mode) from each file's header, or the reason it cannot be read."""
    out = []
    for name in names:
        try:
            with Image.open(name) as img:
                out.append((img.size[0], img.size[1], img.mode))
        except Exception as e:  # noqa: BLE001 - any failure makes the file unreadable
            out.append(f"{type(e).__name__}: {e}")
    return out


def _decode_chunk(names: list[str], *, size: int, gray: bool) -> tuple[np.ndarray, list]:
    """(len(names), C, size, size) uint8 and [(position, reason)] of files that failed."""
    c = 1 if gray else 3
    out = np.zeros((len(names), c, size, size), dtype=np.uint8)
    errors = []
    for j, name in enumerate(names):
        try:
            out[j] = to_array(name, size=size, gray=gray)
        except Exception as e:  # noqa: BLE001 - truncated, corrupt, unsupported...
            errors.append((j, f"{type(e).__name__}: {e}"))
    return out, errors


def to_array(name: str, *, size: int, gray: bool) -> np.ndarray:
    """One file as (C, size, size) uint8, C = 1 if gray else 3."""
    with Image.open(name) as img:
        img.draft("L" if gray else "RGB", (size, size))  # JPEG: decode at a reduced scale
        ImageOps.exif_transpose(img, in_place=True)
        img.load()
        img = _eight_bit(img)
        if gray:
            img = img.convert("L")
        elif img.mode == "P" and "transparency" in img.info:
            img = img.convert("RGBA").convert("RGB")
        else:
            img = img.convert("RGB")
        if img.size != (size, size):
            img = img.resize((size, size), Image.Resampling.BILINEAR)
        arr = np.asarray(img)
    return arr[None] if gray else arr.transpose(2, 0, 1)


def _eight_bit(img: Image.Image) -> Image.Image:
    """16-bit and float grayscale images scaled to 8-bit L (PIL's convert would clip)."""
    if img.mode not in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return img
    arr = np.asarray(img, dtype=np.float64)
    if img.mode == "F" and arr.max(initial=0) <= 1:
        arr = arr * 255
    elif img.mode != "F" and arr.max(initial=0) > 255:
        arr = arr / 257  # 0..65535 -> 0..255
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")
