"""Crash-safe checkpoints: everything needed to continue a run exactly (docs/resume.md).

A checkpoint is a file pair in RUN_DIR/checkpoints:
    ckpt-epoch0007.safetensors   tensors: both peers (weights and BN buffers), SGD momentum,
                                 class priors, CSS/chosen masks, noisy labels, torch RNG states
    ckpt-epoch0007.json          the rest: epoch, schedule position, Python/NumPy RNG states,
                                 optimizer hyperparameters, history, config; and the SHA-256 of
                                 the tensor file's bytes together with that state
Each file is written to a temporary name, fsynced and renamed; the JSON goes last, so a
checkpoint without one is incomplete. Loading parses safetensors and JSON only (no pickle,
no code), checks the SHA-256 and falls back to the previous good checkpoint with a warning.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import warnings
from pathlib import Path

import torch
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes

from . import runs
from .config import (
    Config,
    ConfigError,
    apply_overrides,
    flatten,
    leaves,
    override_pairs,
    resolve_key,
    to_dict,
)

FORMAT = 1
NAME = re.compile(r"ckpt-epoch(\d+)\.json$")
# Fields --resume may change: none of them touches the training math or the data.
HARMLESS = ("run.resume", "run.progress", "run.checkpoint_every", "run.keep_checkpoints",
            "run.eval_batch_size", "run.out_dir", "run.name")


class CheckpointError(ConfigError):
    """A run cannot be resumed as asked; the message says why and what to do."""


def folder(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def due(cfg: Config, epoch: int) -> bool:
    """A checkpoint after every `checkpoint_every` epochs and after the last one."""
    every = cfg.run.checkpoint_every
    return every > 0 and ((epoch + 1) % every == 0 or epoch + 1 == cfg.schedule.epochs)


# ---------------------------------------------------------------------- capture and restore


def capture(trainer, epoch: int) -> tuple[dict[str, torch.Tensor], dict]:
    """The trainer's state after `epoch`: (tensors, JSON-able state), this rank's RNG only."""
    train = trainer.state.state_dict()
    tensors = {name: t for name, t in train.items() if torch.is_tensor(t)}
    tensors["noisy_labels"] = trainer.labels
    state = {
        "format": FORMAT,
        "epoch": epoch,
        "schedule": dataclasses.asdict(trainer.schedule.at(epoch)),
        "optimizer": train["optimizer"],
        "history": train["history"],
        "config": to_dict(trainer.cfg),
        "world_size": trainer.world.size,
    }
    return tensors, state


def restore(trainer, tensors: dict[str, torch.Tensor], state: dict) -> int:
    """Load a captured state into a freshly built Trainer; returns the next epoch to train."""
    labels = tensors["noisy_labels"]
    mine = trainer.labels.cpu()
    if labels.shape != mine.shape or not torch.equal(labels, mine):
        differ = int((labels != mine).sum()) if labels.shape == mine.shape else "all"
        raise CheckpointError(
            f"the rebuilt dataset's noisy labels differ from the checkpoint's ({differ} of "
            f"{len(labels)}): the data or its noise settings changed since the run started; "
            "restore them, or start a new run")
    trainer.state.load_state_dict(
        {name: t for name, t in tensors.items() if not name.startswith("rng.")}
        | {"optimizer": state["optimizer"], "history": state["history"]})
    restore_rng(trainer, tensors, state)
    return state["epoch"] + 1


def restore_rng(trainer, tensors: dict[str, torch.Tensor], state: dict) -> None:
    """This rank's random streams from a checkpoint (rank r's, or only the shared data order
    when the checkpoint had fewer processes)."""
    rank = trainer.world.rank
    if state["world_size"] != trainer.world.size:
        warnings.warn(f"the checkpoint was written by {state['world_size']} processes and this "
                      f"run has {trainer.world.size}: training continues, but its random "
                      "streams differ from an uninterrupted run's", stacklevel=2)
    if rank >= state["world_size"]:
        trainer.state.order.set_state(tensors["rng.rank0.order"])  # the data order is shared
        return
    prefix = f"rng.rank{rank}."
    trainer.state.load_rng_state({n[len(prefix):]: t for n, t in tensors.items()
                                  if n.startswith(prefix)}, state["rng"][rank])


# ---------------------------------------------------------------------- files


def save(run_dir: Path, trainer, epoch: int) -> Path | None:
    """Write the checkpoint of `epoch` (every rank calls this; rank 0 writes) and keep the
    newest `keep_checkpoints`. Returns the JSON's path on rank 0."""
    world = trainer.world
    tensors, state = capture(trainer, epoch)
    rng_tensors, rng_state = trainer.state.rng_state()
    states = [json.loads(b) for b in world.gather_bytes(json.dumps(rng_state).encode())]
    for name, t in rng_tensors.items():
        for r, data in enumerate(world.gather_bytes(t.cpu().numpy().tobytes())):
            tensors[f"rng.rank{r}.{name}"] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    state["rng"] = states
    if not world.is_main:
        return None
    out = folder(run_dir)
    out.mkdir(exist_ok=True)
    for tmp in out.glob("*.tmp"):
        tmp.unlink()
    stem = f"ckpt-epoch{epoch:04d}"
    payload = save_bytes({k: v.detach().contiguous().cpu() for k, v in tensors.items()})
    _write_atomic(out / f"{stem}.safetensors", payload)
    sidecar = {"sha256": _digest(payload, state), "tensors": f"{stem}.safetensors",
               "state": state}
    _write_atomic(out / f"{stem}.json", (json.dumps(sidecar) + "\n").encode())
    prune(out, max(trainer.cfg.run.keep_checkpoints, 1))
    return out / f"{stem}.json"


def load(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """One checkpoint by its JSON path; CheckpointError if it is incomplete or corrupt."""
    path = Path(path)
    try:
        sidecar = json.loads(path.read_text())
        payload = (path.parent / sidecar["tensors"]).read_bytes()
        state = sidecar["state"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path.name}: unreadable ({err})") from err
    if _digest(payload, state) != sidecar["sha256"]:
        raise CheckpointError(f"{path.name}: checksum mismatch (truncated or corrupted)")
    if state.get("format") != FORMAT:
        raise CheckpointError(f"{path.name}: format {state.get('format')}, expected {FORMAT}")
    return load_bytes(payload), state


def latest(run_dir: Path) -> tuple[Path, dict[str, torch.Tensor], dict] | None:
    """The newest good checkpoint of a run (None if there is none); each bad one is skipped
    with a warning that names it."""
    for path in checkpoints(folder(run_dir))[::-1]:
        try:
            return (path, *load(path))
        except CheckpointError as err:
            warnings.warn(f"skipping checkpoint {err}; trying the previous one", stacklevel=2)
    return None


def checkpoints(out: Path) -> list[Path]:
    """The JSON files of a checkpoint folder, oldest first."""
    if not out.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in out.iterdir() if (m := NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def prune(out: Path, keep: int) -> None:
    for path in checkpoints(out)[:-keep]:
        path.unlink()  # the JSON first: what is left is incomplete, never mistaken for good
        path.with_suffix(".safetensors").unlink(missing_ok=True)
    good = {p.with_suffix(".safetensors").name for p in checkpoints(out)}
    for orphan in out.glob("ckpt-epoch*.safetensors"):
        if orphan.name not in good:
            orphan.unlink()


def _digest(payload: bytes, state: dict) -> str:
    h = hashlib.sha256(payload)
    h.update(json.dumps(state, sort_keys=True).encode())
    return h.hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    """tmp -> fsync -> rename -> fsync the folder: after a crash the file is whole or absent."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------- resume


def resume_config(run_dir: str | Path, overrides: list[str]) -> Config:
    """The config of a run to continue, with only HARMLESS overrides allowed."""
    cfg = runs.load_config(run_dir)
    for key, _ in override_pairs(overrides):
        if resolve_key(cfg, key) not in HARMLESS:
            raise ConfigError(
                f"--resume continues {run_dir} with its own config; '{key}' cannot change "
                f"(it would change the run or its data). Allowed: {', '.join(HARMLESS[1:])}")
    apply_overrides(cfg, overrides)
    cfg.run.resume = str(run_dir)
    return cfg


def resume(trainer, run_dir: Path) -> int:
    """Load the run's last good checkpoint into a fresh Trainer (every rank) and return the
    epoch to start from; 0, with a warning, when there is none."""
    world = trainer.world
    found = latest(run_dir) if world.is_main else None
    name = world.broadcast_text(found[0].name if found else "")
    if not name:
        warnings.warn(f"{run_dir} has no good checkpoint: training from epoch 0", stacklevel=2)
        return 0
    if found:
        _, tensors, state = found
    else:
        tensors, state = load(folder(run_dir) / name)
    changed = _changed(trainer.cfg, state["config"])
    if changed:
        raise CheckpointError(f"the config differs from the checkpoint's in {', '.join(changed)}"
                              f"; only {', '.join(HARMLESS[1:])} may change on resume")
    return restore(trainer, tensors, state)


def _changed(cfg: Config, saved: dict) -> list[str]:
    mine = leaves(cfg)
    flat = dict(flatten(saved))
    return sorted(path for path, (owner, f) in mine.items()
                  if path not in HARMLESS and path in flat and flat[path] != getattr(owner, f.name))

