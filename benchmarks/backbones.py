"""What each candidate backbone costs: FLOPs and CPU training speed at its pretrained size.

    python benchmarks/backbones.py [--models timm:resnet18,...] [--batch 16] [--steps 3]
                                   [--out benchmarks/results/backbones.json]

For each model (with the two ProMix heads, 10 classes) at its timm pretrained input size:
parameters, FLOPs of one image's forward + backward pass (torch's FlopCounterMode), and the
images/s of a training pass (forward, both heads' cross-entropy, backward, SGD step) at
`--batch`, in fp32 and under bf16 autocast, after one untimed step; the best of `--steps`
timed steps. One ProMix step costs about 2 passes per peer on the batch plus 2 (efficient)
or 4 (faithful) on the chosen samples, and each epoch adds a forward-only selection pass.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from promix.hardware import autocast
from promix.models import create_model
from promix.models.timm_backbone import pretrained_cfg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import host  # noqa: E402

MODELS = ("small_cnn", "timm:mobilenetv3_large_100", "timm:efficientnet_b0",
          "timm:convnext_atto", "timm:resnet18", "timm:resnet50")


def train_pass(net, opt, x, y, ctx) -> None:
    with ctx:
        out = net(x)
    loss = F.cross_entropy(out.logits.float(), y) + F.cross_entropy(out.pseudo_logits.float(), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def measure(name: str, batch: int, steps: int) -> dict:
    size = int(pretrained_cfg(name)["input_size"][-1]) if name.startswith("timm:") else 224
    torch.manual_seed(0)
    net = create_model(name, num_classes=10).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    with FlopCounterMode(display=False) as counter:
        train_pass(net, opt, x[:1], y[:1], torch.autocast("cpu", enabled=False))
    row = {"model": name, "image_size": size, "batch": batch,
           "params_m": sum(p.numel() for p in net.parameters()) / 1e6,
           "gflops_per_train_pass": counter.get_total_flops() / 1e9}
    for prec, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        ctx = autocast(torch.device("cpu"), dtype)
        train_pass(net, opt, x, y, ctx)  # untimed: allocations, kernel choice
        best = float("inf")
        for _ in range(steps):
            t0 = time.perf_counter()
            train_pass(net, opt, x, y, ctx)
            best = min(best, time.perf_counter() - t0)
        row[f"{prec}_images_per_s"] = batch / best
        row[f"{prec}_gflop_per_s"] = batch * row["gflops_per_train_pass"] / best
    print(f"{name:<28} {size:>4}px {row['gflops_per_train_pass']:7.2f} GFLOP  fp32 "
          f"{row['fp32_images_per_s']:6.1f} img/s  bf16 {row['bf16_images_per_s']:6.1f} img/s",
          flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "backbones.json"))
    args = ap.parse_args()
    rows = [measure(m, args.batch, args.steps) for m in args.models.split(",") if m]
    record = {"host": host.describe(),
              "shared_machine": "2 cores shared with other jobs: rates are noisy",
              "command": " ".join(["python", *sys.argv]), "models": rows}
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
