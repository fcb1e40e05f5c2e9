"""Decode the user's image files once, in parallel, and cache the result on disk.

`decode_files(paths, image_size=..., cache_dir=...)` turns any list of image files (any size,
any mode: grayscale, RGBA, palette, 16-bit) into one uint8 array (K, C, S, S):

- mode: L when every image is grayscale, else RGB (alpha is dropped, palettes expanded,
  16-bit values scaled to 8 bits, EXIF orientation applied);
- size: `image_size` if given (models/plan.py passes a timm model's size); otherwise the most
  common long side when every image is at most 64 px (e.g. 28 for MNIST-like data), else 32,
  and `Decoded.reason` says which. Images are resized to S×S with PIL's antialiased bilinear
  or bicubic filter (the aspect ratio is not kept: no crop drops part of an object).

Decoding runs in a process pool over every core, in chunks, with a progress bar (images/s,
ETA). Each worker writes its rows straight into the cache file, `<key>.npy` (uint8) +
`<key>.json` under `cache_dir` (default ~/.cache/promix), keyed on the files' paths, sizes
and mtimes and the resize settings; so no process ever holds the whole array. It is read back
memory-mapped (`mmap_mode="r"`, `allow_pickle=False`; data/mapped.py gathers batches from
it). The cache never lives inside the data folder and the user's files are only ever opened
for reading.
"""

from __future__ import annotations

import atexit
import collections
import concurrent.futures
import hashlib
import json
import multiprocessing
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .base import DataError
from .decode import FILTERS, GRAY_MODES, decode_chunk, probe_chunk, to_array  # noqa: F401

CACHE_VERSION = 2  # bump when decoding changes, so old entries are not reused
SMALL_SIDE = 64  # auto size: keep the common size when every image is at most this
DEFAULT_SIDE = 32  # auto size otherwise
PARALLEL_MIN = 2000  # fewer files are decoded in this process (a pool costs ~0.2 s to start)
CHUNK = 256  # files per task: small enough for a smooth progress bar and little memory
PROGRESS_MIN = 500  # no progress bar for fewer files


@dataclass(frozen=True)
class Decoded:
    """images: (M, C, S, S) uint8, memory-mapped from the cache file (read-only); rows: (K,)
    the row in `images` of each readable file; good: (K,) their indices in the input list;
    bad: (path, reason) of the unreadable ones; reason: why S (for the console); cached:
    read from the cache. A file that fails after its header was read leaves a zero row that
    no entry of `rows` points to."""

    images: np.ndarray
    good: np.ndarray
    bad: tuple[tuple[str, str], ...]
    cached: bool = False
    rows: np.ndarray | None = None  # None: row k is image k
    reason: str = ""


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
    interpolation: str = "bilinear",
    progress: bool = True,
) -> Decoded:
    """Decode `paths` (or read them from the cache); see the module docstring.

    data_dirs: the user's data folders (the ImageFolder root; for a CSV, the folders holding
    its images): the cache may not be inside any of them. interpolation: bilinear | bicubic
    (PIL's antialiased filters). progress: tqdm bars (images/s, ETA) while decoding.
    """
    if image_size is not None and image_size < 1:
        raise DataError(f"image_size must be a positive number of pixels, got {image_size}")
    if interpolation not in FILTERS:
        raise DataError(f"interpolation must be one of {', '.join(FILTERS)}, got "
                        f"{interpolation!r}")
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    _check_outside(cache, data_dirs)
    key = cache_key(paths, image_size, interpolation)
    hit = _load(cache, key)
    if hit is not None:
        return hit
    try:
        cache.mkdir(parents=True, exist_ok=True)
        fd, part = tempfile.mkstemp(dir=cache, suffix=".npy.part")
        os.close(fd)
    except OSError as e:
        warnings.warn(f"could not write the image cache in {cache} ({e}); decoding into a "
                      "temporary folder, deleted at exit", stacklevel=2)
        cache = Path(tempfile.mkdtemp(prefix="promix-cache-"))
        atexit.register(shutil.rmtree, cache, ignore_errors=True)
        part = str(cache / f"{key}.npy.part")
    try:
        decoded = _decode_all(paths, image_size, workers, interpolation, part, progress)
    except BaseException:
        Path(part).unlink(missing_ok=True)
        raise
    return _save(cache, key, decoded, part)


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


def cache_key(paths: list[Path], image_size: int | None, interpolation: str = "bilinear") -> str:
    """sha256 over the version, resize settings and every file's path, size and mtime."""
    h = hashlib.sha256(json.dumps([CACHE_VERSION, image_size, SMALL_SIDE, DEFAULT_SIDE,
                                   interpolation]).encode())
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
        images = np.load(array_path, mmap_mode="r", allow_pickle=False)
        good = np.asarray(meta["good"], dtype=np.int64)
        rows = np.asarray(meta["rows"], dtype=np.int64)
        bad = tuple((str(p), str(r)) for p, r in meta["bad"])
        reason = str(meta["reason"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent, damaged or from another version: decode again
    if images.dtype != np.uint8 or images.ndim != 4 or len(rows) != len(good) or (
            len(rows) and rows.max() >= len(images)):
        return None
    return Decoded(images, good, bad, cached=True, rows=rows, reason=reason)


def _save(cache: Path, key: str, decoded: Decoded, part: str) -> Decoded:
    """Rename the decoded array into place and write its metadata (atomically), then map it."""
    meta = {"version": CACHE_VERSION, "good": decoded.good.tolist(), "bad": decoded.bad,
            "rows": decoded.rows.tolist(), "reason": decoded.reason,
            "shape": list(decoded.images.shape)}
    array_path = cache / f"{key}.npy"
    os.replace(part, array_path)
    try:
        fd, tmp = tempfile.mkstemp(dir=cache, suffix=".json.part")
        with os.fdopen(fd, "wb") as f:
            f.write(json.dumps(meta).encode())
        os.replace(tmp, cache / f"{key}.json")
    except OSError as e:
        warnings.warn(f"could not write the image cache in {cache} ({e})", stacklevel=3)
    images = np.load(array_path, mmap_mode="r", allow_pickle=False)
    return Decoded(images, decoded.good, decoded.bad, rows=decoded.rows, reason=decoded.reason)


# --------------------------------------------------------------------------- decoding


def _decode_all(paths: list[Path], image_size: int | None, workers: int | None,
                interpolation: str, part: str, progress: bool) -> Decoded:
    """Probe every header, choose the size, decode into the .npy file `part` (row i: the
    i-th readable file). Returns a Decoded whose `images` is a placeholder of the shape."""
    names = [str(p) for p in paths]
    n_workers = workers or _cores()
    pool = None
    if n_workers > 1 and len(names) >= PARALLEL_MIN:
        pool = concurrent.futures.ProcessPoolExecutor(n_workers, mp_context=_context())
    try:
        chunks = _chunks(names, n_workers)
        probes = [r for part_ in _map(pool, probe_chunk, chunks, progress, "reading headers")
                  for r in part_]
        bad = {i: r for i, r in enumerate(probes) if isinstance(r, str)}
        ok = [r for r in probes if not isinstance(r, str)]
        if not ok:
            np.lib.format.open_memmap(part, mode="w+", dtype=np.uint8, shape=(0, 1, 1, 1))
            return Decoded(np.zeros((0, 1, 1, 1), np.uint8), np.zeros(0, np.int64),
                           tuple((names[i], r) for i, r in bad.items()),
                           rows=np.zeros(0, np.int64), reason="")
        size, reason = (image_size, "") if image_size else auto_size(ok)
        gray = all(m in GRAY_MODES for _, _, m in ok)
        todo = [i for i in range(len(names)) if i not in bad]
        shape = (len(todo), 1 if gray else 3, size, size)
        header = np.lib.format.open_memmap(part, mode="w+", dtype=np.uint8, shape=shape)
        offset = header.offset
        del header  # the workers write their rows with pwrite; nothing stays mapped here
        starts = range(0, len(todo), CHUNK)
        jobs = [(part, offset + s * int(np.prod(shape[1:])), [names[i] for i in todo[s:s + CHUNK]])
                for s in starts]
        failed = _map(pool, decode_chunk, jobs, progress, "decoding", size=size, gray=gray,
                      interpolation=interpolation)
    finally:
        if pool is not None:
            pool.shutdown()
    lost = {s + j: why for s, errors in zip(starts, failed, strict=True) for j, why in errors}
    for row, why in lost.items():
        bad[todo[row]] = why
    rows = np.asarray([r for r in range(len(todo)) if r not in lost], dtype=np.int64)
    good = np.asarray([todo[r] for r in rows], dtype=np.int64)
    return Decoded(np.zeros((0, *shape[1:]), np.uint8),
                   good, tuple((names[i], bad[i]) for i in sorted(bad)), rows=rows,
                   reason=reason)


def auto_size(probes: list[tuple[int, int, str]]) -> tuple[int, str]:
    """(size, why): the most common long side when every image is at most SMALL_SIDE, else
    DEFAULT_SIDE."""
    sides = [max(w, h) for w, h, _ in probes]
    counts = collections.Counter(sides)
    common = max(counts, key=lambda s: (counts[s], s))
    if max(sides) > SMALL_SIDE:
        return DEFAULT_SIDE, (
            f"promix's default for images larger than {SMALL_SIDE} px without a model size "
            f"(most are {common} px on the long side): fast on a CPU but coarse; set "
            "--image_size=N, or --model=timm:NAME to train at the model's size "
            "(docs/backbones.md)")
    return common, f"the images' common size (all are at most {SMALL_SIDE} px)"


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _context():
    # fork starts workers at once and is what torch's DataLoader uses on Linux; the workers
    # only run PIL and NumPy. Elsewhere (macOS, Windows) spawn is the safe choice.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _chunks(items: list[str], n_workers: int) -> list[list[str]]:
    size = max(64, min(CHUNK, -(-len(items) // (4 * n_workers))))
    return [items[i : i + size] for i in range(0, len(items), size)]


def _map(pool, fn, chunks, progress: bool, desc: str, **kwargs) -> list:
    """[fn(chunk) for chunk in chunks], in a pool when given, with a bar counting images."""
    total = sum(len(c[-1]) if isinstance(c, tuple) else len(c) for c in chunks)
    bar = tqdm(total=total, desc=desc, unit="img", disable=not progress or total < PROGRESS_MIN,
               smoothing=0.1)
    with bar:
        if pool is None:
            out = []
            for c in chunks:
                out.append(fn(c, **kwargs))
                bar.update(len(c[-1]) if isinstance(c, tuple) else len(c))
            return out
        futures = {pool.submit(fn, c, **kwargs): k for k, c in enumerate(chunks)}
        out = [None] * len(chunks)
        for f in concurrent.futures.as_completed(futures):
            k = futures[f]
            out[k] = f.result()
            bar.update(len(chunks[k][-1]) if isinstance(chunks[k], tuple) else len(chunks[k]))
        return out
