"""Selection masks on hand-built tensors (SPEC §5, §6.3, §6.5)."""

import math

import numpy as np
import pytest
import torch

from promix.selection import (
    agreement_candidates,
    auto_rho,
    class_quotas,
    class_small_loss,
    fit_gmm,
    gmm_clean,
    lenient_rho,
    lga_cap,
    matched_high_confidence,
    min_max,
    per_class_share,
    rank_within_class,
)

LABELS = torch.tensor([0, 0, 0, 1, 1, 1])
LOSS = torch.tensor([0.9, 0.1, 0.5, 0.2, 0.8, 0.3])


@pytest.mark.parametrize(
    "rho, rule, expected",
    [
        (0.5, "uniform", [2, 2]),  # ceil(0.5 * 6 / 2) = 2
        (0.2, "uniform", [1, 1]),  # ceil(0.6) = 1
        (1.0, "uniform", [3, 3]),
        (0.01, "uniform", [1, 1]),  # at least one per class
        (0.5, "per_class", [2, 2]),  # ceil(0.5 * 3) = 2
    ],
)
def test_quota_table(rho, rule, expected):
    assert class_quotas(LABELS, rho, 2, rule=rule).tolist() == expected
    if rule == "uniform":  # the reference's rule is the default
        assert class_quotas(LABELS, rho, 2).tolist() == expected


def test_unknown_quota_rule():
    with pytest.raises(ValueError, match="unknown quota rule 'ceil'"):
        class_quotas(LABELS, 0.5, 2, rule="ceil")


def test_uniform_quota_uses_n_over_c_not_class_size():
    # Q5: an imbalanced class of 8 gets ceil(ρN/C) = ceil(0.5*10/2) = 3, and a class of 2 is
    # fully selected (min(n_j, quota)).
    labels = torch.tensor([0] * 8 + [1] * 2)
    assert class_quotas(labels, 0.5, 2, rule="uniform").tolist() == [3, 2]
    assert class_quotas(labels, 0.5, 2, rule="per_class").tolist() == [4, 1]


def test_quota_empty_class_gets_zero_and_per_class_rho_vector():
    labels = torch.tensor([0, 0, 0, 0, 2, 2])
    assert class_quotas(labels, 0.5, 3, rule="uniform").tolist() == [1, 0, 1]
    rho = torch.tensor([1.0, 0.5, 0.5])
    assert class_quotas(labels, rho, 3, rule="per_class").tolist() == [4, 0, 1]


def test_rank_within_class():
    assert rank_within_class(LOSS, LABELS).tolist() == [2, 0, 1, 0, 2, 1]


def test_css_selects_smallest_losses_per_class():
    mask = class_small_loss(LOSS, LABELS, torch.tensor([2, 1]))
    assert mask.tolist() == [False, True, True, True, False, False]


def test_css_is_per_class_not_global():
    # Class 1's losses are all larger than class 0's, yet class 1 still gets its quota.
    loss = torch.tensor([0.1, 0.2, 0.3, 5.0, 6.0, 7.0])
    mask = class_small_loss(loss, LABELS, torch.tensor([1, 1]))
    assert mask.tolist() == [True, False, False, True, False, False]


@pytest.mark.parametrize(
    "prob_of_label, clean, expected",
    [
        (0.995, False, True),  # confident in the given label
        (0.99, False, False),  # strict inequality at τ
        (0.5, True, True),  # already in the CSS set
        (0.5, False, False),
    ],
)
def test_mhcs(prob_of_label, clean, expected):
    probs = torch.tensor([[1 - prob_of_label, prob_of_label]])
    out = matched_high_confidence(torch.tensor([clean]), probs, torch.tensor([1]), 0.99)
    assert out.tolist() == [expected]


def test_mhcs_requires_the_confident_class_to_match_the_label():
    probs = torch.tensor([[0.999, 0.001]])  # confident, but in class 0
    out = matched_high_confidence(torch.tensor([False]), probs, torch.tensor([1]), 0.99)
    assert out.tolist() == [False]


def _probs(classes, conf):
    p = torch.full((len(classes), 3), 0.0)
    for i, (c, q) in enumerate(zip(classes, conf, strict=False)):
        p[i] = (1 - q) / 2
        p[i, c] = q
    return p


def test_lga_needs_both_confident_and_agreeing():
    p1 = _probs([0, 1, 2, 0, 1, 2], [0.99, 0.99, 0.99, 0.5, 0.99, 0.99])
    p2 = _probs([0, 1, 1, 0, 1, 2], [0.99, 0.99, 0.99, 0.99, 0.8, 0.99])
    chosen = torch.tensor([False, True, False, False, False, False])
    added = agreement_candidates(chosen, p1, p2, tau=0.95, cap=10)
    # 0: both agree confidently; 1: already chosen; 2: disagree; 3, 4: one not confident; 5 ok
    assert added.tolist() == [True, False, False, False, False, True]


def test_lga_cap_keeps_the_most_confident():
    p1 = _probs([0, 0, 0, 0], [0.96, 0.99, 0.97, 0.999])
    p2 = _probs([0, 0, 0, 0], [0.96, 0.99, 0.98, 0.999])
    added = agreement_candidates(torch.zeros(4, dtype=torch.bool), p1, p2, 0.95, cap=2)
    assert added.tolist() == [False, True, False, True]


@pytest.mark.parametrize("cap", [0, -5])
def test_lga_no_room_adds_nothing(cap):
    p = _probs([0, 0], [0.999, 0.999])
    assert not agreement_candidates(torch.zeros(2, dtype=torch.bool), p, p, 0.9, cap).any()


def test_lga_cap_formula():
    assert lga_cap(0, 256, 0.9) == 230  # ⌊θB⌋ with B = 256
    assert lga_cap(200, 256, 0.9) == 30
    assert lga_cap(231, 256, 0.9) == -1
    assert lga_cap(10, 128, 0.9) == math.floor(0.9 * 128) - 10


def test_gmm_separates_two_loss_modes():
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(300, generator=g) * 0.2
    noisy = 2 + torch.rand(200, generator=g) * 0.5
    mask = gmm_clean(torch.cat([clean, noisy]))
    assert mask[:300].all() and not mask[300:].any()


def test_auto_rho_estimates_the_clean_fraction_per_class():
    g = torch.Generator().manual_seed(0)
    loss, labels = [], []
    for c, frac in enumerate([0.8, 0.5]):
        n_clean = int(400 * frac)
        loss += [torch.rand(n_clean, generator=g) * 0.3, 3 + torch.rand(400 - n_clean, generator=g)]
        labels += [torch.full((400,), c)]
    rho = auto_rho(torch.cat(loss), torch.cat(labels), 2, low=0.05, high=1.0)
    assert rho.tolist() == pytest.approx([0.8, 0.5], abs=0.02)


def test_lenient_rho_drops_only_the_upper_half_of_the_noisy_mode():
    # Per class: clean losses near 0, noisy ones a symmetric bump around 3; the rule keeps the
    # clean share plus the noisy samples below the bump's mean, 1 - ν/2, where auto_rho keeps
    # the clean share. A class of 5 samples is too small to fit and keeps `high`.
    g = torch.Generator().manual_seed(0)
    loss, labels = [], []
    for c, frac in enumerate([0.8, 0.5]):
        n_clean = int(400 * frac)
        noisy = 3 + torch.randn(400 - n_clean, generator=g) * 0.3
        loss += [torch.rand(n_clean, generator=g) * 0.3, noisy]
        labels += [torch.full((400,), c)]
    loss += [torch.rand(5, generator=g)]
    labels += [torch.full((5,), 2)]
    rho = lenient_rho(torch.cat(loss), torch.cat(labels), 3, low=0.05, high=0.95)
    assert rho.tolist() == pytest.approx([0.9, 0.75, 0.95], abs=0.03)


def test_auto_rho_with_a_low_posterior_threshold_keeps_the_doubtful_middle():
    # Two overlapping modes: a threshold of 0.1 keeps the samples the mixture only half
    # believes are clean; 0.5 does not. Separated modes give the clean share at either.
    g = torch.Generator().manual_seed(0)
    labels = torch.zeros(600, dtype=torch.long)
    overlapping = torch.cat([torch.randn(400, generator=g), 2 + torch.randn(200, generator=g)])
    half = auto_rho(overlapping, labels, 1, low=0.05, high=1.0)
    low = auto_rho(overlapping, labels, 1, low=0.05, high=1.0, threshold=0.1)
    assert float(low) > float(half) + 0.05
    separated = torch.cat([torch.rand(400, generator=g), 5 + torch.rand(200, generator=g)])
    assert float(auto_rho(separated, labels, 1, low=0.05, high=1.0, threshold=0.1)) == (
        pytest.approx(400 / 600, abs=0.01))
    for bad in (0.0, 1.0):
        with pytest.raises(ValueError, match=f"^threshold={bad}: a posterior threshold lies "
                                             "strictly between 0 and 1$"):
            auto_rho(separated, labels, 1, low=0.05, high=1.0, threshold=bad)


@pytest.mark.parametrize("size, fitted", [(7, False), (8, True)])
def test_a_class_needs_eight_samples_for_a_fit(size, fitted):
    # Clean near 0 and noisy near 5 in equal parts: a fit keeps about half; too few keep high.
    g = torch.Generator().manual_seed(0)
    loss = torch.cat([torch.rand(size // 2, generator=g) * 0.1,
                      5 + torch.rand(size - size // 2, generator=g) * 0.1])
    labels = torch.zeros(size, dtype=torch.long)
    rho = auto_rho(loss, labels, 1, low=0.05, high=0.95)
    assert rho.dtype == torch.float64
    assert float(rho) == (pytest.approx((size // 2) / size) if fitted else 0.95)


def test_gmm_clean_weight_and_component():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.rand(300, generator=g) * 0.2, 0.8 + torch.rand(100, generator=g) * 0.2])
    gmm = fit_gmm(x)
    assert gmm.clean == int(gmm.mean.argmin()) and gmm.mean[gmm.clean] < 0.2
    assert gmm.clean_weight == pytest.approx(0.75, abs=0.01)
    assert gmm.weight.sum().item() == pytest.approx(1.0)
    assert gmm.posterior.shape == (400, 2)


def test_min_max():
    assert min_max(torch.tensor([2.0, 4.0, 3.0])).tolist() == [0.0, 1.0, 0.5]
    assert min_max(torch.full((3,), 7.0)).tolist() == [0.0, 0.0, 0.0]  # constant: 0, not NaN


def test_rank_within_class_on_many_samples_with_ties():
    """Against a plain per-class sort: 300 samples, 7 classes, losses on a coarse grid (many
    ties, broken by index, so the ranks are deterministic)."""
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 7, (300,), generator=g)
    loss = torch.randint(0, 20, (300,), generator=g).float() / 4
    expected = [0] * 300
    for c in range(7):
        members = sorted((float(loss[i]), i) for i in range(300) if labels[i] == c)
        for r, (_, i) in enumerate(members):
            expected[i] = r
    assert rank_within_class(loss, labels).tolist() == expected


def test_a_class_of_one_sample_keeps_it():
    labels = torch.tensor([0, 0, 0, 0, 0, 1])
    assert class_quotas(labels, 0.1, 2, rule="uniform").tolist() == [1, 1]
    assert class_quotas(labels, 0.1, 2, rule="per_class").tolist() == [1, 1]


def test_lga_confidence_must_exceed_tau_strictly():
    p = torch.tensor([[0.95, 0.03, 0.02], [0.97, 0.02, 0.01]])
    tau = float(p[0, 0])  # exactly the first sample's confidence
    for p1, p2 in ((p, p), (p, torch.tensor([[0.99, 0.0, 0.01]] * 2))):
        added = agreement_candidates(torch.zeros(2, dtype=torch.bool), p1, p2, tau, cap=5)
        assert added.tolist() == [False, True]
        added = agreement_candidates(torch.zeros(2, dtype=torch.bool), p2, p1, tau, cap=5)
        assert added.tolist() == [False, True]


def test_min_max_scales_small_ranges_too():
    assert min_max(torch.tensor([0.1, 0.3, 0.2])).tolist() == pytest.approx([0.0, 1.0, 0.5])


@pytest.mark.filterwarnings("ignore::UserWarning")  # sklearn: "did not converge" (tol = 0)
def test_fit_gmm_equals_scikit_learn_em():
    """50 EM steps from the same start (means at the quartiles, equal weights, the data's
    variance) as scikit-learn's GaussianMixture: the same weights, means and variances."""
    mixture = pytest.importorskip("sklearn.mixture")
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(300, generator=g) * 0.15 + 0.2,
                   torch.randn(150, generator=g) * 0.2 + 0.7]).double()
    gmm = fit_gmm(x)
    start = torch.quantile(x, torch.tensor([0.25, 0.75], dtype=x.dtype))
    ref = mixture.GaussianMixture(
        2, covariance_type="diag", reg_covar=0.0, max_iter=50, tol=0.0, n_init=1,
        weights_init=[0.5, 0.5], means_init=start.numpy()[:, None],
        precisions_init=np.full((2, 1), 1 / float(x.var()))).fit(x.numpy()[:, None])
    np.testing.assert_allclose(gmm.weight.numpy(), ref.weights_, rtol=1e-7)
    np.testing.assert_allclose(gmm.mean.numpy(), ref.means_[:, 0], rtol=1e-7)
    np.testing.assert_allclose(gmm.var.numpy(), ref.covariances_[:, 0], rtol=1e-7)


def test_ranks_are_computed_on_the_losses_device():
    loss, labels = LOSS.to("meta"), LABELS.to("meta")  # "meta" stands in for a GPU
    assert rank_within_class(loss, labels).device.type == "meta"


def test_quota_is_computed_in_double_precision():
    # ⌈0.6·25⌉ = 15 exactly; in float32 0.6·25 rounds to 15.000001 and the ceiling gives 16.
    labels = torch.zeros(25, dtype=torch.long)
    assert math.ceil(0.6 * 25) == 15
    for rule in ("uniform", "per_class"):
        assert class_quotas(labels, 0.6, 1, rule=rule).tolist() == [15]


def test_quota_covers_classes_above_the_largest_label():
    # Classes 2 and 3 have no sample: a quota of 0, and still one entry per class.
    labels = torch.tensor([0, 0, 1])
    assert class_quotas(labels, 0.5, 4, rule="uniform").tolist() == [1, 1, 0, 0]  # ⌈0.375⌉
    assert class_quotas(labels, 0.5, 4, rule="per_class").tolist() == [1, 1, 0, 0]


def test_per_class_share_is_clipped_to_low_and_high():
    # Three classes of 8 whose share (here the mean loss) is -1, 0.5 and 3, and a class of 7.
    loss = torch.cat([torch.full((8,), -1.0), torch.full((8,), 0.5), torch.full((8,), 3.0),
                      torch.zeros(7)])
    labels = torch.arange(4).repeat_interleave(torch.tensor([8, 8, 8, 7]))
    rho = per_class_share(loss, labels, 5, lambda m: m.mean(), low=0.2, high=0.8)
    assert rho.tolist() == [0.2, 0.5, 0.8, 0.8, 0.8]  # classes 3 (7 samples) and 4 keep high


@pytest.mark.parametrize("estimate", [auto_rho, lenient_rho])
def test_estimated_rho_is_raised_to_low(estimate):
    # One class, half its losses near 0 and half near 5: either rule keeps about one half,
    # which a floor of 0.9 lifts to 0.9.
    g = torch.Generator().manual_seed(0)
    loss = torch.cat([torch.rand(50, generator=g) * 0.1, 5 + torch.rand(50, generator=g) * 0.1])
    labels = torch.zeros(100, dtype=torch.long)
    assert float(estimate(loss, labels, 1, low=0.05, high=1.0)) < 0.9
    assert float(estimate(loss, labels, 1, low=0.9, high=1.0)) == 0.9


def test_gmm_clean_runs_the_given_number_of_em_steps():
    # After one EM step the posterior is that of the start: equal weights and variances, means
    # at the quartiles of the scaled losses (2.5/30 and 8.5/30), so a sample is clean when it
    # lies below their midpoint 5.5/30. Fitted to convergence, only the outlier 30 is noisy.
    loss = torch.tensor([0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 30.0])
    assert gmm_clean(loss, iters=1).tolist() == [True] * 5 + [False] * 6
    assert gmm_clean(loss).tolist() == [True] * 10 + [False]
