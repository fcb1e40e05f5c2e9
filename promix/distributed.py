"""Many processes with torchrun: one World object tells the trainer its rank (docs/distributed.md).

What is sharded and what is gathered:
- Training: every rank draws the same global permutation (the shared data-order generator)
  and trains on its contiguous shard of each global batch of B; B stays what the config says.
- Gradients, BN running statistics and the four class priors are averaged over the ranks in
  one all-reduce per step, just before the optimizer's update (an optimizer step pre-hook).
  DistributedDataParallel is not used: ProMix runs 6 forward passes per peer before one
  backward, warm-up leaves the pseudo head without gradients (DDP then needs
  find_unused_parameters), and DDP would broadcast rank 0's BN buffers at each of the 6
  forwards and rename every parameter `module.*`. One flat all-reduce gives the same update.
- The selection pass: each rank infers its contiguous slice of the training set, and the
  (N, C) logits are gathered, so every rank selects the same global clean set.
- The per-sample chosen masks of an epoch are merged from the ranks' shards at its end.
- Per rank: augmentations, mixup/FMix draws (λ, μ, permutations within the shard), MHCS
  (per sample) and LGA, whose cap ⌊θ B_r⌋ - |L_k| counts the rank's shard B_r = B / W.

Without torchrun `World()` is a single process and every method is a no-op.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist

from .config import ConfigError
from .data.mapped import MappedImages
from .hardware import resolve_device
from .inference import PeerOutputs
from .step import StepRandom

_WORLD = None  # set by init(); read by current()


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank r's own streams; rank 0 keeps `seed`, so one process is a plain run."""
    if rank == 0:
        return seed
    return int(np.random.SeedSequence([seed, rank]).generate_state(1, np.uint64)[0] >> 1)


def shard_bounds(n: int, size: int, rank: int) -> tuple[int, int]:
    """[lo, hi) of rank's contiguous slice of n items; sizes differ by at most one."""
    base, extra = divmod(n, size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (rank < extra)


@dataclass
class World:
    """This process's place among the torchrun processes (rank 0 of 1 without torchrun)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))  # collectives
    _mine: list = field(default_factory=list, repr=False)  # this epoch's shards (for masks)

    @property
    def is_main(self) -> bool:
        """Only rank 0 writes files and prints."""
        return self.rank == 0

    # ------------------------------------------------------------------ training batches

    def shard(self, index: torch.Tensor) -> torch.Tensor | None:
        """This rank's contiguous part of a global batch of indices (B,) -> (B_r,).

        None when the batch has fewer samples than ranks (the warm-up's last partial batch),
        which every rank then skips.
        """
        if self.size == 1:
            return index
        if len(index) < self.size:
            return None
        lo, hi = shard_bounds(len(index), self.size, self.rank)
        self._mine.append(index[lo:hi])
        return index[lo:hi]

    def merge_chosen(self, masks: list[torch.Tensor]) -> None:
        """Each rank set masks[k][i] for its own shards; afterwards all ranks hold all of them."""
        if self.size == 1:
            return
        n = len(masks[0])
        touched = torch.zeros(n, dtype=torch.int32, device=masks[0].device)
        for index in self._mine:
            touched[index] = 1
        self._mine.clear()
        mine = torch.stack([touched] + [m.int() * touched for m in masks])  # (1 + K, N)
        dist.all_reduce(mine)
        for k, mask in enumerate(masks):
            mask.copy_(torch.where(mine[0] > 0, mine[k + 1] > 0, mask))

    def average(self, values: dict[str, float]) -> dict[str, float]:
        """Mean of per-rank scalars (the epoch's loss terms) with the same keys on every rank."""
        if self.size == 1 or not values:
            return values
        names = sorted(values)
        t = torch.tensor([values[k] for k in names], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return dict(zip(names, (t / self.size).tolist(), strict=True))

    # ------------------------------------------------------------------ the selection pass

    def shard_rows(self, x: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous slice of the training set (N, ...) -> (N_r, ...); images
        cached on disk (MappedImages) stay there, read batch by batch as one process does."""
        if self.size == 1:
            return x
        lo, hi = shard_bounds(len(x), self.size, self.rank)
        return x.subset(slice(lo, hi)) if isinstance(x, MappedImages) else x[lo:hi]

    def gather_rows(self, part: torch.Tensor, n: int) -> torch.Tensor:
        """Inverse of shard_rows: every rank's slice, concatenated in rank order. -> (n, ...)"""
        if self.size == 1:
            return part
        sizes = [hi - lo for lo, hi in (shard_bounds(n, self.size, r) for r in range(self.size))]
        padded = part.new_zeros((max(sizes), *part.shape[1:]))
        padded[: len(part)] = part
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded.contiguous())
        return torch.cat([p[:s] for p, s in zip(parts, sizes, strict=True)])

    def gather_outputs(self, out: PeerOutputs, n: int) -> PeerOutputs:
        return PeerOutputs(self.gather_rows(out.logits, n), self.gather_rows(out.pseudo_logits, n))

    # ------------------------------------------------------------------ small collectives

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def gather_bytes(self, data: bytes) -> list[bytes]:
        """Every rank's bytes, on every rank, in rank order."""
        if self.size == 1:
            return [data]
        length = torch.tensor([len(data)], device=self.device)
        lengths = [torch.zeros_like(length) for _ in range(self.size)]
        dist.all_gather(lengths, length)
        longest = int(max(lengths))
        buf = torch.zeros(longest, dtype=torch.uint8, device=self.device)
        if data:
            buf[: len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        parts = [torch.empty_like(buf) for _ in range(self.size)]
        dist.all_gather(parts, buf)
        return [bytes(p[: int(n)].cpu().numpy()) for p, n in zip(parts, lengths, strict=True)]

    def broadcast_text(self, text: str) -> str:
        """Rank 0's text on every rank (a run directory's path, a checkpoint's name)."""
        return self.gather_bytes(text.encode())[0].decode()

    # ------------------------------------------------------------------ one step

    def sync_step(self, params: list[torch.Tensor], tensors: list[torch.Tensor]) -> None:
        """Average the gradients of params and the values of tensors over the ranks, in place.

        One flat all-reduce. A gradient that is None on every rank stays None, so SGD skips
        that parameter as it would in one process (the pseudo head during warm-up).
        """
        device = params[0].device
        flags = torch.tensor([p.grad is not None for p in params], dtype=torch.float32,
                             device=device)
        pieces = [p.grad.reshape(-1).float() if p.grad is not None
                  else torch.zeros(p.numel(), device=device) for p in params]
        flat = torch.cat(pieces + [t.reshape(-1).float() for t in tensors] + [flags])
        dist.all_reduce(flat)
        flat /= self.size
        chunks = flat.split([p.numel() for p in params] + [t.numel() for t in tensors]
                            + [len(params)])
        for p, chunk, present in zip(params, chunks, chunks[-1].tolist(), strict=False):
            if present == 0:
                continue
            if p.grad is None:
                p.grad = chunk.view_as(p).to(p.dtype).clone()
            else:
                p.grad.copy_(chunk.view_as(p))
        for t, chunk in zip(tensors, chunks[len(params):-1], strict=True):
            t.copy_(chunk.view_as(t))

    def broadcast_from_main(self, tensors: list[torch.Tensor]) -> None:
        """Rank 0's values of floating tensors (initial weights and BN buffers) everywhere."""
        if self.size == 1 or not tensors:
            return
        flat = torch.cat([t.detach().reshape(-1).float() for t in tensors])
        dist.broadcast(flat, 0)
        for t, chunk in zip(tensors, flat.split([t.numel() for t in tensors]), strict=True):
            t.data.copy_(chunk.view_as(t))


def init(device: str = "auto") -> World:
    """The World of this process: joins the torchrun job on first call (WORLD_SIZE > 1).

    Reads torchrun's RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT. Backend:
    NCCL when training on CUDA (one GPU per process, cuda:LOCAL_RANK), gloo on CPUs.
    """
    global _WORLD
    if _WORLD is not None:
        return _WORLD
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        _WORLD = World()
        return _WORLD
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    _WORLD = World(rank=rank, size=size, local_rank=local, device=dev)
    return _WORLD


def current() -> World:
    """The World set by init(), or a single process."""
    return _WORLD if _WORLD is not None else World()


def shutdown(finished: bool = True) -> None:
    """Leave the torchrun job (a no-op in one process).

    After a finished run every rank first waits at a barrier, so no rank tears down its gloo
    connections while a peer is still using them: rank 1 and up are done right after the last
    collective, while rank 0 still writes the model and the report. After an error the barrier
    is skipped (the peers may never reach it); torchrun ends them once this rank exits.
    """
    global _WORLD
    if dist.is_available() and dist.is_initialized():
        if finished:
            dist.barrier()
        dist.destroy_process_group()
    _WORLD = None


def join(world: World, state, *, seed: int, sync_bn: bool, device: torch.device) -> None:
    """Make a fresh TrainState one rank of `world` (a no-op in one process): the rank's own
    seed streams, rank 0's initial weights, SyncBatchNorm if asked, and the per-step
    all-reduce hooked before the optimizer's update."""
    if world.size == 1:
        return
    if sync_bn:
        if device.type != "cuda":
            raise ConfigError("--sync_bn=true needs CUDA (PyTorch's SyncBatchNorm has no CPU "
                              "kernel); drop it or train on GPUs")
        state.nets = [torch.nn.SyncBatchNorm.convert_sync_batchnorm(n) for n in state.nets]
    own = rank_seed(seed, world.rank)
    random.seed(own)
    np.random.seed(own % 2**32)
    torch.manual_seed(own)
    state.random = StepRandom(np.random.default_rng(own), torch.Generator(device).manual_seed(own))
    params, synced = state.parameters(), state.synced_tensors()
    world.broadcast_from_main(params + synced)

    def sync(optimizer, args, kwargs):  # after backward, before SGD's update
        world.sync_step(params, synced)

    state.optimizer.register_step_pre_hook(sync)
