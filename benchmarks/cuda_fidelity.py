"""Do the strong view's ops give the same pixels on CUDA as on the CPU (hence as PIL)?

    python benchmarks/cuda_fidelity.py [--archive PATH] [--out FILE.json]

The CPU ops match PIL pixel for pixel (tests/test_augment.py). A GPU may round differently
(e.g. fused multiply-adds in the float32 blends), so this applies every op, and whole strong
views, to the same CIFAR-10 images with the same draws on both devices and counts the pixels
that differ. Needs a CUDA device.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paths import CIFAR10_ARCHIVE, ROOT  # noqa: E402

from promix.config import DataConfig  # noqa: E402
from promix.data.augment import draw_strong, render_strong  # noqa: E402
from promix.data.load import load_raw  # noqa: E402
from promix.data.randaugment import OPS, RANGES, apply_op  # noqa: E402
from promix.hardware import CudaGraphed  # noqa: E402


def differing(a: torch.Tensor, b: torch.Tensor) -> dict:
    diff = (a.cpu().int() - b.cpu().int()).abs()
    return {"pixels_differing": float((diff > 0).float().mean()), "max_abs": int(diff.max())}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archive", type=Path, default=CIFAR10_ARCHIVE)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/cuda_fidelity.json")
    ap.add_argument("--images", type=int, default=2048)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("needs a CUDA device")
    x = load_raw(DataConfig(dataset="cifar10", root=str(args.archive))).train.images
    x = x[: args.images]
    g = torch.Generator().manual_seed(0)
    out = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
           "date": time.strftime("%Y-%m-%d %H:%M:%S"), "images": len(x), "ops": {}}
    for name in OPS:  # one op on every image, magnitudes across its whole range
        low, high = RANGES[name]
        v = low + (high - low) * torch.rand(len(x), generator=g, dtype=torch.float64)
        out["ops"][name] = differing(apply_op(x, name, v), apply_op(x.cuda(), name, v.cuda()))
    draws = draw_strong(len(x), generator=g, device="cpu")
    cpu = render_strong(x, *draws)
    on_gpu = [d.cuda() for d in draws]
    renders = {"grouped": render_strong, "dense": functools.partial(render_strong, dense=True),
               "graph": CudaGraphed(functools.partial(render_strong, dense=True))}
    out["strong_view"] = {mode: differing(cpu, render(x.cuda(), *on_gpu))
                          for mode, render in renders.items()}
    print(json.dumps(out, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
