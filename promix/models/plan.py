"""Settle the model before any image is decoded: its name, weights, input size, normalization.

`plan_model(cfg)` checks everything about `cfg.model` that can fail (an unknown name, a bad
`--weights` file, weights for another architecture, pretrained weights that cannot be
fetched, an image size the model cannot take) and raises a one-line ConfigError before the
data are touched. It decides the training resolution, in this order:

1. `data.image_size` when set (a flag or the preset);
2. for image files (folder, csv, clothing1m) or image arrays (`promix.train(images,
   labels)`) and a timm model: the model's pretrained config (`input_size`, e.g. 224 for
   ResNet-50);
3. otherwise the images' own size: CIFAR's 32, the digits' 8; for image files the common
   size when every image is at most 64 px, else 32 (data/cache.py says so on the console).

Mean/std come from the weights (a promix run records its own; timm's pretrained config for
timm weights) and otherwise from the data; the resize filter from the timm config.
`build_data(cfg)` runs the plan, builds the dataset and prints the decision.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, replace

from ..config import Config, ConfigError
from .timm_backbone import check_image_size, is_timm, pretrained_cfg, timm_backbone
from .weights import WeightsFile, load_weights, read_weights

FILE_DATASETS = ("folder", "csv", "clothing1m")  # decoded from files at a chosen size
USER_DATASETS = (*FILE_DATASETS, "arrays")  # a user's images: sized for the model (rule 2)
NATIVE_SIZE = {"cifar10": 32, "cifar100": 32, "digits": 8, "mnist5k": 28}
HUB = ("huggingface.co", 443)


@dataclass(frozen=True)
class ModelPlan:
    """image_size: the size decided here (None: the data decide); reason: why, for the console;
    normalization: (mean, std) to train with, None: the data's; interpolation: resize filter."""

    image_size: int | None
    reason: str | None
    normalization: tuple[tuple[float, ...], tuple[float, ...]] | None
    interpolation: str | None


def plan_model(cfg: Config, *, given_size: int | None = None) -> ModelPlan:
    """Check cfg.model (switching to model.fallback when pretrained weights are out of reach,
    which rewrites cfg.model) and decide the input size; see the module docstring.
    given_size: the side of images already in memory (arrays), checked against the model."""
    m, d = cfg.model, cfg.data
    timm = is_timm(m.name)
    if not timm:
        from . import BACKBONES

        if m.name not in BACKBONES:
            raise ConfigError(f"unknown model '{m.name}': use one of "
                              f"{', '.join(sorted(BACKBONES))} or timm:NAME (any timm model)")
        for flag, value in (("pretrained", m.pretrained), ("freeze_stages", m.freeze_stages)):
            if value:
                raise ConfigError(f"--{flag} applies to timm models (--model=timm:NAME), not "
                                  f"to {m.name}")
    start = not cfg.run.resume  # a resumed run takes its weights from its checkpoint
    weights = read_weights(m.weights) if m.weights and start else None
    if timm and m.pretrained and start:
        try:
            if pretrained_file(m.name) is None:  # reachable: download now, before decoding
                timm_backbone(m.name, pretrained=True)
        except Exception as err:  # noqa: BLE001 - unreachable, refused, proxy, bad download
            if not m.fallback:
                raise ConfigError(f"{m.name}: pretrained weights unreachable ({err}); offline, "
                                  "pass a local checkpoint with --weights=FILE, or set "
                                  "--pretrained=false") from None
            print(f"promix: {m.name}'s pretrained weights are unreachable ({err}): training "
                  f"{m.fallback} from scratch instead (model.fallback). Pass --weights=FILE "
                  "to start from a local checkpoint, or --model=... to choose.")
            cfg.model = replace(m, name=m.fallback, pretrained=False, fallback=None,
                                freeze_stages=0, backbone_lr_scale=1.0)
            return plan_model(cfg, given_size=given_size)
    timm_cfg = pretrained_cfg(m.name) if timm else {}
    size, reason = d.image_size, "data.image_size (a flag or the preset)"
    if size is None and timm and d.dataset in USER_DATASETS:
        size = int(timm_cfg["input_size"][-1])
        reason = f"{m.name}'s pretrained config (input_size); --image_size=N to change"
    if size is None:
        reason = None
    probe = given_size or size or NATIVE_SIZE.get(d.dataset)
    if timm or weights is not None:
        net = _probe_net(cfg, weights)
        if timm and probe is not None:
            check_image_size(net.backbone, m.name, probe)
    normalization = weights.normalization if weights is not None else None
    if normalization is None and timm and (m.pretrained or weights is not None):
        normalization = (tuple(timm_cfg["mean"]), tuple(timm_cfg["std"]))
    interpolation = timm_cfg.get("interpolation") if timm else None
    return ModelPlan(size, reason, normalization, interpolation)


def _probe_net(cfg: Config, weights: WeightsFile | None):
    """A random-init net of cfg.model (2 classes) with the weights loaded: checks the file."""
    from . import create_model

    m = cfg.model
    kwargs = {"width": m.width} if m.name == "small_cnn" else {}
    net = create_model(m.name, num_classes=2, **kwargs)
    if weights is not None:
        load_weights(net, weights, model_name=m.name)
    return net


def pretrained_file(name: str) -> str | None:
    """Where timm:NAME's pretrained weights are: a file in the Hugging Face cache (no network
    needed), or None when timm must download them. OSError when the hub cannot be reached
    (checked with one quick connection rather than timm's minute of retries)."""
    cfg = pretrained_cfg(name)
    hub_id = cfg.get("hf_hub_id")
    if hub_id:
        from huggingface_hub import try_to_load_from_cache

        for filename in ("model.safetensors", "open_clip_pytorch_model.bin", "pytorch_model.bin"):
            path = try_to_load_from_cache(hub_id, filename)
            if isinstance(path, str):
                return path
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0"):
        raise OSError("HF_HUB_OFFLINE is set and the weights are not in the cache")
    try:
        socket.create_connection(HUB, timeout=5).close()
    except OSError as err:
        raise OSError(f"cannot reach {HUB[0]}: {err.strerror or err}") from None
    return None


def build_data(cfg: Config, dataset=None):
    """The Dataset for cfg, after the model plan; prints the training size and why.
    dataset: one already built (arrays, a baseline's): only the model is checked and the
    normalization set."""
    from ..data.load import build_dataset

    if dataset is not None:
        plan = plan_model(cfg, given_size=dataset.train.images.shape[-1])
        return _normalized(dataset, plan)
    plan = plan_model(cfg)
    if plan.image_size is not None:
        cfg.data.image_size = plan.image_size
    if cfg.data.interpolation is None and plan.interpolation is not None:
        cfg.data.interpolation = plan.interpolation
    data = build_dataset(cfg.data)
    side = data.train.images.shape[-1]
    if plan.reason is not None:
        print(f"promix: training at {side}x{side}: {plan.reason}")
    elif cfg.data.dataset not in FILE_DATASETS:  # image files: data/cache.py said why
        print(f"promix: training at {side}x{side}: the {cfg.data.dataset} images' own size")
    return _normalized(data, plan)


def build_array_data(cfg: Config, images, labels, classes=None, test=None):
    """The Dataset of image arrays (`promix.train(images, labels)`), sized as image files are:
    the plan first, so a timm model's pretrained size resizes them; prints the size and why.
    test: (images, labels) held out, or None. The normalization is set by build_data."""
    from ..data.load import dataset_from_arrays

    plan = plan_model(cfg)
    if plan.image_size is not None:
        cfg.data.image_size = plan.image_size
    test_images, test_labels = test if test is not None else (None, None)
    data = dataset_from_arrays(images, labels, classes, cfg=cfg.data,
                               test_images=test_images, test_labels=test_labels)
    side, reason = data.train.images.shape[-1], plan.reason or "the arrays' own size"
    print(f"promix: training at {side}x{side}: {reason}")
    return data


def _normalized(data, plan: ModelPlan):
    """data with the plan's mean/std (the weights'), else its own computed once."""
    if plan.normalization is not None:
        mean, std = plan.normalization
        c = data.train.images.shape[1]
        if c == 1 and len(mean) == 3:  # grayscale data, RGB statistics: their average
            mean, std = (sum(mean) / 3,), (sum(std) / 3,)
        data = replace(data, mean=tuple(mean), std=tuple(std))
    elif data.mean is None:  # computed once here, not at every data.normalization() call
        mean, std = data.normalization()
        data = replace(data, mean=mean, std=std)
    return data
