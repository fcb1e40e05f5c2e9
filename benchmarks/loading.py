"""How long loading takes: CIFAR-10 from a folder and from the .tar.gz, and an ImageFolder of
small JPEGs on first decode and from the cache.

    python benchmarks/loading.py [--archive PATH] [--n 50000] [--out FILE.json]

Targets: extracted folder < 5 s, tar.gz < 15 s, cached ImageFolder < 5 s. Everything is
written to a temporary folder that is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import PIL
import torch
from PIL import Image

from promix.data.cifar import load_cifar
from promix.data.folder import load_folder

sys.path.insert(0, str(Path(__file__).resolve().parent))
import host  # noqa: E402
from paths import CIFAR10_ARCHIVE, ROOT  # noqa: E402

TARGETS = {"cifar10_folder": 5.0, "cifar10_targz": 15.0, "imagefolder_cached": 5.0}


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def write_jpegs(images: torch.Tensor, labels: torch.Tensor, classes, root: Path) -> None:
    """images (N, 3, 32, 32) uint8 -> root/<class>/<index>.jpg (quality 90)."""
    for name in classes:
        (root / name).mkdir(parents=True)
    arrays = images.permute(0, 2, 3, 1).numpy()
    for i, (img, y) in enumerate(zip(arrays, labels.tolist(), strict=True)):
        Image.fromarray(np.ascontiguousarray(img)).save(root / classes[y] / f"{i:05d}.jpg",
                                                        quality=90)


def machine() -> dict:
    return host.describe() | {"numpy": np.__version__, "pillow": PIL.__version__}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archive", type=Path, default=CIFAR10_ARCHIVE)
    ap.add_argument("--n", type=int, default=50_000, help="JPEGs in the ImageFolder test")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "loading.json")
    args = ap.parse_args(argv)
    if not args.archive.is_file():
        sys.exit(f"{args.archive} not found: pass --archive PATH/cifar-10-python.tar.gz")
    rows = {}
    with tempfile.TemporaryDirectory(prefix="promix-bench-") as tmp:
        tmp = Path(tmp)
        with tarfile.open(args.archive) as tar:
            tar.extractall(tmp / "extracted", filter="data")
        data, rows["cifar10_folder"] = timed(
            lambda: load_cifar("cifar10", tmp / "extracted" / "cifar-10-batches-py"))
        _, rows["cifar10_targz"] = timed(lambda: load_cifar("cifar10", args.archive))
        n = min(args.n, len(data.train))
        _, write_s = timed(lambda: write_jpegs(data.train.images[:n], data.train.labels[:n],
                                               data.train.classes, tmp / "jpegs"))
        print(f"(wrote {n} JPEGs in {write_s:.1f} s, not timed below)")
        cache = tmp / "cache"
        first, rows["imagefolder_first_decode"] = timed(
            lambda: load_folder(tmp / "jpegs", cache_dir=cache))
        again, rows["imagefolder_cached"] = timed(
            lambda: load_folder(tmp / "jpegs", cache_dir=cache))
        assert torch.equal(first.train.images, again.train.images)
        assert len(first.train) == n
        report(rows, n, args)
        print("removing the temporary files...")


def report(rows: dict, n: int, args) -> None:
    print(f"\n{'what':<28}{'seconds':>9}{'target':>9}")
    for name, seconds in rows.items():
        target = TARGETS.get(name)
        mark = "" if target is None else f"< {target:g}" + (" ok" if seconds < target else " MISS")
        print(f"{name:<28}{seconds:>9.2f}  {mark}")
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine(),
        "imagefolder_images": n,
        "seconds": {k: round(v, 3) for k, v in rows.items()},
        "targets_seconds": TARGETS,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
