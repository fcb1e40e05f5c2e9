"""Batched eval-mode inference: the selection pass over the training set and test accuracy.

Outputs are written into preallocated tensors in dataset order (no per-batch lists).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .data.augment import normalize
from .metrics import precision_recall_f1
from .models import TwoHeadNet


@dataclass
class PeerOutputs:
    """Eval-mode outputs of one net over a whole image set."""

    logits: torch.Tensor  # (N, C) primary head, fp32
    pseudo_logits: torch.Tensor  # (N, C) pseudo head, fp32

    @property
    def probs(self) -> torch.Tensor:
        return torch.softmax(self.logits, 1)

    def losses(self, labels: torch.Tensor) -> torch.Tensor:
        """ℓ_i = CE(z_i, ỹ_i), the raw primary-head loss of SPEC §5 step 2. (N,)"""
        return F.cross_entropy(self.logits, labels, reduction="none")


@torch.no_grad()
def predict(
    net: TwoHeadNet, images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, *,
    batch_size: int, autocast, channels_last: bool = True,
) -> PeerOutputs:
    """Both heads' logits for uint8 images (N, C, H, W), test-time view, eval-mode BN."""
    was_training = net.training
    net.eval()
    n, c = images.shape[0], net.linear.out_features
    logits = torch.empty(n, c, device=images.device)
    pseudo = torch.empty(n, c, device=images.device)
    for start in range(0, n, batch_size):
        x = normalize(images[start : start + batch_size], mean, std, channels_last=channels_last)
        with autocast:
            out = net(x)
        logits[start : start + len(x)] = out.logits.float()
        pseudo[start : start + len(x)] = out.pseudo_logits.float()
    net.train(was_training)
    return PeerOutputs(logits, pseudo)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(1) == labels).float().mean())


def selection_quality(selected: torch.Tensor, is_clean: torch.Tensor) -> dict[str, float]:
    """Precision, recall and F1 of a selected-as-clean mask against the truly clean mask."""
    q = precision_recall_f1(float((selected & is_clean).sum()), float(selected.sum()),
                            float(is_clean.sum()))
    return q | {"size": int(selected.sum())}
