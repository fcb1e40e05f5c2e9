"""Where the benchmarks find things: the repository root and the CIFAR-10 archive.

The archive is `$PROMIX_CIFAR10` when set, else `data/cifar10/cifar-10-python.tar.gz` in the
checkout (`promix train --preset cifar10-sym50 --root data/cifar10 --download` puts it there).
Every script also takes a flag to read it from elsewhere. dev/README.md says where it lies on
this project's own machines.
"""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CIFAR10_ARCHIVE = Path(os.environ.get("PROMIX_CIFAR10")
                       or ROOT / "data" / "cifar10" / "cifar-10-python.tar.gz")
