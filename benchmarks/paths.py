"""Where the benchmarks find things: the repository root and the shared CIFAR-10 archive
(`../shared/data/cifar10` next to the checkout; every script takes a flag to read it elsewhere)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CIFAR10_ARCHIVE = ROOT.parent / "shared" / "data" / "cifar10" / "cifar-10-python.tar.gz"
