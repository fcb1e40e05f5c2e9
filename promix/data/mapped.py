"""Images larger than memory: a uint8 `.npy` file on disk, read a batch at a time.

`MappedImages` stands where an image tensor (N, C, H, W) uint8 stands in an `ImageSet`:
`images[index]` (an index tensor, array, list, slice or int) reads those rows from the file
and returns an ordinary tensor on the target device; `.subset(index)` and `.to(device)` stay
lazy. The file is opened as a NumPy memmap (its shape and data offset), but rows are read
with positioned reads (`os.preadv`, consecutive rows in one call) straight into the batch:
the file's pages stay in the kernel's page cache and never enter this process's resident
set (reading through the mapping would map every page touched, read-ahead included, until
released). So the peak resident memory does not grow with the number of images.
`prefetch` reads the next batches in a background thread while the current one trains.
"""

from __future__ import annotations

import mmap
import os
import queue
import threading
from collections.abc import Iterable, Iterator

import numpy as np
import torch


class MappedImages:
    """rows: (N,) positions in `array` of this set's images, in order (None: all of them)."""

    def __init__(self, array: np.ndarray, rows: np.ndarray | None = None,
                 device: torch.device | str = "cpu"):
        if array.dtype != np.uint8 or array.ndim != 4:
            raise ValueError(f"expected a uint8 (N, C, H, W) array, got {array.dtype} "
                             f"{array.shape}")
        self.array = array
        self.rows = np.arange(len(array), dtype=np.int64) if rows is None else np.asarray(
            rows, dtype=np.int64)
        self.device = torch.device(device)

    # the parts of the tensor interface an ImageSet and the trainer use
    dtype = torch.uint8

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.rows), *self.array.shape[1:]))

    def dim(self) -> int:
        return 4

    def __len__(self) -> int:
        return len(self.rows)

    def to(self, device, non_blocking: bool = False) -> MappedImages:  # noqa: ARG002
        return MappedImages(self.array, self.rows, device)

    def subset(self, index) -> MappedImages:
        """The images at `index`, still on disk."""
        return MappedImages(self.array, self.rows[_positions(index, len(self))], self.device)

    def __getitem__(self, index) -> torch.Tensor:
        """The images at `index` read into memory: (B, C, H, W) uint8 ((C, H, W) for an int)."""
        if isinstance(index, (int, np.integer)):
            return self[[int(index)]][0]
        rows = self.rows[_positions(index, len(self))]
        order = np.argsort(rows, kind="stable")  # read the file front to back
        out = np.empty((len(rows), *self.array.shape[1:]), dtype=np.uint8)
        if isinstance(self.array.base, mmap.mmap):  # a whole .npy file mapped by np.load
            self._pread(self.array.filename, rows[order], out, order)
        else:  # an array in memory, or a view: plain indexing
            out[order] = self.array[rows[order]]
        x = torch.from_numpy(out)
        return x if self.device.type == "cpu" else x.to(self.device, non_blocking=True)

    def _pread(self, path: str, rows: np.ndarray, out: np.ndarray, order: np.ndarray) -> None:
        """out[order[k]] = row rows[k] of the file; rows sorted, runs of consecutive rows read
        by one preadv."""
        size = int(np.prod(self.array.shape[1:]))
        fd = os.open(path, os.O_RDONLY)
        try:
            start = 0
            while start < len(rows):
                stop = start + 1
                while stop < len(rows) and rows[stop] == rows[stop - 1] + 1 and stop - start < 64:
                    stop += 1
                buffers = [memoryview(out[order[k]]).cast("B") for k in range(start, stop)]
                offset = self.array.offset + int(rows[start]) * size
                if os.preadv(fd, buffers, offset) != size * (stop - start):
                    raise OSError(f"{path}: the image cache is shorter than its header says")
                start = stop
        finally:
            os.close(fd)

    def release(self) -> None:
        """Drop any mapped pages of the file from this process's resident memory (batches are
        read with preadv and map none; a caller that indexed `array` itself may have)."""
        handle = getattr(self.array, "_mmap", None)
        if handle is not None and hasattr(mmap, "MADV_DONTNEED"):
            handle.madvise(mmap.MADV_DONTNEED)

    def __repr__(self) -> str:
        return f"MappedImages({tuple(self.shape)}, file={getattr(self.array, 'filename', None)})"


def _positions(index, n: int) -> np.ndarray:
    if isinstance(index, slice):
        return np.arange(n, dtype=np.int64)[index]
    if isinstance(index, torch.Tensor):
        index = index.cpu().numpy()
    index = np.asarray(index)
    if index.dtype == bool:
        return np.flatnonzero(index)
    return index.astype(np.int64, copy=False)


def prefetch(images, batches: Iterable, depth: int = 2) -> Iterator[tuple[object, torch.Tensor]]:
    """(index, images[index]) for each index in `batches`, the next `depth` batches read in a
    background thread when `images` are on disk (for a tensor, inline)."""
    if not isinstance(images, MappedImages):
        for index in batches:
            yield index, images[index]
        return
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def read() -> None:
        try:
            for index in batches:
                if stop.is_set():
                    return
                slots.put((index, images[index]))
        except BaseException as err:  # noqa: BLE001 - re-raised in the consumer
            slots.put(err)
        slots.put(None)

    worker = threading.Thread(target=read, daemon=True, name="promix-prefetch")
    worker.start()
    try:
        while (item := slots.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            try:
                slots.get_nowait()
            except queue.Empty:
                worker.join(timeout=0.05)
