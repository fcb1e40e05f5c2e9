"""The two heads of a ProMix peer on one backbone pass (SPEC §2)."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn


class Heads(NamedTuple):
    logits: torch.Tensor  # (B, C) primary head h
    pseudo_logits: torch.Tensor  # (B, C) auxiliary pseudo head h_AP


class TwoHeadNet(nn.Module):
    """backbone -> feature φ -> (linear: z, pseudo_linear: u). `forward` always returns Heads."""

    def __init__(self, backbone: nn.Module, num_classes: int):
        super().__init__()
        self.backbone = backbone
        self.linear = nn.Linear(backbone.feature_dim, num_classes)
        self.pseudo_linear = nn.Linear(backbone.feature_dim, num_classes)

    def forward(self, x: torch.Tensor) -> Heads:
        phi = self.backbone(x)
        return Heads(self.linear(phi), self.pseudo_linear(phi))
