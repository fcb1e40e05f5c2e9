"""Batched augmentation (promix/data/augment.py, randaugment.py) against PIL and the SPEC.

The reference is the PIL code the official ProMix RandAugment runs (SPEC §7.2, §13.4); every
tensor op is expected to match it pixel for pixel.
"""

from __future__ import annotations

import functools

import numpy as np
import PIL.Image
import PIL.ImageDraw
import PIL.ImageEnhance
import PIL.ImageOps
import pytest
import torch

from promix.config import ConfigError
from promix.data.augment import (
    OPS,
    apply_cutout,
    apply_policy,
    apply_policy_dense,
    normalize,
    render_strong,
    strong_view,
    weak_view,
)
from promix.data.randaugment import RANGES, apply_op, sample_ops
from promix.hardware import CudaGraphed
from promix.trainer import strong_renderer

# --- PIL reference ------------------------------------------------------------------------


def pil_op(img: PIL.Image.Image, name: str, v: float) -> PIL.Image.Image:
    """The reference op (ProMix/FixMatch RandAugment) on one PIL image."""
    w, h = img.size
    ops = {
        "AutoContrast": lambda: PIL.ImageOps.autocontrast(img),
        "Brightness": lambda: PIL.ImageEnhance.Brightness(img).enhance(v),
        "Color": lambda: PIL.ImageEnhance.Color(img).enhance(v),
        "Contrast": lambda: PIL.ImageEnhance.Contrast(img).enhance(v),
        "Equalize": lambda: PIL.ImageOps.equalize(img),
        "Identity": lambda: img,
        "Posterize": lambda: PIL.ImageOps.posterize(img, max(1, int(v))),
        "Rotate": lambda: img.rotate(v),
        "Sharpness": lambda: PIL.ImageEnhance.Sharpness(img).enhance(v),
        "ShearX": lambda: img.transform(img.size, PIL.Image.AFFINE, (1, v, 0, 0, 1, 0)),
        "ShearY": lambda: img.transform(img.size, PIL.Image.AFFINE, (1, 0, 0, v, 1, 0)),
        "Solarize": lambda: PIL.ImageOps.solarize(img, v),
        "TranslateX": lambda: img.transform(img.size, PIL.Image.AFFINE, (1, 0, v * w, 0, 1, 0)),
        "TranslateY": lambda: img.transform(img.size, PIL.Image.AFFINE, (1, 0, 0, 0, 1, v * h)),
    }
    return ops[name]()


def pil_cutout(img: PIL.Image.Image, v: float, cx: float, cy: float) -> PIL.Image.Image:
    """The reference Cutout(img, v) with its centre draw (cx, cy) given."""
    if v <= 0:
        return img
    w, h = img.size
    s = v * w
    x0, y0 = int(max(0, cx - s / 2.0)), int(max(0, cy - s / 2.0))
    box = (x0, y0, min(w, x0 + s), min(h, y0 + s))
    img = img.copy()
    PIL.ImageDraw.Draw(img).rectangle(box, (125, 123, 114) if img.mode == "RGB" else 123)
    return img


def to_pil(a: np.ndarray) -> PIL.Image.Image:
    """(C, H, W) uint8 -> PIL image, mode L or RGB."""
    return PIL.Image.fromarray(a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0))


def from_pil(img: PIL.Image.Image) -> np.ndarray:
    a = np.asarray(img)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def images(kind: str, n: int, c: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """(n, C, H, W) uint8 test images: uniform noise, natural-looking, or nearly flat."""
    rng = np.random.default_rng(seed)
    if kind == "random":
        return rng.integers(0, 256, (n, c, h, w), dtype=np.uint8)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    out = []
    for _ in range(n):
        a, b, p = rng.uniform(-1, 1, 3)
        if kind == "natural":  # smooth gradients and blobs plus sensor noise
            base = [128 + 90 * np.sin(3 * a * xx + 2 * b * yy + k + p) * np.cos(4 * p * yy)
                    + 40 * (xx - yy) * (k - 1) for k in range(c)]
            img = np.stack(base) + rng.normal(0, 8, (c, h, w))
        else:  # "flat": few distinct values (edge cases of Equalize and AutoContrast)
            img = np.full((c, h, w), rng.integers(0, 256)) + 60 * (rng.random((c, h, w)) < a)
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return np.stack(out)


def pil_reference(x: np.ndarray, name: str, v: np.ndarray) -> np.ndarray:
    pairs = zip(x, v, strict=True)
    return np.stack([from_pil(pil_op(to_pil(a), name, float(m))) for a, m in pairs])


# --- every op matches PIL -------------------------------------------------------------------

FIXED_MAGNITUDES = [
    ("AutoContrast", 0.0), ("Brightness", 0.05), ("Brightness", 0.5), ("Brightness", 0.95),
    ("Color", 0.05), ("Color", 0.61), ("Contrast", 0.05), ("Contrast", 0.37),
    ("Contrast", 0.95), ("Equalize", 0.0), ("Identity", 0.0), ("Posterize", 4.0),
    ("Posterize", 6.5), ("Posterize", 7.99), ("Rotate", -30.0), ("Rotate", -7.3),
    ("Rotate", 0.0), ("Rotate", 12.9), ("Rotate", 30.0), ("Sharpness", 0.05),
    ("Sharpness", 0.5), ("Sharpness", 0.95), ("ShearX", -0.3), ("ShearX", 0.137),
    ("ShearY", -0.21), ("ShearY", 0.3), ("Solarize", 0.0), ("Solarize", 99.5),
    ("Solarize", 128.0), ("Solarize", 256.0), ("TranslateX", -0.3), ("TranslateX", 0.11),
    ("TranslateY", -0.17), ("TranslateY", 0.3),
    ("TranslateX", 0.015625), ("TranslateY", -0.046875),  # half pixels at 32: PIL's tie rule
]  # fmt: skip
SHAPES = [(1, 28, 28), (3, 32, 32), (3, 24, 40), (1, 64, 48)]


@pytest.mark.parametrize("kind", ["random", "natural", "flat"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name,v", FIXED_MAGNITUDES)
def test_op_matches_pil_exactly(name, v, shape, kind):
    x = images(kind, 4, *shape)
    mags = np.full(4, v)
    got = apply_op(torch.from_numpy(x), name, torch.from_numpy(mags)).numpy()
    np.testing.assert_array_equal(got, pil_reference(x, name, mags))


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28)])
@pytest.mark.parametrize("name", OPS)
def test_op_matches_pil_with_per_sample_magnitudes(name, shape):
    """A batch whose samples all have different magnitudes, drawn over the SPEC range."""
    x = images("natural", 24, *shape, seed=3)
    low, high = RANGES[name]
    mags = np.random.default_rng(4).uniform(low, high, 24)
    got = apply_op(torch.from_numpy(x), name, torch.from_numpy(mags)).numpy()
    np.testing.assert_array_equal(got, pil_reference(x, name, mags))


CUTOUTS = [  # (v, cx, cy): interior, at each border, tiny, largest, v = 0
    (0.25, 16.0, 16.0), (0.49, 1.2, 31.7), (0.49, 32.0, 1.0001), (0.01, 5.5, 9.9),
    (0.3, 31.9, 31.9), (0.123, 12.34, 20.5), (0.0, 10.0, 10.0),
]  # fmt: skip


@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("v,cx,cy", CUTOUTS)
def test_cutout_matches_pil_rectangle(v, cx, cy, c):
    x = images("natural", 1, c, 32, 32)
    t = [torch.tensor([z], dtype=torch.float64) for z in (v, cx, cy)]
    got = apply_cutout(torch.from_numpy(x), *t).numpy()
    np.testing.assert_array_equal(got[0], from_pil(pil_cutout(to_pil(x[0]), v, cx, cy)))


def test_grey_cutout_fill_is_the_L_value_of_the_rgb_fill():
    img = PIL.Image.new("RGB", (1, 1), (125, 123, 114)).convert("L")
    x = torch.zeros(1, 1, 32, 32, dtype=torch.uint8)
    t = [torch.tensor([z], dtype=torch.float64) for z in (0.4, 16.0, 16.0)]
    assert apply_cutout(x, *t).max().item() == img.getpixel((0, 0))


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28), (3, 24, 40)])
def test_policy_grouping_equals_per_sample_ops(shape):
    """apply_policy reorders samples by op; the result must equal op-by-op per sample."""
    g = torch.Generator().manual_seed(7)
    x = torch.from_numpy(images("natural", 64, *shape))
    op, v = sample_ops(64, 3, generator=g, device=x.device)
    want = x.clone()
    for i in range(64):
        for k in range(3):
            want[i : i + 1] = apply_op(want[i : i + 1], OPS[op[i, k]], v[i, k : k + 1])
    torch.testing.assert_close(apply_policy(x, op, v), want, rtol=0, atol=0)


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28), (3, 24, 40)])
def test_dense_policy_equals_grouped_policy(shape):
    """apply_policy_dense runs every op on every sample and keeps the drawn one: same pixels."""
    g = torch.Generator().manual_seed(8)
    x = torch.from_numpy(images("natural", 96, *shape, seed=3))
    op, v = sample_ops(96, 3, generator=g, device=x.device)
    assert set(op.flatten().tolist()) == set(range(len(OPS)))  # every op is exercised
    dense = apply_policy_dense(x, op, v)
    torch.testing.assert_close(dense, apply_policy(x, op, v), rtol=0, atol=0)
    assert (dense != x).any()


def test_strong_view_renders_the_same_pixels_grouped_and_dense():
    x = torch.from_numpy(images("natural", 64, 3, 32, 32, seed=4))
    views = [strong_view(x, generator=torch.Generator().manual_seed(9),
                         render=functools.partial(render_strong, dense=dense))
             for dense in (False, True)]
    torch.testing.assert_close(views[0], views[1], rtol=0, atol=0)
    assert not torch.equal(views[0], strong_view(x, generator=torch.Generator().manual_seed(10)))


def test_cuda_graph_augment_needs_cuda():
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        strong_renderer("graph", torch.device("cpu"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graph_replays_the_eager_strong_view():
    """Replayed graphs give the eager grouped result, batch after batch (inputs are copied in)."""
    graphed = CudaGraphed(functools.partial(render_strong, dense=True))
    for seed in range(3):
        x = torch.from_numpy(images("natural", 128, 3, 32, 32, seed=seed)).cuda()
        views = [strong_view(x, generator=torch.Generator("cuda").manual_seed(seed),
                             render=render)
                 for render in (render_strong, graphed)]
        torch.testing.assert_close(views[1], views[0], rtol=0, atol=0)
    assert not graphed.failed and len(graphed.graphs) == 1


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28)])
def test_strong_view_equals_the_pil_pipeline(shape):
    """End to end: replay strong_view's draws (order in its docstring) through PIL."""
    b, (_, h, w) = 32, shape
    x = images("natural", b, *shape, seed=11)
    g = torch.Generator().manual_seed(5)
    got = strong_view(torch.from_numpy(x), generator=g).numpy()
    g = torch.Generator().manual_seed(5)
    op, v = sample_ops(b, 3, generator=g, device=torch.device("cpu"))
    vc, ux, uy = torch.rand(3, b, generator=g, dtype=torch.float64).numpy()
    flips = (torch.rand(b, generator=g) < 0.5).numpy()
    pad = max(1, round(h / 8))  # the default: 4 for both sizes
    dy, dx = torch.randint(-pad, pad + 1, (2, b), generator=g).numpy()
    for i in range(b):
        img = to_pil(x[i])
        for k in range(3):
            img = pil_op(img, OPS[op[i, k]], float(v[i, k]))
        img = pil_cutout(img, 0.5 * vc[i], w + (1 - w) * ux[i], h + (1 - h) * uy[i])
        if flips[i]:
            img = img.transpose(PIL.Image.FLIP_LEFT_RIGHT)
        padded = np.pad(from_pil(img), ((0, 0), (pad, pad), (pad, pad)))
        want = padded[:, pad + dy[i] : pad + dy[i] + h, pad + dx[i] : pad + dx[i] + w]
        np.testing.assert_array_equal(got[i], want, err_msg=f"sample {i}")


# --- statistics of the random draws ---------------------------------------------------------


def test_ops_are_drawn_uniformly_with_replacement():
    g = torch.Generator().manual_seed(0)
    op, _ = sample_ops(20_000, 3, generator=g, device=torch.device("cpu"))
    counts = torch.bincount(op.flatten(), minlength=len(OPS)).double()
    expected = op.numel() / len(OPS)
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < 36.1, f"chi-square {chi2:.1f} with 13 dof (p < 0.001 under uniformity)"
    repeats = (op[:, 0] == op[:, 1]).double().mean().item()  # with replacement: about 1/14
    assert abs(repeats - 1 / 14) < 0.01


@pytest.mark.parametrize("name", OPS)
def test_magnitudes_cover_the_spec_range(name):
    g = torch.Generator().manual_seed(1)
    op, v = sample_ops(20_000, 3, generator=g, device=torch.device("cpu"))
    mags = v[op == OPS.index(name)]
    low, high = RANGES[name]
    assert mags.min() >= low and mags.max() <= high
    assert mags.min() < low + 0.01 * (high - low) and mags.max() > high - 0.01 * (high - low)
    assert abs(mags.mean().item() - (low + high) / 2) < 0.02 * (high - low)


def test_posterize_keeps_4_to_7_bits():
    g = torch.Generator().manual_seed(2)
    op, v = sample_ops(20_000, 1, generator=g, device=torch.device("cpu"))
    bits = v[op == OPS.index("Posterize")].trunc().long()
    assert set(bits.tolist()) == {4, 5, 6, 7}


def cutout_boxes(c: int, h: int, w: int, n: int = 4000) -> torch.Tensor:
    """(n, H, W) bool: where strong_view with no ops and no weak step paints the Cutout."""
    x = torch.zeros(n, c, h, w, dtype=torch.uint8)
    g = torch.Generator().manual_seed(3)
    return strong_view(x, generator=g, flip=False, pad=0, num_ops=0).amax(1) > 0


@pytest.mark.parametrize("c,h,w", [(3, 32, 32), (1, 28, 28)])
def test_cutout_box_is_an_inclusive_square_of_1_to_16_pixels(c, h, w):
    box = cutout_boxes(c, h, w)
    rows, cols = box.any(2), box.any(1)
    height, width = rows.sum(1), cols.sum(1)
    assert torch.equal(box.sum((1, 2)), height * width), "the painted area is one rectangle"
    side = int(0.5 * w)  # v_c < 0.5, so the side int(v_c * W) + 1 is at most W / 2
    assert height.min() >= 1 and width.max() <= side and height.max() <= side
    interior = ~(rows[:, 0] | rows[:, -1] | cols[:, 0] | cols[:, -1])
    assert torch.equal(height[interior], width[interior]), "unclipped boxes are square"
    assert set(width[interior].tolist()) == set(range(1, side + 1))


def test_cutout_fill_colour():
    x = torch.zeros(64, 3, 32, 32, dtype=torch.uint8)
    g = torch.Generator().manual_seed(4)
    y = strong_view(x, generator=g, flip=False, pad=0, num_ops=0)
    painted = y.amax(1, keepdim=True).expand_as(y) > 0
    colours = y.permute(0, 2, 3, 1)[painted.permute(0, 2, 3, 1)[..., 0]]
    assert torch.equal(colours.unique(dim=0), torch.tensor([[125, 123, 114]], dtype=torch.uint8))


def coordinate_images(n: int, h: int, w: int) -> torch.Tensor:
    """Channel 0 holds row + 1, channel 1 column + 1, so a view reveals its offset and flip."""
    ys = torch.arange(1, h + 1).view(h, 1).expand(h, w)
    xs = torch.arange(1, w + 1).view(1, w).expand(h, w)
    return torch.stack([ys, xs, torch.zeros(h, w, dtype=torch.long)]).expand(n, 3, h, w).byte()


def decode_weak(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dy, dx, flipped) from weak views of coordinate_images (valid for pad < H / 2)."""
    h, w = y.shape[2:]
    centre = y[:, :, h // 2, w // 2].long()
    flipped = y[:, 1, h // 2, w // 2 + 1].long() < centre[:, 1]
    dy = centre[:, 0] - 1 - h // 2
    dx = torch.where(flipped, w - centre[:, 1] - w // 2, centre[:, 1] - 1 - w // 2)
    return dy, dx, flipped


@pytest.mark.parametrize("h,w,pad", [(32, 32, None), (28, 28, None), (24, 40, 6), (32, 32, 2)])
def test_weak_view_flips_half_and_crops_within_pad(h, w, pad):
    x = coordinate_images(4000, h, w)
    y = weak_view(x, generator=torch.Generator().manual_seed(5), pad=pad)
    dy, dx, flipped = decode_weak(y)
    p = max(1, round(h / 8)) if pad is None else pad
    assert abs(flipped.double().mean().item() - 0.5) < 0.03
    assert set(dy.tolist()) == set(range(-p, p + 1)) == set(dx.tolist())
    for i in range(0, 4000, 97):  # every view is exactly the flipped, padded, cropped image
        img = x[i].flip(2) if flipped[i] else x[i]
        padded = torch.nn.functional.pad(img, (p, p, p, p))
        want = padded[:, p + dy[i] : p + dy[i] + h, p + dx[i] : p + dx[i] + w]
        assert torch.equal(y[i], want), f"sample {i}"


def test_weak_view_without_flip_never_flips():
    y = weak_view(coordinate_images(2000, 32, 32), generator=torch.Generator().manual_seed(6),
                  flip=False)
    assert not decode_weak(y)[2].any()


# --- reproducibility, shapes, validation ----------------------------------------------------


@pytest.mark.parametrize("view", [weak_view, strong_view])
def test_same_seed_same_views_other_seed_other_views(view):
    x = torch.from_numpy(images("natural", 64, 3, 32, 32))
    first = view(x, generator=torch.Generator().manual_seed(8))
    again = view(x, generator=torch.Generator().manual_seed(8))
    other = view(x, generator=torch.Generator().manual_seed(9))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


@pytest.mark.parametrize("view", [weak_view, strong_view])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (3, 24, 40), (1, 64, 64)])
def test_views_keep_shape_dtype_and_device(view, shape):
    x = torch.from_numpy(images("natural", 16, *shape))
    y = view(x, generator=torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.dtype == torch.uint8 and y.device == x.device
    assert not torch.equal(y, x)


@pytest.mark.parametrize(
    "x",
    [torch.zeros(2, 3, 8, 8), torch.zeros(2, 2, 8, 8, dtype=torch.uint8),
     torch.zeros(3, 8, 8, dtype=torch.uint8)],
    ids=["float", "two-channels", "no-batch-dim"],
)  # fmt: skip
@pytest.mark.parametrize("view", [weak_view, strong_view])
def test_views_reject_bad_images(view, x):
    with pytest.raises(ValueError, match="uint8 images of shape"):
        view(x, generator=torch.Generator())


@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("channels_last", [True, False])
def test_normalize(c, channels_last):
    x = torch.from_numpy(images("random", 4, c, 8, 8))
    mean, std = torch.linspace(0.4, 0.5, c), torch.linspace(0.2, 0.3, c)
    y = normalize(x, mean, std, channels_last=channels_last)
    want = (x.double() / 255 - mean.double().view(1, c, 1, 1)) / std.double().view(1, c, 1, 1)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y.double(), want, rtol=0, atol=1e-6)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    assert y.is_contiguous(memory_format=layout)
    if c == 3:
        assert (y.stride(1) == 1) == channels_last  # channels innermost
    with pytest.raises(ValueError, match="shape"):
        normalize(x, torch.zeros(c + 1), torch.ones(c + 1))
