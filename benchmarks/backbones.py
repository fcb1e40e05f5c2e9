"""What each candidate backbone costs: FLOPs and CPU training speed at its pretrained size.

    python benchmarks/backbones.py [--models timm:resnet18,...] [--batch 16] [--steps 3]
                                   [--out benchmarks/results/backbones.json]
    python benchmarks/backbones.py --table    # estimates into --out, table into the docs

For each model (with the two ProMix heads, 10 classes) at its timm pretrained input size:
parameters, FLOPs of one image's forward + backward pass (3 x the forward counted by torch's
FlopCounterMode), and the images/s of a training pass (forward, both heads' cross-entropy,
backward, SGD step) at `--batch`, in fp32 and under bf16 autocast, after one untimed step;
the best of `--steps` timed steps. One ProMix step costs about 2 passes per peer on the
batch plus 2 (efficient) or 4 (faithful) on the chosen samples, and each epoch adds a
forward-only selection pass.

--table derives, for each model, what an efficient ProMix epoch over 1,000 images would take:
on this CPU, (2 peers x 4 training passes + 2 forward passes of about a third each) per
image at the measured bf16 rate; on an H200, the measured ProMix epoch rate of the CIFAR
ResNet-18 at 32 px (benchmarks/results/throughput-h200-grouped.json) scaled by the ratio of
training-pass FLOPs. Both are estimates (marked so in the file and the docs); the measured
epoch of a timm ResNet-50 is benchmarks/throughput.py's.
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
import docgen  # noqa: E402
import host  # noqa: E402
from paths import ROOT  # noqa: E402

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
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(x[:1])
    row = {"model": name, "image_size": size, "batch": batch,
           "params_m": sum(p.numel() for p in net.parameters()) / 1e6,
           "gflops_forward": counter.get_total_flops() / 1e9,
           # backward = 2 x forward: torch's count of convolution_backward ignores groups,
           # which inflates depthwise networks' backward 10-40 fold (EfficientNet-B0's to 41x
           # its forward; ResNet-18's comes out at the expected 1.9x)
           "gflops_per_train_pass": 3 * counter.get_total_flops() / 1e9}
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


DOC = ROOT / "docs" / "backbones.md"
PASSES_PER_IMAGE = 2 * 4 + 2 / 3  # efficient ProMix epoch, in training-pass equivalents
H200 = Path(__file__).parent / "results" / "throughput-h200-grouped.json"


def with_estimates(row: dict, h200: dict) -> dict:
    """The row plus the derived (estimated, not measured) cost of a ProMix epoch."""
    ref = next(m for m in h200["models"] if m["model"] == "resnet18")
    scale = ref["flops_per_pass"] / 1e9 / row["gflops_per_train_pass"]
    return row | {"estimated": {
        "how": "cpu: 1,000 x (2 peers x 4 passes + 2 x 1/3 forward) / bf16_images_per_s; "
               "h200: the CIFAR ResNet-18's measured efficient epoch rate (throughput-h200-"
               "grouped.json) x its training-pass FLOPs / this model's",
        "cpu_epoch_s_per_1000": 1000 * PASSES_PER_IMAGE / row["bf16_images_per_s"],
        "h200_epoch_images_per_s": ref["efficient_epoch_ips"] * scale,
        "h200_epoch_s_per_1000": 1000 / (ref["efficient_epoch_ips"] * scale)}}


def table(record: dict) -> str:
    lines = ["| backbone | input | parameters | GFLOP per training pass | CPU fp32 | CPU bf16 | "
             "ProMix epoch per 1,000 images, CPU (est.) | same, H200 (est.) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in record["models"]:
        e = r["estimated"]
        lines.append(f"| `{r['model']}` | {r['image_size']} px | {r['params_m']:.1f} M | "
                     f"{r['gflops_per_train_pass']:.1f} | {r['fp32_images_per_s']:.1f} img/s | "
                     f"{r['bf16_images_per_s']:.1f} img/s | "
                     f"{e['cpu_epoch_s_per_1000'] / 60:.1f} min | "
                     f"{e['h200_epoch_s_per_1000']:.1f} s |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "backbones.json"))
    ap.add_argument("--table", action="store_true",
                    help="add the estimates to --out, write the docs/backbones.md table")
    args = ap.parse_args()
    h200 = json.loads(H200.read_text())
    if args.table:
        record = json.loads(Path(args.out).read_text())
        record["models"] = [with_estimates(r, h200) for r in record["models"]]
        Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
        text = table(record)
        docgen.write_section(DOC, text, *docgen.markers("backbones table"))
        print(text)
        return
    rows = [with_estimates(measure(m, args.batch, args.steps), h200)
            for m in args.models.split(",") if m]
    record = {"host": host.describe(),
              "note": "rates are noisy when other jobs share the cores: see host.load_average",
              "command": " ".join(["python", *sys.argv]), "models": rows}
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
