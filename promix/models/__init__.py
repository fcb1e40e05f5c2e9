"""Backbones by name, each wrapped with the two ProMix heads (`TwoHeadNet`).

A backbone is any module mapping images (B, C, H, W) to features (B, D) and exposing
`feature_dim`; it knows nothing about the heads.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

from .heads import Heads, TwoHeadNet
from .resnet import preact_resnet18, resnet18
from .small_cnn import small_cnn

BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "resnet18": resnet18,
    "preact_resnet18": preact_resnet18,
    "small_cnn": small_cnn,
}


def create_model(name: str, *, num_classes: int, in_channels: int = 3, **kwargs) -> TwoHeadNet:
    """A backbone from the registry with a primary and a pseudo head of `num_classes` each."""
    if name not in BACKBONES:
        raise ValueError(f"unknown model '{name}'; registered: {', '.join(sorted(BACKBONES))}")
    backbone = BACKBONES[name](in_channels=in_channels, **kwargs)
    return TwoHeadNet(backbone, num_classes)


__all__ = ["BACKBONES", "Heads", "TwoHeadNet", "create_model"]
