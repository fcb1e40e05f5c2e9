"""Write the CPU protocol's CIFAR-10 subset as its own cifar-10-python.tar.gz (~58 MB).

    python dev/subset_archive.py [--source CIFAR10.tar.gz] [--out .gpudata/cifar-10-python.tar.gz]
                                 [--per-class 1000]

The archive has the official layout: data_batch_1 holds the first `--per-class` training
images of each class in the standard order, data_batch_2..5 are empty, test_batch and
batches.meta are copied. Loading it with `--per_class=1000` gives exactly the protocol's
images, so a machine that can only receive a small upload (the lent GPU machine takes 64 MiB)
runs the protocol with `benchmarks/table.py --data-root OUT` or `accuracy.py --data-root OUT`.
The pickles hold only str keys, lists and uint8 arrays (what promix's restricted unpickler
accepts).
"""

from __future__ import annotations

import argparse
import io
import pickle
import sys
import tarfile
from pathlib import Path

import numpy as np

from promix.data.cifar import load_cifar
from promix.data.load import first_per_class

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from paths import CIFAR10_ARCHIVE, ROOT  # noqa: E402


def batch(name: str, images: np.ndarray, labels: np.ndarray) -> bytes:
    data = images.reshape(len(images), -1) if len(images) else []  # empty: no numpy pickle
    return pickle.dumps({"batch_label": name, "data": data, "labels": labels.tolist()},
                        protocol=2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, default=CIFAR10_ARCHIVE)
    ap.add_argument("--out", type=Path, default=ROOT / ".gpudata" / "cifar-10-python.tar.gz")
    ap.add_argument("--per-class", type=int, default=1000)
    args = ap.parse_args()
    full = load_cifar("cifar10", args.source)
    keep = first_per_class(full.train.labels, 10, args.per_class)
    images, labels = full.train.images[keep].numpy(), full.train.labels[keep].numpy()
    files = {"data_batch_1": batch("protocol subset", images, labels)}
    for i in range(2, 6):
        files[f"data_batch_{i}"] = batch("empty", images[:0], labels[:0])
    files["test_batch"] = batch("test", full.test.images.numpy(), full.test.labels.numpy())
    files["batches.meta"] = pickle.dumps({"label_names": list(full.train.classes)}, protocol=2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(args.out, "w:gz") as tar:
        for name, payload in files.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    print(f"wrote {args.out} ({args.out.stat().st_size / 2**20:.1f} MiB, {len(keep)} training "
          f"images, {len(full.test.labels)} test images)")


if __name__ == "__main__":
    main()
