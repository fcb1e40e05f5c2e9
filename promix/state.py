"""The training state: one object owns what training changes (`TrainState`), and the names
its tensors have on disk (`peer1.backbone...`, `priors.clean`, `clean1`), written here only.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from .debias import PriorState
from .step import StepRandom


def peer_prefix(k: int) -> str:
    """The key prefix of peer k (0-based) in a tensor file: 'peer1.', 'peer2.'."""
    return f"peer{k + 1}."


def peer_tensors(nets: list[torch.nn.Module]) -> dict[str, torch.Tensor]:
    """Every peer's state_dict (weights and BN buffers) under its prefix."""
    return {peer_prefix(k) + name: t for k, net in enumerate(nets)
            for name, t in net.state_dict().items()}


def load_peer_tensors(nets: list[torch.nn.Module], tensors: dict[str, torch.Tensor]) -> None:
    """Load peer_tensors' output into nets (strict: a missing or extra key is an error)."""
    for k, net in enumerate(nets):
        net.load_state_dict(_strip(tensors, peer_prefix(k)))


def load_peers(build: Callable[[], torch.nn.Module], tensors: dict[str, torch.Tensor]) -> list:
    """As many nets from `build()` as the tensors hold peers, with their weights loaded."""
    count = 0
    while any(name.startswith(peer_prefix(count)) for name in tensors):
        count += 1
    if count == 0:
        raise KeyError("no peer weights (peer1.*) in the file")
    nets = [build() for _ in range(count)]
    load_peer_tensors(nets, tensors)
    return nets


def _strip(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {n[len(prefix):]: t for n, t in tensors.items() if n.startswith(prefix)}


@dataclass
class PeerSelection:
    """One peer's selection record over the training set: three (N,) bool masks, and the
    running sum behind the probabilities the label-issue count is taken from."""

    clean: torch.Tensor  # CSS set s_k of the last selection pass (SPEC §5)
    selected: torch.Tensor  # CSS ∪ MHCS of the last selection pass: "selected as clean"
    chosen: torch.Tensor  # each sample's last step-level L_k (CSS ∪ MHCS ∪ LGA, §6.3-6.5)
    # (N, C) fp32 sum of the selection passes' probabilities from the run's middle epoch on,
    # and how many passes it holds (0-d int64): the flags' count (`late_probs`, api.py)
    late_sum: torch.Tensor
    late_passes: torch.Tensor

    @classmethod
    def everything(cls, n: int, num_classes: int, device) -> PeerSelection:
        """Before the first selection pass every sample counts as clean."""
        ones = torch.ones(n, dtype=torch.bool, device=device)
        return cls(ones, ones.clone(), ones.clone(),
                   torch.zeros(n, num_classes, device=device),
                   torch.zeros((), dtype=torch.int64, device=device))

    def add_late(self, probs: torch.Tensor) -> None:
        """Count one selection pass's probabilities (N, C) in the late average."""
        self.late_sum += probs.to(self.late_sum)
        self.late_passes += 1

    def late_probs(self, final: torch.Tensor) -> torch.Tensor:
        """The mean of the late passes' probabilities and the final ones (N, C): the
        probabilities averaged over the second half of training."""
        return (self.late_sum + final.to(self.late_sum)) / (self.late_passes + 1)


@dataclass
class TrainState:
    """Everything a run changes while it trains, in one place. Checkpoints, model files and
    the distributed sync go through `state_dict`/`load_state_dict`, `model_tensors` and
    `synced_tensors`; nothing else reads or rewrites these fields from outside the trainer."""

    nets: list[torch.nn.Module]  # the peers (one for cross-entropy)
    optimizer: torch.optim.Optimizer  # one param group per peer
    priors: PriorState  # class priors of each peer (debias.py)
    selection: list[PeerSelection]  # one record per peer
    random: StepRandom  # the step's draws: mixup/FMix λ, augmentations
    order: torch.Generator  # the data order (CPU), shared by every rank
    history: list[dict] = field(default_factory=list)  # one record per finished epoch

    # ------------------------------------------------------------------ files

    def model_tensors(self) -> dict[str, torch.Tensor]:
        """What model.safetensors holds: the peers' weights and BN buffers, and the priors."""
        return peer_tensors(self.nets) | {f"priors.{name}": t
                                          for name, t in self.priors.state_dict().items()}

    def state_dict(self) -> dict:
        """Tensors by name, plus "optimizer" (hyperparameters, non-tensor state) and "history"
        as JSON-able values. RNG streams are separate (`rng_state`): they are per process."""
        out = self.model_tensors()
        optim = self.optimizer.state_dict()
        extra: dict[str, dict] = {}
        for i, entry in optim["state"].items():
            for key, value in entry.items():
                if torch.is_tensor(value):
                    out[f"optim.{i}.{key}"] = value
                else:
                    extra.setdefault(str(i), {})[key] = value
        for k, peer in enumerate(self.selection, 1):
            out |= {f"{name}{k}": getattr(peer, name).to(torch.uint8) for name in MASKS}
            out |= {f"late_sum{k}": peer.late_sum, f"late_passes{k}": peer.late_passes}
        out["optimizer"] = {"param_groups": optim["param_groups"], "state": extra}
        out["history"] = list(self.history)
        return out

    def load_state_dict(self, state: dict) -> None:
        """The inverse of state_dict, into a state built for the same config and data."""
        load_peer_tensors(self.nets, state)
        saved = state["optimizer"]
        optim: dict[int, dict] = {int(i): dict(v) for i, v in saved["state"].items()}
        for name, t in state.items():
            if name.startswith("optim."):
                _, i, key = name.split(".", 2)
                optim.setdefault(int(i), {})[key] = t
        self.optimizer.load_state_dict({"state": optim, "param_groups": saved["param_groups"]})
        self.priors.load_state_dict(_strip(state, "priors."))
        for k, peer in enumerate(self.selection, 1):
            for name in MASKS:
                getattr(peer, name).copy_(state[f"{name}{k}"].bool())
            if f"late_sum{k}" in state:  # older checkpoints lack it: an average of fewer passes
                peer.late_sum.copy_(state[f"late_sum{k}"])
                peer.late_passes.copy_(state[f"late_passes{k}"])
        self.history = list(state["history"])

    # ------------------------------------------------------------------ random streams

    def rng_state(self) -> tuple[dict[str, torch.Tensor], dict]:
        """Every random stream of this process: Python, NumPy, torch (CPU, CUDA), the step's
        NumPy and torch generators and the data order. (tensors, JSON-able)."""
        version, key, gauss = random.getstate()
        legacy = np.random.get_state(legacy=False)
        legacy["state"]["key"] = legacy["state"]["key"].tolist()
        tensors = {"torch": torch.get_rng_state(), "step": self.random.generator.get_state(),
                   "order": self.order.get_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            tensors["cuda"] = torch.cuda.get_rng_state()
        state = {"python": [version, list(key), gauss], "numpy": legacy,
                 "step": self.random.rng.bit_generator.state}
        return tensors, state

    def load_rng_state(self, tensors: dict[str, torch.Tensor], state: dict) -> None:
        version, key, gauss = state["python"]
        random.setstate((version, tuple(key), gauss))
        legacy = dict(state["numpy"], state=dict(state["numpy"]["state"]))
        legacy["state"]["key"] = np.array(legacy["state"]["key"], dtype=np.uint32)
        np.random.set_state(legacy)
        self.random.rng.bit_generator.state = state["step"]
        torch.set_rng_state(tensors["torch"])
        self.random.generator.set_state(tensors["step"])
        self.order.set_state(tensors["order"])
        if "cuda" in tensors and torch.cuda.is_available():
            torch.cuda.set_rng_state(tensors["cuda"])

    # ------------------------------------------------------------------ many processes

    def parameters(self) -> list[torch.Tensor]:
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    def synced_tensors(self) -> list[torch.Tensor]:
        """What every rank must hold alike besides the weights: float BN buffers, priors."""
        buffers = [b for net in self.nets for b in net.buffers() if b.is_floating_point()]
        return buffers + [self.priors.clean, self.priors.unclean]


MASKS = ("clean", "chosen", "selected")  # PeerSelection's masks, as `clean1`, `chosen2`...
