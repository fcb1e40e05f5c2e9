"""torchrun: a 2-process gloo job on this CPU through the real entry point (docs/distributed.md).

Tolerances. Given the same weights, the sharded selection pass is exact (tolerance 0): each rank
infers its slice with the same eval batches a single process uses, and the gathered (N, C)
logits are bitwise those of one process. A whole 2-rank run is not bitwise a 1-process run
with the same global batch, and cannot be: each rank draws its own augmentations and mixup /
FMix samples, BatchNorm normalizes over the rank's 32 samples instead of all 64, mixup partners
come from the rank's shard and LGA's cap is per shard. The weights part after the first step,
so the masks are compared by agreement (fraction of the N samples with the same decision):
at least 65% per peer and epoch. Two unrelated masks that each keep half of N = 200 agree on
50% ± 3.5%, so 65% is four standard deviations above chance; this machine measured 75-89%.
"""

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from promix import checkpoint
from promix.config import ConfigError, apply_overrides, load_preset
from promix.data.load import build_dataset
from promix.distributed import World, rank_seed, shard_bounds
from promix.runs import load_config, load_tensors, read_metrics
from promix.trainer import Trainer

# N = 200, global B = 64 (32 per rank), eval batches of 50 that split evenly into the 2 slices.
ARGS = ["--dataset=mnist5k", "--per_class=20", "--width=4", "--batch_size=64", "--epochs=4",
        "--warmup_epochs=2",
        "--progress=false", "--baseline=none", "--tau=0.9", "--eval_batch_size=50",
        "--device=cpu", "--keep_checkpoints=4"]
EPOCHS = range(4)
PROMIX_EPOCHS = (2, 3)


HOOKS = Path(__file__).with_name("hooks.py")  # promix's CLI with test callbacks installed


def launch(args, *, nproc, cwd, env=None, debug=None):
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    hooks = [f"--debug-dir={debug}"] if debug else []
    cmd = [sys.executable, *(launcher if nproc > 1 else []), str(HOOKS), *hooks, "train", *args]
    # PYTHONFAULTHANDLER: a rank that aborts (SIGABRT) prints where each of its threads was
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1", **(env or {})}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def train(out, name, debug, nproc):
    debug.mkdir()
    return launch([*ARGS, f"--out_dir={out}", f"--run.name={name}"], nproc=nproc, cwd=out,
                  debug=debug)


def failure(proc):
    """What a failed job printed: the end of stdout, and stderr (every rank's) up to 12,000."""
    return f"stdout:\n{proc.stdout[-2000:]}\nstderr:\n{proc.stderr[-12000:]}"


def dumps(debug, rank):
    return {e: json.loads((debug / f"rank{rank}-epoch{e:04d}.json").read_text()) for e in EPOCHS}


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    two = train(out, "two", out / "debug-two", 2)
    assert two.returncode == 0, failure(two)
    one = train(out, "one", out / "debug-one", 1)
    assert one.returncode == 0, failure(one)
    return out, two


@pytest.mark.slow
def test_two_ranks_finish_and_only_rank_0_writes(jobs):
    out, proc = jobs
    assert sorted(p.name for p in out.iterdir() if (p / "config.json").exists()) == ["one", "two"]
    assert proc.stdout.count("run directory:") == 1
    assert [m["epoch"] for m in read_metrics(out / "two")] == list(EPOCHS)
    assert (out / "two" / "model.safetensors").is_file()
    assert len(checkpoint.checkpoints(checkpoint.folder(out / "two"))) == 4


@pytest.mark.slow
def test_ranks_hold_the_same_weights_and_masks_after_every_epoch(jobs):
    out, _ = jobs
    rank0, rank1 = (dumps(out / "debug-two", r) for r in (0, 1))
    for e in EPOCHS:
        assert rank0[e]["size"] == rank1[e]["size"] == 2
        assert rank0[e]["weights"] == rank1[e]["weights"], e  # weights, BN buffers, priors
        assert rank0[e]["clean"] == rank1[e]["clean"], e
        assert rank0[e]["chosen"] == rank1[e]["chosen"], e
    assert len({rank0[e]["weights"] for e in EPOCHS}) == len(EPOCHS)  # and they did train


@pytest.mark.slow
def test_sharded_selection_equals_one_process_given_the_same_weights(jobs):
    """Tolerance 0: the epoch-e masks from the weights of checkpoint e-1, in one process."""
    out, _ = jobs
    run_dir = out / "two"
    cfg = load_config(run_dir)
    data = build_dataset(cfg.data)
    rank0 = dumps(out / "debug-two", 0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each rank ran
    try:
        for e in PROMIX_EPOCHS:
            trainer = Trainer(cfg, data)
            path = checkpoint.folder(run_dir) / f"ckpt-epoch{e - 1:04d}.json"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # 2 ranks' streams into 1 process: expected
                checkpoint.restore(trainer, *checkpoint.load(path))
            trainer.select(trainer.schedule.at(e))
            for k, peer in enumerate(trainer.state.selection):
                clean = peer.clean
                assert "".join("1" if b else "0" for b in clean.tolist()) == rank0[e]["clean"][k]
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_a_two_rank_run_resumes_bitwise(jobs):
    """Each rank's own random streams are in the checkpoint: resuming is exact here too."""
    out, _ = jobs
    copy = out / "two-resumed"
    shutil.copytree(out / "two", copy)
    for path in checkpoint.folder(copy).glob("ckpt-epoch0003.*"):
        path.unlink()  # as if killed during the last epoch
    (copy / "model.safetensors").unlink()
    proc = launch(["--resume", str(copy)], nproc=2, cwd=out)
    assert proc.returncode == 0, failure(proc)
    want, got = (load_tensors(d / "model.safetensors") for d in (out / "two", copy))
    assert want.keys() == got.keys()
    assert all(torch.equal(want[name], got[name]) for name in want)
    assert [m["epoch"] for m in read_metrics(copy)] == list(EPOCHS)


@pytest.mark.slow
def test_selection_masks_agree_with_a_single_process_run(jobs):
    out, _ = jobs
    two, one = dumps(out / "debug-two", 0), dumps(out / "debug-one", 0)
    assert all(one[e]["size"] == 1 for e in EPOCHS)
    for e in PROMIX_EPOCHS:
        for k in range(2):
            a, b = two[e]["clean"][k], one[e]["clean"][k]
            assert a.count("1") == b.count("1")  # the same class quotas
            agreement = sum(x == y for x, y in zip(a, b, strict=True)) / len(a)
            assert agreement >= 0.65, (e, k, agreement)


# ---------------------------------------------------------------------- no process group


@pytest.mark.parametrize("n, size, want", [
    (200, 2, [(0, 100), (100, 200)]),
    (7, 3, [(0, 3), (3, 5), (5, 7)]),
    (2, 4, [(0, 1), (1, 2), (2, 2), (2, 2)]),
    (64, 1, [(0, 64)]),
])
def test_shards_are_contiguous_and_cover_everything(n, size, want):
    assert [shard_bounds(n, size, r) for r in range(size)] == want


def test_each_rank_has_its_own_seed_and_rank_0_keeps_the_run_seed():
    seeds = [rank_seed(123, r) for r in range(8)]
    assert seeds[0] == 123 and len(set(seeds)) == 8
    assert all(0 <= s < 2**63 for s in seeds)


def test_a_single_process_world_changes_nothing():
    world = World()
    index = torch.arange(10)
    assert world.is_main and world.shard(index) is index
    assert world.shard_rows(index) is index and world.gather_rows(index, 10) is index
    assert world.average({"loss": 1.5}) == {"loss": 1.5}
    world.merge_chosen([torch.ones(3, dtype=torch.bool)])
    world.barrier()
    assert world.broadcast_text("runs/x") == "runs/x"


def test_a_rank_reads_its_slice_of_an_on_disk_cache_batch_by_batch(tmp_path):
    """The selection pass of a rank infers its slice of images cached on disk: the slice
    stays on disk (MappedImages), not one (N_r, C, H, W) read into memory."""
    import numpy as np

    from promix.data.mapped import MappedImages

    path = tmp_path / "cache.npy"
    np.save(path, np.arange(10 * 3 * 2 * 2, dtype=np.uint8).reshape(10, 3, 2, 2))
    images = MappedImages(np.load(path, mmap_mode="r"))
    part = World(rank=1, size=3).shard_rows(images)
    assert isinstance(part, MappedImages) and len(part) == 3  # rows 4, 5, 6 of 10
    assert torch.equal(part[0:3], images[4:7])


def test_a_batch_smaller_than_the_world_is_skipped_by_every_rank():
    assert World(rank=1, size=4).shard(torch.arange(3)) is None
    assert World(rank=1, size=4).shard(torch.arange(9)).tolist() == [3, 4]


def test_sync_bn_on_cpu_is_refused_before_any_collective():
    cfg = apply_overrides(load_preset("demo"), ARGS + ["--sync_bn=true"])
    with pytest.raises(ConfigError, match="needs CUDA"):
        Trainer(cfg, build_dataset(cfg.data), world=World(rank=0, size=2))


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.device_count() < 2,
                    reason="NCCL needs two CUDA devices here (one rank per GPU)")
@pytest.mark.parametrize("sync_bn", ["false", "true"])
def test_nccl_ranks_hold_the_same_weights(tmp_path, sync_bn):
    """The same job on two GPUs (NCCL), with and without SyncBatchNorm."""
    args = [a for a in ARGS if a != "--device=cpu"] + ["--device=cuda", f"--sync_bn={sync_bn}"]
    debug = tmp_path / "debug"
    debug.mkdir()
    proc = launch([*args, f"--out_dir={tmp_path}", "--run.name=nccl"], nproc=2, cwd=tmp_path,
                  debug=debug)
    assert proc.returncode == 0, failure(proc)
    rank0, rank1 = (dumps(debug, r) for r in (0, 1))
    for e in EPOCHS:
        assert rank0[e]["size"] == rank1[e]["size"] == 2
        assert rank0[e]["weights"] == rank1[e]["weights"], e
        assert rank0[e]["chosen"] == rank1[e]["chosen"], e
    assert len({rank0[e]["weights"] for e in EPOCHS}) == len(EPOCHS)
