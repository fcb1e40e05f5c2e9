"""Backbones by name, each wrapped with the two ProMix heads (`TwoHeadNet`).

A backbone is any module mapping images (B, C, H, W) to features (B, D) and exposing
`feature_dim`; it knows nothing about the heads. Names are the registry's (`resnet18`,
`preact_resnet18`, `small_cnn`) or `timm:NAME` for any timm model (timm_backbone.py).
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

from .heads import Heads, TwoHeadNet
from .resnet import preact_resnet18, resnet18
from .small_cnn import small_cnn
from .timm_backbone import is_timm, timm_backbone

BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "resnet18": resnet18,
    "preact_resnet18": preact_resnet18,
    "small_cnn": small_cnn,
}


def create_model(name: str, *, num_classes: int, in_channels: int = 3, **kwargs) -> TwoHeadNet:
    """A backbone from the registry, or `timm:NAME`, with a primary and a pseudo head of
    `num_classes` each. kwargs: the backbone's (small_cnn: width; timm: pretrained,
    pretrained_file)."""
    if is_timm(name):
        backbone = timm_backbone(name, in_channels=in_channels, **kwargs)
        return TwoHeadNet(backbone, num_classes)
    if name not in BACKBONES:
        raise ValueError(f"unknown model '{name}'; registered: {', '.join(sorted(BACKBONES))}"
                         " or timm:NAME")
    backbone = BACKBONES[name](in_channels=in_channels, **kwargs)
    return TwoHeadNet(backbone, num_classes)


def param_groups(net: TwoHeadNet, backbone_lr_scale: float = 1.0) -> list[dict]:
    """One peer's optimizer groups: the backbone at lr * backbone_lr_scale, the two heads at
    lr (`lr_scale` is read by the trainer when it sets the epoch's lr); a single group when
    the scale is 1. Frozen parameters (requires_grad False) are left out."""
    if backbone_lr_scale == 1.0:
        return [{"params": [p for p in net.parameters() if p.requires_grad], "lr_scale": 1.0}]
    backbone = [p for p in net.backbone.parameters() if p.requires_grad]
    heads = [p for n, p in net.named_parameters() if not n.startswith("backbone.")]
    groups = [{"params": heads, "lr_scale": 1.0}]
    if backbone:
        groups.insert(0, {"params": backbone, "lr_scale": backbone_lr_scale})
    return groups


__all__ = ["BACKBONES", "Heads", "TwoHeadNet", "create_model", "param_groups"]
