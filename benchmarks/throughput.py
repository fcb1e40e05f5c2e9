"""Training throughput against the compute floor, precision and peak memory, in one run.

    python benchmarks/throughput.py [--archive PATH] [--out FILE.json] [--quick]

For small_cnn (width 32) and resnet18 on a CIFAR-10 subset with 50% symmetric noise (and,
with `--models timm:resnet50`, timm's ImageNet ResNet-50 on the same images resized to its
224 px), times
the trainer's real code: a warm-up epoch, the selection pass, and ProMix epochs with
`--promix.passes` faithful and efficient (the first ProMix epoch's schedule, e = warm-up).
The compute floor runs the same forward and backward passes of the same models (per step:
each peer two full-batch passes and, per chosen-set size |L_k| recorded from the real steps,
four passes on |L_k| samples, two in efficient mode) on batches already on the device, with
no augmentation, selection or bookkeeping. Efficiency = floor time / real time.

A ProMix epoch is the selection pass plus the training steps, as `train_seconds` counts it;
its images/s is N / (selection + steps) with N training images.

Each model runs in its own process so that its peak RSS is its own. A last process loads all
50,000 CIFAR-10 training images and runs the selection pass over them and the first
`--memory-steps` ProMix steps of small_cnn (the memory claim; `--memory-models
small_cnn,resnet18` adds the paper's backbone, whose 30-minute selection pass over 50k is
replaced by CSS on random losses, which gives the same chosen-set sizes).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import promix.methods as step_owner  # the module whose ProMix.step calls train_step
from promix.config import Config, DataConfig
from promix.data.augment import strong_view
from promix.data.load import first_per_class, load_raw, prepare
from promix.hardware import autocast
from promix.selection import class_quotas, class_small_loss
from promix.trainer import Trainer, strong_renderer

sys.path.insert(0, str(Path(__file__).resolve().parent))
import host  # noqa: E402
from paths import CIFAR10_ARCHIVE, ROOT  # noqa: E402

REFERENCE_IPS = 7.75  # the reference's ResNet-18 ProMix epoch, images/s (AMX machine)
TARGET_EFFICIENCY = 0.85
# model -> (batch, ProMix steps per epoch, timed repeats of every epoch, bf16 floor batch)
DEFAULTS = {"small_cnn": (256, 4, 3, 256), "resnet18": (64, 2, 1, 8),
            "timm:resnet50": (16, 2, 1, 16)}
# models trained at another size than CIFAR's 32 px (CIFAR images resized up; the test set
# is cut to TEST_CUT images so that 10,000 test images at 224 px are not held in memory)
SIZES = {"timm:resnet50": 224}
TEST_CUT = 256


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def sync() -> None:
    """Wait for queued GPU work, so that a timer measures the work and not its launch."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def clock(fn) -> float:
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def make_trainer(loaded, args, model: str, batch: int, per_class: int | None) -> Trainer:
    cfg = Config()
    cfg.data = DataConfig(dataset="cifar10", root=str(args.archive), per_class=per_class,
                          noise="sym", noise_rate=0.5, image_size=SIZES.get(model))
    if model in SIZES:  # resized after these cuts: 50,000 images at 224 px would be 7.5 GB
        train = loaded.train
        if per_class is not None:
            train = train.subset(first_per_class(train.labels, train.num_classes, per_class))
        loaded = dataclasses.replace(loaded, train=train,
                                     test=loaded.test.subset(torch.arange(TEST_CUT)))
    cfg.model.name, cfg.model.width = model, 32
    cfg.optim.batch_size = batch
    cfg.run.precision, cfg.run.progress, cfg.run.compile = args.precision, False, args.compile
    cfg.run.device, cfg.run.augment = args.device, args.augment
    return Trainer(cfg, prepare("cifar10", loaded, cfg.data))


@contextlib.contextmanager
def chosen_sizes():
    """Log each step's |L_k| (a list of one int per peer) by wrapping train_step where
    promix.methods.ProMix calls it."""
    sizes, step = [], step_owner.train_step

    def logged(*a, **kw):
        terms, chosen = step(*a, **kw)
        sizes.append([int(m.sum()) for m in chosen])
        return terms, chosen

    step_owner.train_step = logged
    try:
        yield sizes
    finally:
        step_owner.train_step = step


# ---------------------------------------------------------------------------- the floor


def device_batch(t: Trainer, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *t.images.shape[1:], generator=g).to(t.device)
    if t.cfg.run.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, torch.randint(0, t.num_classes, (n,), generator=g).to(t.device)


def passes_loss(net, xs, y, ctx) -> torch.Tensor:
    """Both heads' CE over the given inputs (each a prefix of the batch), one pass each."""
    total = 0.0
    for x in xs:
        with ctx:
            out = net(x)
        n = x.shape[0]
        total = total + F.cross_entropy(out.logits.float(), y[:n])
        total = total + F.cross_entropy(out.pseudo_logits.float(), y[:n])
    return total


def floor_steps(t: Trainer, plan: list[list[list[int]]], ctx) -> float:
    """plan[step][peer] = the batch sizes of that peer's fwd+bwd passes. Returns seconds."""
    big = max(n for step in plan for sizes in step for n in sizes)
    (x, y), (x2, _) = device_batch(t, big, 0), device_batch(t, big, 1)
    for net in t.state.nets:
        net.train()

    def run():
        for step in plan:
            t.state.optimizer.zero_grad(set_to_none=True)
            # per-peer backward, as the step
            for net, sizes in zip(t.state.nets, step, strict=True):
                views = [(x if i % 2 == 0 else x2)[:n] for i, n in enumerate(sizes) if n > 0]
                passes_loss(net, views, y, ctx).backward()
            t.state.optimizer.step()

    return clock(run)


def floor_select(t: Trainer, n: int, ctx) -> float:
    """Eval-mode forward of every peer over n images in eval batches (the selection pass)."""
    b = t.cfg.run.eval_batch_size
    x, _ = device_batch(t, min(b, n), 2)

    @torch.no_grad()
    def run():
        for net in t.state.nets:
            net.eval()
            for start in range(0, n, b):
                with ctx:
                    net(x[: min(b, n - start)])
            net.train()

    return clock(run)


def flops_per_image(t: Trainer) -> float:
    """FLOPs of one image's forward and backward pass through one peer (both heads). Right
    for the dense convolutions of small_cnn and the ResNets; torch's count of a grouped
    (depthwise) convolution's backward ignores the groups (see benchmarks/backbones.py)."""
    x, y = device_batch(t, 2, 3)
    with FlopCounterMode(display=False) as counter:
        passes_loss(t.state.nets[0], [x], y, contextlib.nullcontext()).backward()
    t.state.optimizer.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 2


def promix_plan(sizes: list[list[int]], batch: int, passes: str) -> list:
    mixes = 4 if passes == "faithful" else 2
    return [[[batch, batch] + [n] * mixes for n in step] for step in sizes]


# ---------------------------------------------------------------------------- one model


def measure_model(args, model: str) -> dict:
    batch, steps, reps, bf16_batch = DEFAULTS[model]
    batch, steps = args.batch.get(model, batch), args.steps.get(model, steps)
    reps = args.repeats.get(model, reps)
    loaded = load_raw(DataConfig(dataset="cifar10", root=str(args.archive)))
    t = make_trainer(loaded, args, model, batch, math.ceil(steps * batch / 10))
    n, ctx = len(t.labels), t.autocast
    warm, first = t.schedule.at(0), t.schedule.at(t.schedule.warmup)
    log(f"{model}: N={n}, batch {batch}, {steps} ProMix steps, {t.dtype}")
    warmup_plan = [[[b], [b]] for b in [batch] * (n // batch) + [n % batch] * (n % batch > 0)]
    floor_steps(t, [[[batch], [batch]]], ctx)  # untimed: creates the kernels once
    t.views(torch.arange(batch, device=t.device), strong=True)  # untimed: CUDA graph capture
    row = {"model": model, "batch": batch, "n_train": n, "promix_steps": steps, "repeats": reps,
           "precision": str(t.dtype).removeprefix("torch."), "flops_per_pass": flops_per_image(t)}
    times: dict[str, float] = {}

    def add(key: str, seconds: float) -> None:
        times[key] = times.get(key, 0.0) + seconds

    for _ in range(reps):  # each real run next to its floor, so that drifts hit both alike
        add("warmup_s", clock(lambda: t.train_epoch(warm)))
        add("warmup_floor_s", floor_steps(t, warmup_plan, ctx))
        add("select_s", clock(lambda: t.select(first)))
        add("select_floor_s", floor_select(t, n, ctx))
        for passes in ("faithful", "efficient"):
            t.cfg.promix.passes = passes
            with chosen_sizes() as sizes:
                add(f"{passes}_s", clock(lambda: t.train_epoch(first)))
            row.setdefault(f"{passes}_chosen", []).extend(sizes)
            add(f"{passes}_floor_s", floor_steps(t, promix_plan(sizes, batch, passes), ctx))
        log(f"  {model} {', '.join(f'{k} {v:.1f}' for k, v in times.items())}")
    row |= times
    # On a CPU the bf16 emulation can take minutes at full batch; a GPU takes the real one.
    if args.precision_batch:
        bf16_batch = args.precision_batch
    elif t.device.type == "cuda":
        bf16_batch = batch
    row |= precision_ratio(t, min(bf16_batch, batch))
    row |= view_times(t, batch)
    row["peak_rss_gb"] = peak_rss_gb()
    if t.device.type == "cuda":
        row["cuda_max_allocated_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return row


def view_times(t: Trainer, b: int, repeats: int = 10) -> dict:
    """Milliseconds per strong view of a batch, in each run.augment mode this device has."""
    x, out = t.images[:b], {"augment": t.cfg.run.augment}
    modes = ["grouped", "dense"] + (["graph"] if t.device.type == "cuda" else [])
    for mode in modes:
        render = strong_renderer(mode, t.device)
        g = torch.Generator(t.device).manual_seed(0)
        strong_view(x, generator=g, render=render)  # untimed: kernels, graph capture
        out[f"strong_view_{mode}_ms"] = 1e3 * clock(
            lambda g=g, render=render: [strong_view(x, generator=g, render=render)
                                        for _ in range(repeats)]
        ) / repeats
    return out


def precision_ratio(t: Trainer, b: int) -> dict:
    """fp32 vs bf16 autocast time of one floor warm-up step (both peers) at batch b."""
    out = {"bf16_floor_batch": b}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        ctx = autocast(t.device, dtype)
        floor_steps(t, [[[b], [b]]], ctx)  # untimed: kernel creation
        out[f"{name}_floor_step_s"] = floor_steps(t, [[[b], [b]]], ctx)
    out["bf16_speedup"] = out["fp32_floor_step_s"] / out["bf16_floor_step_s"]
    return out


def measure_memory(args, model: str) -> dict:
    """Full CIFAR-10 training set: selection pass over 50k and the first ProMix steps."""
    steps = args.memory_steps
    loaded = load_raw(DataConfig(dataset="cifar10", root=str(args.archive)))
    t = make_trainer(loaded, args, model, args.memory_batch, None)
    first = t.schedule.at(t.schedule.warmup)
    row = {"model": model, "batch": args.memory_batch, "n_train": len(t.labels),
           "steps": steps, "rss_after_setup_gb": peak_rss_gb()}
    if model == "small_cnn":
        row["select_s"] = clock(lambda: t.select(first))
    else:  # a ResNet-18 selection pass over 50k takes ~30 min here; CSS on random losses
        quota = class_quotas(t.labels, first.rho, t.num_classes)
        for peer in t.state.selection:
            peer.clean = class_small_loss(torch.rand(len(t.labels)), t.labels, quota)
    row["rss_after_select_gb"] = peak_rss_gb()
    full = Trainer.batches
    t.batches = lambda drop_last: itertools.islice(full(t, drop_last), steps)
    row["steps_s"] = clock(lambda: t.train_epoch(first))
    row["peak_rss_gb"] = peak_rss_gb()
    if t.device.type == "cuda":
        row["cuda_max_allocated_gb"] = torch.cuda.max_memory_allocated() / 2**30
    log(f"memory: {row}")
    return row


# ---------------------------------------------------------------------------- report


def derived(r: dict) -> dict:
    n, b, reps = r["n_train"], r["batch"], r["repeats"]
    out = {
        "warmup_ips": n * reps / r["warmup_s"],
        "warmup_efficiency": r["warmup_floor_s"] / r["warmup_s"],
        "select_ips": n * reps / r["select_s"],
        "select_efficiency": r["select_floor_s"] / r["select_s"],
    }
    for p in ("faithful", "efficient"):
        s = len(r[f"{p}_chosen"])  # steps timed, over all repeats
        out[f"{p}_step_ips"] = s * b / r[f"{p}_s"]
        out[f"{p}_step_efficiency"] = r[f"{p}_floor_s"] / r[f"{p}_s"]
        epoch = (r["select_s"] + r[f"{p}_s"] * (n // b) * reps / s) / reps  # one epoch over N
        floor = (r["select_floor_s"] + r[f"{p}_floor_s"] * (n // b) * reps / s) / reps
        out[f"{p}_epoch_ips"] = n / epoch
        out[f"{p}_epoch_efficiency"] = floor / epoch
        out[f"{p}_floor_epoch_ips"] = n / floor
        mixes = 4 if p == "faithful" else 2
        passes = sum(2 * b + mixes * k for step in r[f"{p}_chosen"] for k in step)  # images
        out[f"{p}_floor_gflops"] = passes * r["flops_per_pass"] / r[f"{p}_floor_s"] / 1e9
    out["efficient_speedup"] = out["efficient_epoch_ips"] / out["faithful_epoch_ips"]
    return out


def report(rows: list[dict], memory: list[dict], args, seconds: float) -> dict:
    lines = [f"{'':<24}" + "".join(f"{r['model']:>14}" for r in rows)]

    def line(label, key, fmt="{:.1f}"):
        lines.append(f"{label:<24}" + "".join(f"{fmt.format(r[key]):>14}" for r in rows))

    for r in rows:
        r |= derived(r)
    line("batch", "batch", "{}")
    line("warm-up img/s", "warmup_ips")
    line("  efficiency", "warmup_efficiency", "{:.2f}")
    line("selection img/s", "select_ips")
    line("  efficiency", "select_efficiency", "{:.2f}")
    for p in ("faithful", "efficient"):
        line(f"ProMix {p} img/s", f"{p}_epoch_ips", "{:.2f}")
        line("  floor img/s", f"{p}_floor_epoch_ips", "{:.2f}")
        line("  efficiency", f"{p}_epoch_efficiency", "{:.2f}")
        line("  steps only", f"{p}_step_efficiency", "{:.2f}")
        line("  floor GFLOP/s", f"{p}_floor_gflops", "{:.1f}")
    line("efficient speed-up", "efficient_speedup", "{:.2f}x")
    line("bf16 / fp32 speed", "bf16_speedup", "{:.2f}x")
    for mode in ("grouped", "dense", "graph"):
        if all(f"strong_view_{mode}_ms" in r for r in rows):
            line(f"strong view {mode} ms", f"strong_view_{mode}_ms", "{:.3g}")
    line("peak RSS GB", "peak_rss_gb", "{:.2f}")
    if all("cuda_max_allocated_gb" in r for r in rows):
        line("CUDA max allocated GB", "cuda_max_allocated_gb", "{:.2f}")
    print("\n".join(lines))
    for m in memory:
        select = f", selection {m['n_train'] / m['select_s']:.0f} img/s" if "select_s" in m else ""
        print(f"full CIFAR-10 ({m['n_train']} images, {m['model']}, batch {m['batch']}): peak "
              f"RSS {m['peak_rss_gb']:.2f} GB after the selection pass and {m['steps']} ProMix "
              f"steps{select}")
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": host.describe(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "seconds": round(seconds, 1),
        "reference_ips": REFERENCE_IPS,
        "target_efficiency": TARGET_EFFICIENCY,
        "models": rows,
        "memory": memory,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return result


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def child(args, what: str) -> dict:
    """Run one measurement in a fresh process (its own peak RSS) and return its JSON."""
    cmd = [sys.executable, __file__, "--child", what, *sys.argv[1:]]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archive", type=Path, default=CIFAR10_ARCHIVE)
    ap.add_argument("--out", type=Path,
                    default=ROOT / "benchmarks" / "results" / "throughput.json")
    ap.add_argument("--models", default="small_cnn,resnet18")
    ap.add_argument("--batch", default="", help="per model, e.g. resnet18=256")
    ap.add_argument("--steps", default="", help="timed ProMix steps per model, e.g. resnet18=4")
    ap.add_argument("--repeats", default="", help="timed repeats per model, e.g. resnet18=2")
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--compile", action="store_true", help="torch.compile the backbones")
    ap.add_argument("--augment", default="auto", choices=["auto", "grouped", "dense", "graph"],
                    help="run.augment: how the strong view runs")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--precision-batch", type=int, default=0,
                    help="batch of the fp32/bf16 floor comparison (default: 8 for ResNet-18 on "
                         "a CPU, where emulated bf16 is slow; else the training batch)")
    ap.add_argument("--memory-models", default="small_cnn", help="e.g. small_cnn,resnet18")
    ap.add_argument("--memory-batch", type=int, default=256)
    ap.add_argument("--memory-steps", type=int, default=3, help="0: skip the memory run")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    for key in ("batch", "steps", "repeats"):
        pairs = [kv.split("=") for kv in getattr(args, key).split(",") if kv]
        setattr(args, key, {k: int(v) for k, v in pairs})
    return args


def main(argv=None) -> None:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.archive.is_file():
        sys.exit(f"{args.archive} not found: pass --archive PATH/cifar-10-python.tar.gz")
    if args.child:
        memory = args.child.startswith("memory:")
        model = args.child.removeprefix("memory:")
        row = measure_memory(args, model) if memory else measure_model(args, model)
        print(json.dumps(row))
        return
    start = time.perf_counter()
    rows = [child(args, m) for m in args.models.split(",") if m]
    memory = [child(args, f"memory:{m}") for m in args.memory_models.split(",")
              if m and args.memory_steps > 0]
    report(rows, memory, args, time.perf_counter() - start)


if __name__ == "__main__":
    main()
