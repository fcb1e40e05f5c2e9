"""Images larger than memory: a uint8 `.npy` file mapped read-only, gathered a batch at a time.

`MappedImages` stands where an image tensor (N, C, H, W) uint8 stands in an `ImageSet`:
`images[index]` (an index tensor, array, list, slice or int) reads those rows from the file
and returns an ordinary tensor on the target device; `.subset(index)` and `.to(device)` stay
lazy. The rows read are dropped from this process's resident set after use
(`madvise(MADV_DONTNEED)`; the kernel's page cache still serves them), so the peak resident
memory does not grow with the number of images. `prefetch` reads the next batches in a
background thread while the current one trains.
"""

from __future__ import annotations

import mmap
import queue
import threading
from collections.abc import Iterable, Iterator

import numpy as np
import torch

RELEASE_BYTES = 256 << 20  # drop mapped pages from the resident set after this much is read


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
        self._read = 0

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
        out[order] = self.array[rows[order]]
        self._read += out.nbytes
        if self._read >= RELEASE_BYTES:
            self.release()
        x = torch.from_numpy(out)
        return x if self.device.type == "cpu" else x.to(self.device, non_blocking=True)

    def release(self) -> None:
        """Drop the mapped pages read so far from this process's resident memory."""
        self._read = 0
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
