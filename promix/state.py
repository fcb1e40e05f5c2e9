"""The training state's names on disk: how the peers' tensors are keyed in model.safetensors
and in checkpoints (`peer1.backbone...`, `peer2....`, `priors.clean`). Written here only."""

from __future__ import annotations

from collections.abc import Callable

import torch


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
