"""Peak memory while training on a folder whose decoded cache is larger than 8 GB, and the
decoding throughput against single-process PIL, in one run.

    python benchmarks/memory.py [--images 60000] [--side 240] [--size 224] [--steps 20]
                                [--work /tmp/promix-memory] [--keep] [--out FILE.json]

1. Writes a synthetic ImageFolder of `--images` JPEGs (10 classes, `--side` px, seeded)
   under `--work` (never inside the repository).
2. Decoding throughput as a ratio to plain single-process PIL decoding (open, RGB, resize
   to `--size`, to NumPy; 1,000 files, timed before and after, averaged), in the same run:
   (a) promix's decoding (every core) of 4,000 files into a cache on /dev/shm (memory), the
   CPU side alone; (b) promix's decoding of the whole folder into the on-disk cache, which
   writes 150 KB per image; the disk's write speed (1 GB with fsync) is recorded beside it.
3. Builds the dataset (20% symmetric noise, a held-out 20%) and a ProMix Trainer of two
   small_cnn peers at `--size` px, and runs `--steps` warm-up steps, one full selection
   pass over every training image (which reads the whole cache), then `--steps` ProMix steps.
   The process's peak resident set (VmHWM) is reported against the 4 GB target, with the
   cache's size; a thread also samples VmRSS every 0.2 s.
4. Deletes the folder and the cache unless `--keep`.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import itertools
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from promix.config import Config, DataConfig
from promix.data import folder
from promix.data.cache import decode_files
from promix.data.load import build_dataset
from promix.data.mapped import MappedImages
from promix.trainer import Trainer

sys.path.insert(0, str(Path(__file__).resolve().parent))
import host  # noqa: E402

CLASSES = 10
TARGET_PEAK_GB = 4.0


def _write_chunk(job: tuple[str, int, int, int, int]) -> None:
    root, start, stop, side, seed = job
    for i in range(start, stop):
        rng = np.random.default_rng(seed * 1_000_003 + i)
        c = i % CLASSES
        y, x = np.mgrid[0:side, 0:side] / side
        base = np.stack([np.sin(6 * x + c), np.cos(5 * y + c / 2), x * y], axis=-1)
        img = (base * 80 + 120 + rng.normal(0, 12, (side, side, 3))).clip(0, 255)
        Image.fromarray(img.astype(np.uint8)).save(Path(root) / f"c{c}" / f"{i:06d}.jpg",
                                                   quality=85)


def make_folder(root: Path, n: int, side: int, seed: int = 0) -> None:
    if root.is_dir() and sum(1 for _ in root.rglob("*.jpg")) == n:
        return
    shutil.rmtree(root, ignore_errors=True)
    for c in range(CLASSES):
        (root / f"c{c}").mkdir(parents=True)
    jobs = [(str(root), s, min(s + 500, n), side, seed) for s in range(0, n, 500)]
    with concurrent.futures.ProcessPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(_write_chunk, jobs))


def disk_write_mb_s(folder: Path, mb: int = 1024) -> float:
    """Sequential write speed of the disk holding `folder` (1 MB blocks, fsync at the end)."""
    path, block = folder / "disk-speed.tmp", os.urandom(1 << 20)
    t0 = time.perf_counter()
    with open(path, "wb") as f:
        for _ in range(mb):
            f.write(block)
        f.flush()
        os.fsync(f.fileno())
    seconds = time.perf_counter() - t0
    path.unlink()
    return mb * (1 << 20) / 1e6 / seconds


def pil_rate(paths: list[Path], size: int) -> float:
    """Images/s of plain single-process PIL decoding at `size` x `size`."""
    t0 = time.perf_counter()
    for p in paths:
        with Image.open(p) as img:
            np.asarray(img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR))
    return len(paths) / (time.perf_counter() - t0)


class RssSampler(threading.Thread):
    """Samples this process's VmRSS every `every` seconds; `.peak` in bytes."""

    def __init__(self, every: float = 0.2):
        super().__init__(daemon=True)
        self.every, self.peak, self.done = every, 0, threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, status_bytes("VmRSS"))
            time.sleep(self.every)


def status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def limit_batches(trainer: Trainer, steps: int) -> None:
    """Only the first `steps` batches of each epoch (a benchmark of memory, not of accuracy)."""
    full = trainer.batches
    trainer.batches = lambda drop_last: itertools.islice(full(drop_last), steps)


def train_steps(data, args) -> dict:
    cfg = Config()
    cfg.model.name, cfg.model.width = "small_cnn", 8
    cfg.optim.batch_size = args.batch
    cfg.run.eval_batch_size = args.batch
    cfg.run.progress = False
    cfg.schedule.epochs, cfg.schedule.warmup_epochs = 10, 1
    trainer = Trainer(cfg, data)
    limit_batches(trainer, args.steps)
    times = {}
    t0 = time.perf_counter()
    trainer.train_epoch(trainer.schedule.at(0))  # warm-up steps
    times["warmup_steps_seconds"] = time.perf_counter() - t0
    sched = trainer.schedule.at(1)
    t0 = time.perf_counter()
    trainer.select(sched)  # every training image, read from the memory-mapped cache
    times["selection_pass_seconds"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    trainer.train_epoch(sched)  # ProMix steps
    times["promix_steps_seconds"] = time.perf_counter() - t0
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=60_000)
    ap.add_argument("--side", type=int, default=240, help="side of the JPEG files")
    ap.add_argument("--size", type=int, default=224, help="training size")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--work", default="/tmp/promix-memory")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--always-map", action="store_true",
                    help="map the cache even when small (a quick check of this script)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "memory.json"))
    args = ap.parse_args()
    work = Path(args.work)
    root, cache = work / "data", work / "cache"
    t0 = time.perf_counter()
    make_folder(root, args.images, args.side)
    print(f"folder: {args.images} JPEGs in {time.perf_counter() - t0:.0f} s", flush=True)
    shutil.rmtree(cache, ignore_errors=True)
    if args.always_map:
        folder.IN_MEMORY_BYTES = 0
    sampler = RssSampler()
    sampler.start()
    files = sorted(root.rglob("*.jpg"))
    single_before = pil_rate(files[:1000], args.size)
    shm = Path(tempfile.mkdtemp(prefix="promix-shm-", dir="/dev/shm"))
    t0 = time.perf_counter()
    decode_files(files[:4000], image_size=args.size, cache_dir=shm, progress=False)
    cpu_rate = 4000 / (time.perf_counter() - t0)
    shutil.rmtree(shm)
    single = (single_before + pil_rate(files[:1000], args.size)) / 2
    disk_mb_s = disk_write_mb_s(work)
    data_cfg = DataConfig(dataset="folder", root=str(root), image_size=args.size,
                          cache_dir=str(cache), noise="sym", noise_rate=0.2)
    t0 = time.perf_counter()
    data = build_dataset(data_cfg)
    decode_s = time.perf_counter() - t0
    rate = args.images / decode_s
    cache_bytes = sum(p.stat().st_size for p in cache.glob("*.npy"))
    image_bytes = 3 * args.size**2
    print(f"decoding: single-process PIL {single:.0f} img/s; promix to memory {cpu_rate:.0f} "
          f"img/s ({cpu_rate / single:.2f}x); to disk {rate:.0f} img/s ({rate / single:.2f}x; "
          f"the disk's {disk_mb_s:.0f} MB/s caps it at {disk_mb_s * 1e6 / image_bytes:.0f}); "
          f"cache {cache_bytes / 1e9:.2f} GB", flush=True)
    assert isinstance(data.train.images, MappedImages), "the cache should stay on disk"
    # fixed statistics: a pass over 9 GB for them is the same reading the selection pass does
    data = dataclasses.replace(data, mean=(0.5,) * 3, std=(0.25,) * 3)
    rss_after_decode = status_bytes("VmRSS")
    times = train_steps(data, args)
    sampler.done.set()
    peak = status_bytes("VmHWM")
    result = {
        "host": host.describe(),
        "note": "timings are noisy when other jobs share the cores: see host.load_average",
        "images": args.images, "jpeg_side": args.side, "image_size": args.size,
        "train_images": len(data.train), "cache_bytes": cache_bytes,
        "decode": {"pil_single_process_images_per_s": single,
                   "promix_to_memory_images_per_s": cpu_rate, "ratio_to_memory": cpu_rate / single,
                   "promix_to_disk_images_per_s": rate, "ratio_to_disk": rate / single,
                   "seconds_to_disk": decode_s, "disk_write_mb_per_s": disk_mb_s,
                   "disk_ceiling_images_per_s": disk_mb_s * 1e6 / image_bytes,
                   "workers": len(os.sched_getaffinity(0))},
        "train": {"model": "small_cnn width 8 (two peers)", "batch": args.batch,
                  "steps_per_phase": args.steps, **times},
        "rss_after_decode_bytes": rss_after_decode,
        "peak_rss_bytes": peak, "sampled_peak_rss_bytes": sampler.peak,
        "target_peak_bytes": int(TARGET_PEAK_GB * 2**30),
        "peak_under_target": peak < TARGET_PEAK_GB * 2**30,
        "cache_over_8gb": cache_bytes > 8e9,
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"peak RSS {peak / 2**30:.2f} GiB with a {cache_bytes / 2**30:.2f} GiB cache "
          f"(target < {TARGET_PEAK_GB} GiB): {'ok' if result['peak_under_target'] else 'FAILED'}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
