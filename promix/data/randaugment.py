"""The 14 RandAugment ops of the strong view (SPEC §7.2, §13.4) as batched uint8 tensor ops.

Every op takes `x` (n, C, H, W) uint8, C in {1, 3}, and `v` (n,) float64 magnitudes, one per
sample, and returns (n, C, H, W) uint8 computed the way Pillow computes it, so the tensor
pipeline reproduces the reference's PIL pipeline pixel for pixel (see docs/augment.md):
blends run in float32 and truncate like `Image.blend`; lookup-table ops use PIL's rules;
affine ops use PIL's pixel-centre convention and, where PIL does, its 16.16 fixed point.
All ops work on any device; nothing here draws random numbers.
"""

from __future__ import annotations

import math

import torch

# SPEC §7.2 order. The index into OPS is what `sample_ops` draws.
OPS = (
    "AutoContrast", "Brightness", "Color", "Contrast", "Equalize", "Identity", "Posterize",
    "Rotate", "Sharpness", "ShearX", "ShearY", "Solarize", "TranslateX", "TranslateY",
)  # fmt: skip
# v ~ U[low, high] per op (FixMatch ranges, SPEC §7.2); ops without a magnitude ignore v.
RANGES = {
    "AutoContrast": (0.0, 1.0), "Brightness": (0.05, 0.95), "Color": (0.05, 0.95),
    "Contrast": (0.05, 0.95), "Equalize": (0.0, 1.0), "Identity": (0.0, 1.0),
    "Posterize": (4.0, 8.0), "Rotate": (-30.0, 30.0), "Sharpness": (0.05, 0.95),
    "ShearX": (-0.3, 0.3), "ShearY": (-0.3, 0.3), "Solarize": (0.0, 256.0),
    "TranslateX": (-0.3, 0.3), "TranslateY": (-0.3, 0.3),
}  # fmt: skip
AFFINE_OPS = ("Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY")


def grey(x: torch.Tensor) -> torch.Tensor:
    """PIL's RGB -> L (ITU-R 601-2, 16-bit fixed point): (n,3,H,W) -> (n,1,H,W) int32."""
    r, g, b = x.to(torch.int32).unbind(1)
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).unsqueeze(1)


def blend(degenerate: torch.Tensor, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """`Image.blend(degenerate, x, factor)` for factor in [0, 1].

    Blend.c computes `(int)d + (float)alpha * (x - d)` in float32 and truncates; we do the same
    so results agree exactly. degenerate broadcasts against x (n, C, H, W); factor is (n,).
    """
    f = factor.to(torch.float32).view(-1, 1, 1, 1)
    d = degenerate.to(torch.float32)
    return (d + f * (x.to(torch.float32) - d)).to(torch.uint8)  # the cast truncates like C


def apply_lut(x: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """Per-sample, per-channel lookup table. x (n,C,H,W) uint8, lut (n,C,256) -> uint8."""
    n, c, h, w = x.shape
    out = lut.clamp(0, 255).to(torch.uint8).gather(2, x.reshape(n, c, h * w).long())
    return out.view(n, c, h, w)


def histogram(x: torch.Tensor) -> torch.Tensor:
    """Counts of each value per sample and channel: (n,C,H,W) uint8 -> (n,C,256) int64.

    A scatter-add into a fixed-size tensor, not `bincount`, whose output size depends on the
    data and which therefore syncs with the host on CUDA (and cannot be in a CUDA graph).
    """
    n, c = x.shape[:2]
    values = x.reshape(n, c, -1).long()
    counts = torch.zeros(n, c, 256, dtype=torch.long, device=x.device)
    return counts.scatter_add_(2, values, torch.ones_like(values))


def autocontrast(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """ImageOps.autocontrast: stretch each channel's [lo, hi] to [0, 255]; identity if flat."""
    lo = x.amin(dim=(2, 3), keepdim=True).double()
    hi = x.amax(dim=(2, 3), keepdim=True).double()
    # A true division: `255.0 / t` would multiply by a reciprocal and round differently.
    scale = torch.full_like(lo, 255.0) / (hi - lo).clamp(min=1)
    out = (x.double() * scale + (-lo * scale)).trunc().clamp(0, 255).to(torch.uint8)
    return torch.where(hi > lo, out, x)


def brightness(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """ImageEnhance.Brightness: blend with black."""
    return blend(torch.zeros((), device=x.device), x, v)


def color(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """ImageEnhance.Color: blend with the grey image; identity for 1-channel images."""
    return x if x.shape[1] == 1 else blend(grey(x), x, v)


def contrast(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """ImageEnhance.Contrast: blend with the rounded mean of the grey image."""
    lum = x.to(torch.int32) if x.shape[1] == 1 else grey(x)
    mean = lum.sum(dim=(1, 2, 3), dtype=torch.int64).double() / lum[0].numel()
    return blend(torch.floor(mean + 0.5).view(-1, 1, 1, 1), x, v)


def equalize(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """ImageOps.equalize with PIL's lookup rule, per channel.

    step = (total - count of the last non-empty bin) // 255, lut[i] = (step // 2 + sum of
    counts below i) // step; identity when step is 0 (which covers single-valued channels).
    """
    hist = histogram(x)
    last = torch.where(hist > 0, torch.arange(256, device=x.device), -1).amax(2, keepdim=True)
    step = (hist.sum(2, keepdim=True) - hist.gather(2, last)) // 255
    below = hist.cumsum(2) - hist
    lut = (step // 2 + below) // step.clamp(min=1)
    identity = torch.arange(256, device=x.device).expand_as(lut)
    return apply_lut(x, torch.where(step > 0, lut, identity))


def posterize(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """ImageOps.posterize with bits = max(1, int(v)): keep the top `bits` bits."""
    bits = v.trunc().clamp(min=1, max=8).to(torch.int32)
    mask = (255 - ((1 << (8 - bits)) - 1)).to(torch.uint8).view(-1, 1, 1, 1)
    return x & mask


def solarize(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """ImageOps.solarize: invert pixels >= the threshold v (v = 256 leaves the image as is)."""
    invert = x.double() >= v.view(-1, 1, 1, 1)
    return torch.where(invert, 255 - x, x)


def smooth(x: torch.Tensor) -> torch.Tensor:
    """`image.filter(ImageFilter.SMOOTH)`: kernel [[1,1,1],[1,5,1],[1,1,1]] / 13, borders kept.

    Filter.c sums each kernel row in float32 starting from the bottom row, adds 0.5 and
    truncates; we keep its order of operations so the rounding agrees.
    """
    # float32 weights 1/13 and 5/13 as 0-d tensors made on the device (no host copy).
    a, b = (torch.full((), k, dtype=torch.float32, device=x.device) / 13 for k in (1.0, 5.0))
    f = x.to(torch.float32)

    def row(r: torch.Tensor, mid: torch.Tensor) -> torch.Tensor:
        return r[..., :-2] * a + r[..., 1:-1] * mid + r[..., 2:] * a

    ss = 0.5 + row(f[:, :, 2:], a)
    ss = ss + row(f[:, :, 1:-1], b)
    ss = ss + row(f[:, :, :-2], a)
    out = x.clone()
    out[:, :, 1:-1, 1:-1] = ss.clamp(0, 255).to(torch.uint8)
    return out


def sharpness(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """ImageEnhance.Sharpness: blend with the SMOOTH-filtered image."""
    return blend(smooth(x), x, v)


def identity(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return x


def affine_matrix(kind: torch.Tensor, v: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """PIL's inverse affine coefficients (a, b, c, d, e, f) per sample: (n,) -> (n, 6) float64.

    kind holds indices into AFFINE_OPS. Output pixel (x, y) samples the input at
    (a x' + b y' + c, d x' + e y' + f) with x' = x + 0.5, y' = y + 0.5. Shears and
    translations are the identity plus v times a fixed direction; Rotate follows
    Image.rotate (angle mod 360, cos and sin rounded to 15 decimals, centre (w/2, h/2)).
    """
    v = v.double()
    # Constants filled on the device, so this can run in a CUDA graph: `t[i] = 1` on a CUDA
    # tensor copies a CPU scalar, which graph capture refuses; `t[i].fill_(1)` does not.
    slope = torch.zeros(len(AFFINE_OPS), 6, dtype=torch.float64, device=v.device)
    for op, coefficient, value in (("ShearX", 1, 1), ("ShearY", 3, 1),
                                   ("TranslateX", 2, w), ("TranslateY", 5, h)):
        slope[AFFINE_OPS.index(op), coefficient].fill_(value)
    identity = torch.zeros(6, dtype=torch.float64, device=v.device)
    identity[0::4].fill_(1)  # a, e
    linear = identity + v.unsqueeze(1) * slope[kind]
    theta = -(torch.where(v < 0, v + 360.0, v) * (math.pi / 180.0))
    cos = torch.round(torch.cos(theta), decimals=15)
    sin = torch.round(torch.sin(theta), decimals=15)
    cx, cy = w / 2, h / 2
    rotate = torch.stack(
        [cos, sin, cos * -cx + sin * -cy + cx, -sin, cos, -sin * -cx + cos * -cy + cy], dim=1
    )
    return torch.where((kind == AFFINE_OPS.index("Rotate")).unsqueeze(1), rotate, linear)


def fixed_point(m: torch.Tensor) -> torch.Tensor:
    """PIL's 16.16 fixed-point form of affine coefficients m (n, 6) -> (n, 6) int64.

    Geometry.c's `affine_fixed` rounds (a, b, c + a/2 + b/2, d, e, f + d/2 + e/2) with
    FIX(v) = floor(v * 65536 + 0.5) and maps output pixel (x, y) to input column
    (C + x A + y B) >> 16 and row (F + x D + y E) >> 16. Without shear or rotation (b = d = 0)
    PIL instead steps in float64 (`ImagingScaleAffine`); with a = e = 1, true of every such
    matrix here (translations and identities), that picks column x + floor(c + 1/2), which we
    write in the same fixed-point form so one integer formula serves both paths.
    """
    a, b, c, d, e, f = m.double().unbind(1)
    fixed = torch.stack([a, b, c + a * 0.5 + b * 0.5, d, e, f + d * 0.5 + e * 0.5], dim=1)
    fixed = torch.floor(fixed * 65536.0 + 0.5)
    one, zero = torch.full_like(a, 65536.0), torch.zeros_like(a)
    scaled = torch.stack([one, zero, torch.floor(c + 0.5) * 65536.0,
                          zero, one, torch.floor(f + 0.5) * 65536.0], dim=1)
    return torch.where(((b == 0) & (d == 0)).unsqueeze(1), scaled, fixed).long()


def warp(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """`Image.transform(size, AFFINE, m, NEAREST)` with zero fill. x (n,C,H,W) uint8, m (n, 6).

    One gather from the image padded by a ring of zeros: sources outside the image are
    clamped onto that ring, which is cheaper than masking.
    """
    n, c, h, w = x.shape
    # int32 (twice as fast as int64 on CPU) holds x A + y B < 2^17 (H + W) + C for images
    # up to about 8,000 pixels a side.
    # Adding 65536 before the shift offsets the result by one pixel, into padded coordinates.
    a, b, cc, d, e, f = fixed_point(m).to(torch.int32).T.reshape(6, n, 1, 1)
    xs = torch.arange(w, device=x.device, dtype=torch.int32).view(1, 1, w)
    ys = torch.arange(h, device=x.device, dtype=torch.int32).view(1, h, 1)
    src_x = (((cc + 65536) + ys * b) + xs * a >> 16).clamp_(0, w + 1)  # (n, h, w)
    src_y = (((f + 65536) + ys * e) + xs * d >> 16).clamp_(0, h + 1)
    index = (src_y * (w + 2) + src_x).view(n, 1, h * w).long().expand(n, c, h * w)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1)).view(n, c, (h + 2) * (w + 2))
    return padded.gather(2, index).view(n, c, h, w)


def affine(x: torch.Tensor, v: torch.Tensor, name: str) -> torch.Tensor:
    """One affine op for every sample: Rotate (v degrees), Shear (v), Translate (v * size)."""
    kind = torch.full_like(v, AFFINE_OPS.index(name), dtype=torch.long)
    return warp(x, affine_matrix(kind, v, x.shape[2], x.shape[3]))


POINT_OPS = {
    "AutoContrast": autocontrast, "Brightness": brightness, "Color": color,
    "Contrast": contrast, "Equalize": equalize, "Identity": identity,
    "Posterize": posterize, "Sharpness": sharpness, "Solarize": solarize,
}  # fmt: skip


def apply_op(x: torch.Tensor, name: str, v: torch.Tensor) -> torch.Tensor:
    """Apply op `name` with per-sample magnitudes v (n,) to x (n, C, H, W) uint8."""
    if name in AFFINE_OPS:
        return affine(x, v, name)
    return POINT_OPS[name](x, v)


def sample_ops(
    batch: int, num_ops: int, *, generator: torch.Generator, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw the policy: op indices (batch, num_ops) uniform with replacement over OPS, and
    magnitudes (batch, num_ops) float64 with v ~ U[low, high] of the drawn op."""
    op = torch.randint(len(OPS), (batch, num_ops), generator=generator, device=device)
    u = torch.rand(batch, num_ops, generator=generator, device=device, dtype=torch.float64)
    bounds = torch.tensor([RANGES[name] for name in OPS], dtype=torch.float64, device=device)
    low, high = bounds[op, 0], bounds[op, 1]
    return op, low + (high - low) * u
