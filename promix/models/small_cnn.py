"""A small fast CNN for CPUs and small images: three conv-BN-ReLU-pool stages, widths w-2w-4w."""

from __future__ import annotations

import torch.nn as nn


class SmallCNN(nn.Module):
    def __init__(self, in_channels: int = 3, width: int = 32):
        super().__init__()
        layers, c = [], in_channels
        for out in (width, 2 * width, 4 * width):
            layers += [
                nn.Conv2d(c, out, 3, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            c = out
        layers += [
            nn.Conv2d(c, c, 3, padding=1, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        ]
        self.features = nn.Sequential(*layers)
        self.feature_dim = c
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        return self.features(x)  # (B, 4w)


def small_cnn(in_channels: int = 3, width: int = 32) -> SmallCNN:
    return SmallCNN(in_channels, width)
