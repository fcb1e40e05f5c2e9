"""Noise models: realized rates, transition structure, determinism (SPEC §8)."""

import pytest
import torch

from promix.data.base import DataError
from promix.data.noise import CIFAR10_ASYM, asym_map, make_noise, transition_matrix

N = 10_000


def balanced(num_classes: int, n: int = N) -> torch.Tensor:
    return torch.arange(n) % num_classes


def test_transition_matrix_counts():
    true = torch.tensor([0, 0, 1, 1])
    noisy = torch.tensor([0, 1, 1, 1])
    t = transition_matrix(true, noisy, 2)
    assert t.tolist() == [[0.5, 0.5], [0.0, 1.0]]


@pytest.mark.parametrize(
    "kind, rate, classes, expected",
    [
        ("sym", 0.2, 10, 0.18),
        ("sym", 0.5, 10, 0.45),
        ("sym", 0.8, 10, 0.72),
        ("sym", 0.5, 100, 0.495),
        ("sym_exact", 0.5, 10, 0.5),
        ("sym_exact", 0.2, 100, 0.2),
        ("none", 0.5, 10, 0.0),
    ],
)
def test_realized_rate(kind, rate, classes, expected):
    noisy, info = make_noise(balanced(classes), kind=kind, rate=rate, num_classes=classes, seed=1)
    assert info["realized_rate"] == pytest.approx(expected, abs=0.015)
    wrong = (noisy != balanced(classes)).double().mean()
    assert float(wrong) == pytest.approx(info["realized_rate"])
    assert len(info["per_class_rate"]) == classes
    assert info["kind"] == kind and info["seed"] == 1 and info["rate"] == rate


def test_sym_exact_rate_is_exact_and_never_keeps_the_label():
    true = balanced(10, 1001)
    noisy, info = make_noise(true, kind="sym_exact", rate=0.3, num_classes=10, seed=0)
    assert (noisy != true).sum() == int(0.3 * 1001)


def test_sym_off_diagonal_roughly_uniform():
    _, info = make_noise(balanced(10, 50_000), kind="sym", rate=0.5, num_classes=10, seed=3)
    t = torch.tensor(info["transition_matrix"])
    off = t[~torch.eye(10, dtype=torch.bool)]
    assert off.mean() == pytest.approx(0.05, abs=0.003)
    assert off.min() > 0.04 and off.max() < 0.06
    assert t.diagonal().min() > 0.53  # 1 - r + r/C = 0.55


def test_sym_reference_subset_size():
    # floor(rN) samples are redrawn; a redraw hits the true class with probability 1/C.
    true = torch.zeros(1000, dtype=torch.int64)
    noisy, _ = make_noise(true, kind="sym", rate=0.37, num_classes=2, seed=5)
    assert 0 < (noisy != true).sum() <= 370


def test_asym_cifar10_map_exact():
    true = balanced(10)
    noisy, info = make_noise(true, kind="asym", rate=0.4, num_classes=10, seed=2,
                             dataset="cifar10")
    changed = noisy != true
    for src, dst in zip(true[changed].tolist(), noisy[changed].tolist(), strict=True):
        assert CIFAR10_ASYM[src] == dst
    t = torch.tensor(info["transition_matrix"])
    for src, dst in CIFAR10_ASYM.items():
        assert t[src, dst] == pytest.approx(0.4, abs=0.04)
    for c in (0, 1, 6, 7, 8):
        assert info["per_class_rate"][c] == 0
    assert info["realized_rate"] == pytest.approx(0.2, abs=0.02)


def test_asym_uses_the_sym_subset():
    # sym_exact changes every sample of the shuffled floor(rN) subset; asym with the same
    # seed changes exactly those of it whose class is mapped.
    true = balanced(10)
    chosen, _ = make_noise(true, kind="sym_exact", rate=0.4, num_classes=10, seed=9)
    asym, _ = make_noise(true, kind="asym", rate=0.4, num_classes=10, seed=9, dataset="cifar10")
    mapped = torch.tensor([c in CIFAR10_ASYM for c in true.tolist()])
    assert torch.equal(asym != true, (chosen != true) & mapped)


def test_asym_cifar100_next_fine_class_in_superclass():
    superclass = [c % 20 for c in range(100)]  # class c belongs to group c mod 20
    true = balanced(100, 50_000)
    noisy, info = make_noise(true, kind="asym", rate=0.4, num_classes=100, seed=0,
                             superclass=superclass)
    target = asym_map(100, "cifar100", None, superclass)
    assert target[0] == 20 and target[80] == 0  # members 0, 20, 40, 60, 80: cyclic
    changed = noisy != true
    assert all(target[s] == d for s, d in zip(true[changed].tolist(),
                                              noisy[changed].tolist(), strict=True))
    assert info["realized_rate"] == pytest.approx(0.4, abs=0.01)


def test_asym_needs_a_map_on_other_data():
    with pytest.raises(DataError, match="class_map"):
        make_noise(balanced(3), kind="asym", rate=0.4, num_classes=3, seed=0, dataset="folder")
    noisy, _ = make_noise(balanced(3), kind="asym", rate=1.0, num_classes=3, seed=0,
                          class_map={0: 1})
    assert set(noisy[balanced(3) == 0].tolist()) == {1}
    assert torch.equal(noisy[balanced(3) != 0], balanced(3)[balanced(3) != 0])


def images_for(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8)


@pytest.mark.parametrize("rate", [0.2, 0.4])
def test_idn_rate_and_instance_dependence(rate):
    true = balanced(10, 5000)
    images = images_for(5000)
    noisy, info = make_noise(true, kind="idn", rate=rate, num_classes=10, seed=4, images=images)
    assert info["realized_rate"] == pytest.approx(rate, abs=0.03)
    # the flip target depends on the image: two copies of an image mostly flip alike
    # (a random projection's softmax is peaked), where sym would agree 1 time in 9
    twins = images.repeat_interleave(2, dim=0)
    twin_true = true.repeat_interleave(2)
    noisy2, _ = make_noise(twin_true, kind="idn", rate=0.9, num_classes=10, seed=4,
                           images=twins)
    a, b, t = noisy2[0::2], noisy2[1::2], twin_true[0::2]
    both = (a != t) & (b != t)
    assert (a[both] == b[both]).float().mean() > 0.8


def test_idn_needs_images():
    with pytest.raises(DataError, match="images"):
        make_noise(balanced(10), kind="idn", rate=0.2, num_classes=10, seed=0)


@pytest.mark.parametrize("kind", ["sym", "sym_exact", "asym", "idn"])
def test_deterministic_given_seed_and_seed_matters(kind):
    true = balanced(10, 2000)
    kw = dict(kind=kind, rate=0.4, num_classes=10, dataset="cifar10", images=images_for(2000))
    a, info_a = make_noise(true, seed=7, **kw)
    b, info_b = make_noise(true, seed=7, **kw)
    c, _ = make_noise(true, seed=8, **kw)
    assert torch.equal(a, b) and info_a == info_b
    assert not torch.equal(a, c)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(kind="sideways"), "unknown noise kind"),
        (dict(rate=1.5), "rate"),
        (dict(num_classes=1), "at least 2"),
    ],
)
def test_bad_arguments(kw, match):
    args = dict(kind="sym", rate=0.2, num_classes=10, seed=0) | kw
    with pytest.raises(DataError, match=match):
        make_noise(torch.zeros(10, dtype=torch.int64), **args)
