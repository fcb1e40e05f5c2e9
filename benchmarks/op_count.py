"""How many operators a ProMix step launches, against its compute floor, and who launches them.

    python benchmarks/op_count.py [--archive PATH] [--batch 256] [--profile FILE.txt]

On a GPU a small network's kernels take microseconds, so a step costs about its operator
count times the per-operator launch overhead; on a CPU the same count hardly matters. This
counts the top-level ATen operators (torch.profiler) of one real small_cnn ProMix step
(faithful passes, views included), of the floor step with the same pass sizes
(benchmarks/throughput.py), and of the weak and strong views alone. Runs on the CPU: the
operator count does not depend on the device. Prints the counts and writes
benchmarks/results/op_count.json. With --profile, also profiles one step on the trainer's
device (CUDA when there is one, with run.augment's default) and writes torch.profiler's table
of the operators by self CPU time, and the step's wall time against its GPU kernel time.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
import throughput  # noqa: E402

from promix.config import DataConfig  # noqa: E402
from promix.data.augment import strong_view, weak_view  # noqa: E402
from promix.data.load import load_raw  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def top_level_ops(fn) -> int:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sum(1 for e in prof.events() if e.name.startswith("aten::") and e.cpu_parent is None)


def profile_step(t, sched, path: Path) -> None:
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if t.device.type == "cuda"
                                           else [])
    t.train_epoch(sched)  # untimed: first-call setup
    throughput.sync()
    with profile(activities=activities) as prof:
        wall = throughput.clock(lambda: t.train_epoch(sched))
    events = prof.key_averages()
    gpu = sum(e.self_device_time_total for e in events) / 1e6 if len(activities) > 1 else 0.0
    head = (f"one ProMix step on {t.device} ({t.cfg.run.augment} strong view, batch "
            f"{t.batch_size}): {wall * 1e3:.1f} ms wall (profiled), GPU kernels "
            f"{gpu * 1e3:.1f} ms\n")
    path.write_text(head + events.table(sort_by="self_cpu_time_total", row_limit=30) + "\n")
    print(head)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archive", type=Path, default=throughput.CIFAR10_ARCHIVE)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/op_count.json")
    ap.add_argument("--profile", type=Path, help="also write a profile of one step here")
    args = ap.parse_args()
    args.precision, args.compile, args.device, args.augment = "fp32", False, "auto", "auto"
    loaded = load_raw(DataConfig(dataset="cifar10", root=str(args.archive)))
    t = throughput.make_trainer(loaded, args, "small_cnn", args.batch, args.batch // 5)
    first = t.schedule.at(t.schedule.warmup)
    t.select(first)
    all_batches = t.batches
    t.batches = lambda drop_last: itertools.islice(all_batches(drop_last), 1)  # one step
    t.train_epoch(first)  # untimed: first-call setup
    with throughput.chosen_sizes() as sizes:
        step = top_level_ops(lambda: t.train_epoch(first))
    plan = throughput.promix_plan(sizes, args.batch, "faithful")
    floor = top_level_ops(lambda: throughput.floor_steps(t, plan, contextlib.nullcontext()))
    if args.profile:
        profile_step(t, first, args.profile)
    x, g = t.images[: args.batch], torch.Generator(t.device).manual_seed(0)
    strong = top_level_ops(lambda: strong_view(x, generator=g, flip=True, render=t.render))
    weak = top_level_ops(lambda: weak_view(x, generator=g, flip=True))
    row = {"batch": args.batch, "chosen": sizes, "step": step, "floor": floor,
           "strong_view": strong, "weak_view": weak, "rest_of_step": step - strong - weak,
           "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")}
    print(f"one ProMix step: {step} top-level ATen ops (floor: {floor}); the strong view "
          f"{strong}, the weak view {weak}, losses/mixing/decisions/passes {step - strong - weak}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(row, indent=1) + "\n")


if __name__ == "__main__":
    main()
