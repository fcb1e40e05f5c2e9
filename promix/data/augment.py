"""Batched, device-side weak and strong views (SPEC §7) and normalization.

Images stay uint8 (B, C, H, W) on the training device; every op is a tensor op over the
whole batch with per-sample randomness drawn from an explicit `torch.Generator` on that
device, so a run is reproducible and no image goes through PIL or a Python loop.

    weak   = flip (p = 0.5), then zero-pad by `pad` and crop back (RandomCrop(32, padding=4))
    strong = `num_ops` RandAugment ops (randaugment.py), then Cutout, then weak

The strong view is drawn (`draw_strong`) and then rendered (`render_strong`), a pure function
of the images and the draws, in one of two ways with identical results: ops applied to groups
of the samples that drew them (`apply_policy`: least arithmetic, best on a CPU) or every op
applied to the whole batch (`apply_policy_dense`: fixed shapes and no host sync, so a GPU can
replay the whole render as one CUDA graph, `promix.hardware.CudaGraphed`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .randaugment import AFFINE_OPS, OPS, RANGES, affine_matrix, apply_op, sample_ops, warp

__all__ = [
    "OPS", "weak_view", "strong_view", "normalize", "apply_cutout", "apply_policy",
    "apply_policy_dense", "shift_and_flip", "StrongDraws", "draw_strong", "render_strong",
]

CUTOUT_FILL = (125, 123, 114)  # RGB, from the reference; grey images use its L value, 123
_AFFINE_IDS = [OPS.index(name) for name in AFFINE_OPS]


def _check_images(x: torch.Tensor, generator: torch.Generator) -> None:
    if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(
            f"expected uint8 images of shape (B, C, H, W) with C in {{1, 3}}, got {x.dtype} "
            f"{tuple(x.shape)}: convert with `images.to(torch.uint8)` and NCHW layout"
        )
    if generator.device.type != x.device.type:
        raise ValueError(
            f"the generator is on {generator.device} but the images are on {x.device}: "
            f"create it with torch.Generator(device=images.device)"
        )


def _default_pad(h: int, pad: int | None) -> int:
    if pad is not None and pad < 0:
        raise ValueError(f"pad must be >= 0 pixels, got {pad}")
    return max(1, round(h / 8)) if pad is None else pad


def shift_and_flip(
    x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor, pad: int
) -> torch.Tensor:
    """Flip (where `flip`), then take the crop at offset (dy, dx) of the zero-padded image.

    x (B, C, H, W) uint8; dy, dx (B,) long in [-pad, pad]; flip (B,) bool. Output pixel
    (y, x) is flipped(y + dy, x + dx), or 0 outside the image.
    Each output row is a run of W bytes of the flattened batch: source row y + dy from column
    dx, or from -dx reversed when flipped. `index_select` of such runs is a memcpy per row,
    much faster on CPU than a per-pixel gather; the bytes a run takes from a neighbouring row
    are zeroed by the masks.
    """
    b, c, h, w = x.shape
    runs = torch.nn.functional.pad(x.reshape(-1), (pad, pad)).unfold(0, w, 1)  # a view
    sx = torch.where(flip, -dx, dx)  # (B,) first source column of each run
    src_y = torch.arange(h, device=x.device).view(1, h) + dy.view(b, 1)  # (B, H)
    rows = torch.arange(b * c, device=x.device).view(b, c, 1) * h + src_y.clamp(0, h - 1)[:, None]
    start = rows * w + (sx + pad).view(b, 1, 1)
    out = runs.index_select(0, start.flatten()).view(b, c, h, w)
    src_x = torch.arange(w, device=x.device).view(1, w) + sx.view(b, 1)  # (B, W)
    keep_y = ((src_y >= 0) & (src_y < h)).to(torch.uint8).view(b, 1, h, 1)
    keep_x = ((src_x >= 0) & (src_x < w)).to(torch.uint8).view(b, 1, 1, w)
    out = out * (keep_y * keep_x)  # uint8 arithmetic: vectorized, unlike torch.where on uint8
    f = flip.view(b, 1, 1, 1).to(torch.uint8)
    return out.flip(3) * f + out * (1 - f)


def weak_view(
    x: torch.Tensor, *, generator: torch.Generator, flip: bool = True, pad: int | None = None
) -> torch.Tensor:
    """SPEC §7.1 weak view: horizontal flip with p = 0.5, then RandomCrop(H, padding=pad).

    x: (B, C, H, W) uint8, C in {1, 3}. pad defaults to max(1, round(H / 8)), 4 for 32x32.
    Returns (B, C, H, W) uint8 on x's device. `generator` must live on x's device.
    """
    _check_images(x, generator)
    pad = _default_pad(x.shape[2], pad)
    flips, (dy, dx) = _draw_flip_and_shift(x.shape[0], generator, x.device, flip, pad)
    return shift_and_flip(x, dy, dx, flips, pad)


def _draw_flip_and_shift(b: int, generator: torch.Generator, device, flip: bool, pad: int):
    """The weak view's draws: (B,) flips, then (2, B) crop offsets (dy, dx)."""
    flips = torch.rand(b, generator=generator, device=device) < 0.5
    flips = flips & flip  # drawn anyway so flip=False consumes the same random numbers
    return flips, torch.randint(-pad, pad + 1, (2, b), generator=generator, device=device)


def apply_cutout(
    x: torch.Tensor, v: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor
) -> torch.Tensor:
    """SPEC §7.2 Cutout as the reference draws it with PIL (inclusive box, §13.4).

    x (B, C, H, W) uint8; v (B,) in [0, 0.5): side s = v * W (the reference uses the width);
    cx, cy (B,) box centres in (1, W] and (1, H]. Box x0 = int(max(0, cx - s / 2)),
    x1 = min(W, x0 + s); PIL fills columns x0..int(x1) inclusive, so the side is
    int(s) + 1 pixels unless clipped. v = 0 leaves the image unchanged, as in the reference.
    """
    b, c, h, w = x.shape
    s = v.double() * w
    x0 = torch.clamp(cx - s / 2, min=0).floor()
    y0 = torch.clamp(cy - s / 2, min=0).floor()
    x1 = torch.minimum(x0 + s, torch.full_like(s, w)).floor()
    y1 = torch.minimum(y0 + s, torch.full_like(s, h)).floor()
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    in_x = (xs >= x0.view(b, 1, 1)) & (xs <= x1.view(b, 1, 1)) & (v > 0).view(b, 1, 1)
    in_y = (ys >= y0.view(b, 1, 1)) & (ys <= y1.view(b, 1, 1))
    box = (in_y.to(torch.uint8) * in_x.to(torch.uint8)).unsqueeze(1)  # (B, 1, H, W)
    fill = torch.empty(1, c, 1, 1, dtype=torch.uint8, device=x.device)
    for channel, value in enumerate(CUTOUT_FILL if c == 3 else (123,)):
        fill[0, channel].fill_(value)  # not `= value`: no host copy (CUDA graphs)
    return x * (1 - box) + box * fill  # uint8 arithmetic: vectorized, unlike torch.where


class StrongDraws(NamedTuple):
    """The random draws of one strong view of a batch of B images."""

    op: torch.Tensor  # (B, num_ops) indices into OPS
    v: torch.Tensor  # (B, num_ops) float64 magnitudes
    cut: torch.Tensor  # (3, B) float64 uniforms: Cutout size, centre x, centre y
    flip: torch.Tensor  # (B,) bool
    shift: torch.Tensor  # (2, B) long crop offsets (dy, dx) in [-pad, pad]


def draw_strong(
    b: int, *, generator: torch.Generator, device, num_ops: int = 3, flip: bool = True,
    pad: int = 4,
) -> StrongDraws:
    """Draws, in this order: `sample_ops` (op indices, then magnitudes); (v_c, cx, cy) as one
    (3, B) float64 draw; then the weak view's flips and offsets."""
    op, v = sample_ops(b, num_ops, generator=generator, device=device)
    cut = torch.rand(3, b, generator=generator, device=device, dtype=torch.float64)
    return StrongDraws(op, v, cut, *_draw_flip_and_shift(b, generator, device, flip, pad))


def render_strong(
    x: torch.Tensor, op: torch.Tensor, v: torch.Tensor, cut: torch.Tensor, flip: torch.Tensor,
    shift: torch.Tensor, *, cutout: float = 0.5, pad: int = 4, dense: bool = False,
) -> torch.Tensor:
    """The strong view of x (B, C, H, W) uint8 for given draws (the fields of StrongDraws).

    dense: run `apply_policy_dense` instead of `apply_policy` (same result).
    """
    h, w = x.shape[2:]
    x = (apply_policy_dense if dense else apply_policy)(x, op, v)
    # np.random.uniform(32) is uniform(low=32, high=1): centres in (1, size] (SPEC quirk).
    x = apply_cutout(x, cut[0] * cutout, w + (1 - w) * cut[1], h + (1 - h) * cut[2])
    return shift_and_flip(x, shift[0], shift[1], flip, pad)


def strong_view(
    x: torch.Tensor,
    *,
    generator: torch.Generator,
    flip: bool = True,
    pad: int | None = None,
    num_ops: int = 3,
    cutout: float = 0.5,
    render=render_strong,
) -> torch.Tensor:
    """SPEC §7.2 strong view: `num_ops` random ops, Cutout, then the weak view.

    Per sample: ops drawn uniformly with replacement from OPS, each with v ~ U[range], applied
    in sequence and re-quantised to uint8; Cutout with side v_c * W, v_c ~ U[0, cutout);
    then flip and pad-and-crop as in `weak_view`. x: (B, C, H, W) uint8, C in {1, 3}.
    Returns (B, C, H, W) uint8 on x's device. The order of the random draws is
    `draw_strong`'s. render: `render_strong` or a wrapper of it with the same signature (e.g.
    dense, or replayed as a CUDA graph).
    """
    _check_images(x, generator)
    if num_ops < 0 or not 0 <= cutout <= 1:
        raise ValueError(f"need num_ops >= 0 and 0 <= cutout <= 1, got {num_ops}, {cutout}")
    pad = _default_pad(x.shape[2], pad)
    draws = draw_strong(x.shape[0], generator=generator, device=x.device, num_ops=num_ops,
                        flip=flip, pad=pad)
    return render(x, *draws, cutout=cutout, pad=pad)


def apply_policy(x: torch.Tensor, op: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Apply op[i, k] with magnitude v[i, k] to sample i, for slots k = 0, 1, ... in turn.

    x (B, C, H, W) uint8; op (B, K) indices into OPS; v (B, K). For each slot the batch is
    reordered so that the samples that drew the same op are contiguous, and each op runs once
    on its slice (all affine ops share one warp). Reordering copies whole images with
    index_select, which is cheap; each slot costs one host sync (the group sizes).
    """
    affine_ids = torch.tensor(_AFFINE_IDS, device=x.device)
    group = torch.where(torch.isin(op, affine_ids), len(OPS), op)  # affine ops: one group
    h, w = x.shape[2:]
    perm = torch.arange(x.shape[0], device=x.device)  # row i of x holds sample perm[i]
    for k in range(op.shape[1]):
        order = torch.argsort(group[perm, k], stable=True)
        perm, x = perm[order], x.index_select(0, order)
        sizes = torch.bincount(group[:, k], minlength=len(OPS) + 1).tolist()
        parts = []
        for g, (xs, rows) in enumerate(zip(x.split(sizes), perm.split(sizes), strict=True)):
            if xs.shape[0] == 0 or (g < len(OPS) and OPS[g] == "Identity"):
                parts.append(xs)
            elif g == len(OPS):
                kind = torch.searchsorted(affine_ids, op[rows, k])  # index into AFFINE_OPS
                parts.append(warp(xs, affine_matrix(kind, v[rows, k], h, w)))
            else:
                parts.append(apply_op(xs, OPS[g], v[rows, k]))
        x = torch.cat(parts)
    return x.index_select(0, torch.argsort(perm))


def apply_policy_dense(x: torch.Tensor, op: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """`apply_policy`'s result with fixed shapes and no host sync.

    For each slot every op runs on the whole batch and each sample keeps the output of the op
    it drew (the others get an in-range magnitude, so their discarded outputs stay finite).
    Several times the arithmetic of grouping (5x the time on a CPU, docs/augment.md), but the
    same kernels whatever the draws, which is what a CUDA graph needs; on a CPU, where the
    arithmetic is the cost, use `apply_policy`.
    """
    h, w = x.shape[2:]
    for k in range(op.shape[1]):
        op_k, v_k = op[:, k], v[:, k]
        out = x
        for g, name in enumerate(OPS):
            if name == "Identity" or name in AFFINE_OPS:
                continue
            drew = op_k == g
            magnitude = torch.where(drew, v_k, RANGES[name][0])
            out = torch.where(drew.view(-1, 1, 1, 1), apply_op(x, name, magnitude), out)
        kind = torch.zeros_like(op_k)  # index into AFFINE_OPS
        affine = torch.zeros_like(op_k, dtype=torch.bool)
        for i, name in enumerate(AFFINE_OPS):
            drew = op_k == OPS.index(name)
            kind, affine = torch.where(drew, i, kind), affine | drew
        m = affine_matrix(kind, torch.where(affine, v_k, 0.0), h, w)
        x = torch.where(affine.view(-1, 1, 1, 1), warp(x, m), out)
    return x


def normalize(
    x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, *, channels_last: bool = True
) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float32 (x / 255 - mean) / std; mean, std (C,) on x's device.

    channels_last: return the result in channels_last memory format (faster convolutions).
    """
    c = x.shape[1]
    if mean.shape != (c,) or std.shape != (c,):
        raise ValueError(f"mean and std must have shape ({c},), got {tuple(mean.shape)}, "
                         f"{tuple(std.shape)}")
    out = (x.to(torch.float32) / 255 - mean.view(1, c, 1, 1)) / std.view(1, c, 1, 1)
    if channels_last:
        out = out.contiguous(memory_format=torch.channels_last)
    return out


def strong_renderer(mode: str, device: torch.device):
    """The strong view's `render` for run.augment (config.py): identical pixels, other speed."""
    import functools

    from ..config import ConfigError
    from ..hardware import CudaGraphed

    if mode == "auto":
        mode = "graph" if device.type == "cuda" else "grouped"
    if mode == "graph":
        if device.type != "cuda":
            raise ConfigError("--augment=graph needs a CUDA device; use grouped or dense on a CPU")
        return CudaGraphed(functools.partial(render_strong, dense=True))
    return functools.partial(render_strong, dense=mode == "dense")
