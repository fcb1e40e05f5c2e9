"""Mixup and FMix: shapes, label mixing, mask statistics (SPEC §6.6, §7.3)."""

import math

import numpy as np
import pytest
import torch

from promix.mixing import fmix, fmix_mask, mixup


def _inputs(n=6, c=3, h=8, w=8, k=4):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, c, h, w, generator=g)
    t = torch.nn.functional.one_hot(torch.arange(n) % k, k).float()
    return x, t


def test_mixup_shapes_and_convex_targets():
    x, t = _inputs()
    out = mixup(x, t, alpha=4.0, rng=np.random.default_rng(0),
                generator=torch.Generator().manual_seed(0))
    assert out.images.shape == x.shape and out.targets.shape == t.shape
    assert torch.allclose(out.targets.sum(1), torch.ones(6))
    lam = out.targets.max(1).values.min()  # λ >= 0.5 is the weight of the sample itself
    assert lam >= 0.5 - 1e-6


def test_mixup_lambda_is_the_larger_of_the_pair():
    x, t = _inputs()
    rng = np.random.default_rng(1)
    expected = rng.beta(4, 4)
    expected = max(expected, 1 - expected)
    out = mixup(x, t, alpha=4.0, rng=np.random.default_rng(1),
                generator=torch.Generator().manual_seed(0))
    # Row i mixes sample i with weight λ: its own one-hot entry is >= λ.
    own = out.targets[torch.arange(6), torch.arange(6) % 4]
    assert (own >= expected - 1e-6).all()


@pytest.mark.parametrize("mu", [0.0, 0.3, 0.5, 0.77, 1.0])
def test_fmix_mask_has_mu_fraction_of_ones(mu):
    mask = fmix_mask(mu, (32, 32), decay=3.0, rng=np.random.default_rng(0),
                     generator=torch.Generator().manual_seed(0))
    assert mask.shape == (32, 32)
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert abs(mask.sum().item() - mu * 1024) <= 1


def test_fmix_mask_is_low_frequency():
    # A low-frequency mask has few 0/1 boundaries compared with a random one.
    mask = fmix_mask(0.5, (32, 32), decay=3.0, rng=np.random.default_rng(0),
                     generator=torch.Generator().manual_seed(0))
    edges = (mask[1:] != mask[:-1]).sum() + (mask[:, 1:] != mask[:, :-1]).sum()
    assert edges < 300  # a random half mask has about 1000


def test_fmix_images_come_from_the_two_sources_and_targets_mix_with_mu():
    x, t = _inputs(h=32, w=32)
    rng = np.random.default_rng(3)
    mu = np.random.default_rng(3).beta(1.0, 1.0)
    out = fmix(x, t, decay=3.0, rng=rng, generator=torch.Generator().manual_seed(0))
    own = out.targets[torch.arange(6), torch.arange(6) % 4]
    assert torch.allclose(out.targets.sum(1), torch.ones(6))
    assert (own >= min(mu, 1.0) - 1e-6).all()
    # Every pixel equals either the sample's own pixel or some other sample's.
    same = (out.images == x).all(1)  # (n, H, W)
    assert same.float().mean() >= mu - 0.05


def _distinct(n=6, h=8, w=8):
    """n random images, each the only one of its class: a mixed target names both sources."""
    x = torch.randn(n, 3, h, w, generator=torch.Generator().manual_seed(1))
    return x, torch.eye(n)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mixup_images_and_targets_mix_the_same_pair_with_the_same_weights(seed):
    """Row i is λ·(sample i) + (1-λ)·(its partner) in the image and in the target alike, with
    λ >= 0.5 on sample i itself: a swap of the sides in either breaks the identity."""
    x, t = _distinct()
    out = mixup(x, t, alpha=4.0, rng=np.random.default_rng(seed),
                generator=torch.Generator().manual_seed(seed))
    lam0 = np.random.default_rng(seed).beta(4.0, 4.0)
    lam = max(lam0, 1 - lam0)
    for i in range(len(x)):
        weights = out.targets[i]
        others = weights.clone().index_fill_(0, torch.tensor([i]), 0)
        if not others.any():  # paired with itself
            assert float(weights[i]) == pytest.approx(1.0)
        else:  # λ >= 0.5 on the sample itself, 1 - λ on its partner
            assert float(weights[i]) == pytest.approx(lam) and lam >= 0.5
            assert float(others.max()) == pytest.approx(1 - lam) and others.sum() == others.max()
        rebuilt = sum(float(weights[j]) * x[j] for j in range(len(x)))
        torch.testing.assert_close(out.images[i], rebuilt)
    partners = out.targets.clone().fill_diagonal_(0).argmax(1)
    assert len(set(partners.tolist())) > 1  # a real permutation, not one partner for all


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_fmix_mask_keeps_the_sample_where_its_target_says(seed):
    """Each pixel of row i is sample i's or its partner's; sample i's share of the pixels is
    its target weight μ (to one pixel), the partner's 1-μ: an inverted mask gives 1-μ."""
    x, t = _distinct(h=16, w=16)
    rng = np.random.default_rng(seed)
    mu = float(np.random.default_rng(seed).beta(1.0, 1.0))
    out = fmix(x, t, decay=3.0, rng=rng, generator=torch.Generator().manual_seed(seed))
    for i in range(len(x)):
        own = (out.images[i] == x[i]).all(0)  # (H, W)
        weights = out.targets[i]
        if float(weights[i]) == pytest.approx(1.0):
            assert own.all()  # paired with itself
            continue
        j = int(weights.clone().index_fill_(0, torch.tensor([i]), 0).argmax())
        assert float(weights[i]) == pytest.approx(mu) and float(weights[j]) == pytest.approx(1 - mu)
        assert ((out.images[i] == x[j]).all(0) | own).all()
        assert abs(own.float().mean().item() - mu) <= 1 / own.numel() + 1e-6


def reference_mask(mu, h, w, decay, noise, coin):
    """The FMix mask as the method states it, in NumPy float64, from the same Gaussian noise
    (2, h, w//2+1) and the same ceil/floor coin: f = sqrt(fx² + fy²) with fy = fftfreq(h),
    fx the first w//2+1 entries of fftfreq(w) (up to sign); spectrum N(0,1) + iN(0,1) scaled
    by 1/max(f, 1/max(h, w))^decay; inverse rFFT; the top ⌈μhw⌉ (coin < ½) or ⌊μhw⌋ pixels."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.abs(np.fft.fftfreq(w)[: w // 2 + 1])[None, :]
    f = np.sqrt(fx**2 + fy**2)
    scale = 1 / np.maximum(f, 1 / max(h, w)) ** decay
    grey = np.fft.irfft2((noise[0] + 1j * noise[1]) * scale, s=(h, w))
    k = math.ceil(mu * h * w) if coin < 0.5 else math.floor(mu * h * w)
    mask = np.zeros(h * w)
    mask[np.argsort(-grey.ravel())[:k]] = 1
    return mask.reshape(h, w)


@pytest.mark.parametrize("seed, mu, shape, decay", [
    (0, 0.3, (32, 32), 3.0), (1, 0.62, (32, 32), 3.0), (2, 0.5, (16, 24), 2.0),
    (3, 0.45, (9, 7), 3.0)])
def test_fmix_mask_equals_a_numpy_reference(seed, mu, shape, decay):
    h, w = shape
    noise = torch.randn((2, h, w // 2 + 1), generator=torch.Generator().manual_seed(seed))
    coin = np.random.default_rng(seed).random()
    mask = fmix_mask(mu, shape, decay=decay, rng=np.random.default_rng(seed),
                     generator=torch.Generator().manual_seed(seed))
    expected = reference_mask(mu, h, w, decay, noise.double().numpy(), coin)
    assert mask.tolist() == expected.tolist()


def test_fmix_mask_rounds_up_or_down_with_equal_chance():
    sizes = [int(fmix_mask(0.3, (8, 8), decay=3.0, rng=np.random.default_rng(s),
                           generator=torch.Generator().manual_seed(s)).sum())
             for s in range(40)]
    assert set(sizes) == {19, 20}  # 0.3 * 64 = 19.2
    assert 10 <= sizes.count(20) <= 30


def test_fmix_mu_is_uniform_on_0_1():
    """μ, read back from the targets, over 400 draws: mean ½, each quarter of [0, 1] a
    quarter of the draws (a Beta other than (1, 1) fails)."""
    x, t = _distinct(n=2, h=4, w=4)
    rng, g = np.random.default_rng(0), torch.Generator().manual_seed(0)
    mus = []
    for _ in range(400):
        out = fmix(x, t, decay=3.0, rng=rng, generator=g)
        if float(out.targets[0, 1]) > 0:  # paired with the other sample: weight μ on itself
            mus.append(float(out.targets[0, 0]))
    mus = np.array(mus)
    assert len(mus) > 100 and abs(mus.mean() - 0.5) < 0.06
    quarters = np.histogram(mus, bins=4, range=(0, 1))[0] / len(mus)
    assert np.all(np.abs(quarters - 0.25) < 0.08), quarters


def test_mixing_is_reproducible():
    x, t = _inputs(h=32, w=32)
    a, b = (fmix(x, t, decay=3.0, rng=np.random.default_rng(5),
                 generator=torch.Generator().manual_seed(5)) for _ in range(2))
    assert torch.equal(a.images, b.images) and torch.equal(a.targets, b.targets)


def test_fmix_mask_is_made_on_the_requested_device():
    # "meta" stands in for an accelerator: every tensor of the mask must be made on it.
    mask = fmix_mask(0.3, (8, 8), decay=3.0, rng=np.random.default_rng(0), generator=None,
                     device="meta")
    assert mask.device.type == "meta" and mask.shape == (8, 8)


def test_fmix_builds_its_mask_on_the_batch_device():
    x, t = torch.zeros(4, 1, 4, 4, device="meta"), torch.zeros(4, 3, device="meta")
    out = fmix(x, t, decay=3.0, rng=np.random.default_rng(0), generator=None)
    assert out.images.device.type == "meta" and out.images.shape == x.shape
