"""Backbones from timm (`--model=timm:NAME`): any timm model's pooled features.

`timm.create_model(NAME, num_classes=0)` returns a model whose `forward` maps images
(B, C, H, W) to pooled pre-logit features (B, D); the two ProMix heads sit on top
(`TwoHeadNet`). `pretrained=True` loads the weights through timm's own mechanism (the
Hugging Face hub, or the file of `pretrained_cfg_overlay=dict(file=...)`); local files
given with `--weights` are loaded by `weights.load_weights`.
"""

from __future__ import annotations

import difflib
import sys

import torch
import torch.nn as nn

from ..config import ConfigError

PREFIX = "timm:"


def is_timm(name: str) -> bool:
    return name.startswith(PREFIX)


def import_timm():
    """`import timm`, tolerating a torchvision whose compiled ops cannot load.

    The PyPI torchvision wheel is built for CUDA; next to a CPU-only torch its `_C` library
    does not load and `import torchvision` (which timm imports) then fails registering fake
    kernels for `torchvision::nms` / `qnms`. promix uses no torchvision op, so the two op
    names are declared (without kernels) and the import retried.
    """
    try:
        import timm
    except RuntimeError as err:
        if "torchvision::" not in str(err):
            raise
        for name in [m for m in sys.modules if m.split(".")[0] in ("torchvision", "timm")]:
            del sys.modules[name]
        lib = torch.library.Library("torchvision", "DEF")  # noqa: TOR901 - kept alive below
        for op in ("nms", "qnms"):
            lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        import_timm.library = lib  # a Library unregisters its ops when collected
        import timm
    return timm


def check_name(name: str) -> str:
    """The timm model name of `timm:NAME`, or a ConfigError with the closest names."""
    arch = name[len(PREFIX):]
    timm = import_timm()
    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(PREFIX + c for c in close)}?" if close else (
            "; `python -c \"import timm; print(timm.list_models('*resnet*'))\"` lists them")
        raise ConfigError(f"unknown timm model '{arch}' (--model={name}){hint}")
    return arch


def pretrained_cfg(name: str) -> dict:
    """timm's default pretrained config of `timm:NAME` (input_size, mean, std, interpolation,
    classifier, first_conv), without building the model."""
    timm = import_timm()
    return dict(timm.models.get_pretrained_cfg(check_name(name)).to_dict())


def timm_backbone(name: str, *, in_channels: int = 3, pretrained: bool = False,
                  pretrained_file: str | None = None) -> nn.Module:
    """timm:NAME with its classifier removed: (B, C, H, W) -> (B, D), D = `feature_dim`.

    pretrained: load the pretrained weights through timm (the hub, or `pretrained_file` via
    timm's `pretrained_cfg_overlay=dict(file=...)`); timm adapts the first convolution to
    `in_channels` and drops the ImageNet classifier.
    """
    arch = check_name(name)
    timm = import_timm()
    overlay = {"file": str(pretrained_file)} if pretrained_file else None
    model = timm.create_model(arch, pretrained=pretrained, num_classes=0, in_chans=in_channels,
                              pretrained_cfg_overlay=overlay)
    # the pooled output: num_features, or the pre-logits width of a head MLP (MobileNetV3)
    model.feature_dim = getattr(model, "head_hidden_size", None) or model.num_features
    return model


def check_image_size(net: nn.Module, name: str, size: int, in_channels: int = 3) -> None:
    """A ConfigError, before any decoding, when `net` cannot take size x size images."""
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            net(torch.zeros(1, in_channels, size, size))
    except Exception as err:  # noqa: BLE001 - any failure means the size does not fit
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        native = getattr(net, "pretrained_cfg", {}).get("input_size")
        hint = f" (its pretrained size is {native[-1]})" if native else ""
        raise ConfigError(f"{name} cannot take {size}x{size} images ({first}): set "
                          f"--image_size to a size it accepts{hint}") from None
    finally:
        net.train(was_training)


def freeze_stages(model: nn.Module, n: int) -> list[str]:
    """Freeze the first `n` of timm's coarse parameter groups (group 0: the stem, then one per
    stage): no gradients, BatchNorm replaced by FrozenBatchNorm2d (statistics fixed too).
    Returns the names of the frozen modules. n = 0 freezes nothing."""
    if n <= 0:
        return []
    from timm.models import group_parameters  # imported by import_timm before
    from timm.utils.model import freeze

    if not hasattr(model, "group_matcher"):
        raise ConfigError(f"{type(model).__name__} defines no stages to freeze: "
                          "set --freeze_stages=0")
    groups = group_parameters(model, model.group_matcher(coarse=True))
    ids = sorted(groups)
    if n > len(ids):
        raise ConfigError(f"--freeze_stages={n} but the model has {len(ids)} stages "
                          "(stem included): use at most that")
    params = {p for i in ids[:n] for p in groups[i]}
    named = dict(model.named_modules())
    loose = {p for p in params if p.rpartition(".")[0] not in named or "." not in p}
    for p in loose:  # parameters of the model itself (a ViT's cls_token, pos_embed)
        model.get_parameter(p).requires_grad_(False)
    # the smallest modules that own a frozen parameter
    modules = sorted({p.rpartition(".")[0] for p in params - loose})
    modules = [m for m in modules if not any(m.startswith(o + ".") for o in modules if o != m)]
    if modules:
        freeze(model, modules)
    return modules + sorted(loose)
