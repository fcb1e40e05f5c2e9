"""`--weights=FILE`: start a model from a local checkpoint, without executing any code.

Accepted files:
- a promix run's `model.safetensors` (peer1's backbone, and its heads when the class count
  matches; its metadata names the architecture and the normalization it was trained with);
- a timm / PyTorch checkpoint of the backbone: `.safetensors`, or `.pth` / `.pt` / `.bin`
  read with `torch.load(weights_only=True)` (tensors only, never unpickled objects); a
  `state_dict` / `model` / `state_dict_ema` entry and `module.` prefixes are unwrapped.

A classifier of another size (timm's ImageNet `fc` / `head`) is dropped: promix puts its own
two heads on the pooled features. A 3-channel first convolution is summed for grayscale
images (timm's `adapt_input_conv`). Anything else that does not fit is a one-line
ConfigError naming the file's architecture and the model's.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from ..config import ConfigError

META_MODEL = "promix.model"  # safetensors metadata written by promix.api.save_model
META_NORM = "promix.normalization"  # JSON [[mean...], [std...]] the weights were trained with
META_CLASSES = "promix.classes"  # JSON list of the class names the heads were trained on


def weights_metadata(cfg, data) -> dict[str, str]:
    """What a run's model.safetensors records so that `--weights=` can check and reuse it:
    the architecture, the class names of the heads, the normalization it trained with."""
    return {META_MODEL: cfg.model.name, META_CLASSES: json.dumps(list(data.classes)),
            META_NORM: json.dumps([list(v) for v in data.normalization()])}


@dataclass(frozen=True)
class WeightsFile:
    """A checkpoint read into memory. backbone: names relative to the backbone; heads:
    `linear.*` / `pseudo_linear.*` (promix files only); arch: the file's architecture when
    it says so; normalization: (mean, std) when it says so; classes: the heads' class names
    when it says so."""

    path: str
    backbone: dict[str, torch.Tensor]
    heads: dict[str, torch.Tensor]
    arch: str | None
    normalization: tuple[tuple[float, ...], tuple[float, ...]] | None
    classes: tuple[str, ...] | None = None


def read_weights(path: str) -> WeightsFile:
    """Read and unwrap a checkpoint; a ConfigError when it is missing or not a weights file."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"--weights={path}: no such file")
    from safetensors import SafetensorError

    meta: dict[str, str] = {}
    try:
        if file.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(file), framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        else:
            tensors = torch.load(file, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, SafetensorError, RuntimeError, OSError, ValueError,
            EOFError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"--weights={path} is not a safetensors file or a checkpoint of "
                          f"tensors ({first[:160]})") from None
    arch = meta.get(META_MODEL)
    if isinstance(tensors, dict) and isinstance(tensors.get("arch"), str):
        arch = tensors["arch"]  # timm's train.py saves the architecture beside the weights
    tensors = _unwrap(tensors, path)
    norm = json.loads(meta[META_NORM]) if META_NORM in meta else None
    if any(k.startswith("peer1.") for k in tensors):  # a promix run's model.safetensors
        tensors = {k[len("peer1."):]: v for k, v in tensors.items() if k.startswith("peer1.")}
        heads = {k: v for k, v in tensors.items() if k.split(".")[0] in ("linear",
                                                                         "pseudo_linear")}
        backbone = {k[len("backbone."):]: v for k, v in tensors.items()
                    if k.startswith("backbone.")}
        classes = tuple(json.loads(meta[META_CLASSES])) if META_CLASSES in meta else None
        return WeightsFile(path, backbone, heads, arch, tuple(map(tuple, norm)) if norm else None,
                           classes)
    return WeightsFile(path, tensors, {}, arch, tuple(map(tuple, norm)) if norm else None)


def _unwrap(obj, path: str) -> dict[str, torch.Tensor]:
    for key in ("state_dict_ema", "state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj:
        raise ConfigError(f"--weights={path} holds no named tensors")
    out = {}
    for k, v in obj.items():
        if not isinstance(v, torch.Tensor):
            continue  # epoch counters, optimizer settings... beside the weights
        out[k[len("module."):] if k.startswith("module.") else k] = v
    if not out:
        raise ConfigError(f"--weights={path} holds no named tensors")
    return out


def load_weights(net: nn.Module, weights: WeightsFile, *, model_name: str,
                 classes: tuple[str, ...] | None = None) -> str:
    """Load `weights` into a TwoHeadNet in place; returns a one-line summary for the console.

    The file's heads are loaded when their shapes match and, where both the file and the
    caller name the classes, the names match too (other classes get new heads).

    Raises ConfigError (naming the file's architecture and `model_name`) when the backbone's
    tensors do not match: missing or unexpected names, or other shapes.
    """
    backbone = net.backbone
    own = backbone.state_dict()
    state = _drop_classifier(dict(weights.backbone), own, backbone)
    state = _adapt_first_conv(state, own, backbone)
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        theirs = weights.arch or "another architecture"
        detail = (f"{len(missing)} of its tensors missing (e.g. {missing[0]})" if missing else
                  f"{len(unexpected)} unexpected tensors (e.g. {unexpected[0]})" if unexpected
                  else f"{shapes[0]} is {tuple(state[shapes[0]].shape)} in the file, "
                       f"{tuple(own[shapes[0]].shape)} in the model")
        raise ConfigError(f"--weights={weights.path} holds weights for {theirs}, not for "
                          f"{model_name}: {detail}")
    backbone.load_state_dict(state)
    heads = "new heads"
    own_heads = {k: v for k, v in net.state_dict().items() if not k.startswith("backbone.")}
    same = None in (classes, weights.classes) or tuple(classes) == weights.classes
    if weights.heads and same and all(k in weights.heads and weights.heads[k].shape == v.shape
                                      for k, v in own_heads.items()):
        net.load_state_dict({**net.state_dict(), **weights.heads})
        heads = "heads from the file"
    elif weights.heads:
        heads = "new heads (the file's are for other classes)"
    return f"weights: backbone from {weights.path}, {heads}"


def _drop_classifier(state: dict, own: dict, backbone: nn.Module) -> dict:
    """Remove the file's classifier (timm's pretrained_cfg['classifier'], e.g. fc or head.fc)
    when the backbone has none (num_classes=0)."""
    cfg = getattr(backbone, "pretrained_cfg", None) or {}
    names = cfg.get("classifier") or ()
    names = (names,) if isinstance(names, str) else tuple(names)
    return {k: v for k, v in state.items()
            if k in own or not any(k.startswith(n + ".") for n in names)}


def _adapt_first_conv(state: dict, own: dict, backbone: nn.Module) -> dict:
    """A 3-channel first convolution summed (or repeated) to the model's input channels."""
    cfg = getattr(backbone, "pretrained_cfg", None) or {}
    first = cfg.get("first_conv")
    key = f"{first}.weight" if isinstance(first, str) else None
    if key in state and key in own and state[key].shape[1] != own[key].shape[1]:
        from timm.models import adapt_input_conv

        state = {**state, key: adapt_input_conv(own[key].shape[1], state[key])}
    return state
