"""One image file to a uint8 array (C, S, S), and the worker functions of the decode pool.

Any mode is accepted: L when every image of the set is grayscale, else RGB (alpha dropped,
palettes expanded, 16-bit and float values scaled to 8 bits, EXIF orientation applied). The
image is resized to S x S with PIL's antialiased bilinear or bicubic filter.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageOps

FILTERS = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def probe_chunk(names: list[str]) -> list[tuple[int, int, str] | str]:
    """(width, height, mode) from each file's header, or the reason it cannot be read."""
    out = []
    for name in names:
        try:
            with Image.open(name) as img:
                out.append((img.size[0], img.size[1], img.mode))
        except Exception as e:  # noqa: BLE001 - any failure makes the file unreadable
            out.append(f"{type(e).__name__}: {e}")
    return out


def decode_chunk(job: tuple[str, int, list[str]], *, size: int, gray: bool,
                  interpolation: str) -> list[tuple[int, str]]:
    """Decode job = (file, byte offset, names) into consecutive rows of the .npy file at that
    offset (os.pwrite: nothing is mapped in the worker); [(position, reason)] of failures."""
    path, offset, names = job
    c = 1 if gray else 3
    out = np.zeros((len(names), c, size, size), dtype=np.uint8)
    errors = []
    for j, name in enumerate(names):
        try:
            out[j] = to_array(name, size=size, gray=gray, interpolation=interpolation)
        except Exception as e:  # noqa: BLE001 - truncated, corrupt, unsupported...
            errors.append((j, f"{type(e).__name__}: {e}"))
    fd = os.open(path, os.O_WRONLY)
    try:
        data, done = memoryview(out).cast("B"), 0
        while done < len(data):
            done += os.pwrite(fd, data[done:], offset + done)
    finally:
        os.close(fd)
    return errors


def to_array(name: str, *, size: int, gray: bool, interpolation: str = "bilinear") -> np.ndarray:
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
            img = img.resize((size, size), FILTERS[interpolation])
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
