"""Schedules at their boundary epochs (SPEC §3) and the short-run scaling (SPEC §13.1)."""

import pytest

from promix.config import Config
from promix.schedules import Schedule, prior_momentum, ramp


def _reference():
    cfg = Config()  # the defaults are the paper's CIFAR-10 setting
    return Schedule(cfg.schedule, cfg.promix, 0.05, 5e-5)


@pytest.mark.parametrize(
    "epoch, warmup, w, lambda_u, lga",
    [
        (0, True, 0.0, 0.0, False),
        (9, True, 0.18, 0.009, False),
        (10, False, 0.2, 0.01, False),  # the first SSL epoch starts at w = 0.2
        (50, False, 1.0, 0.05, False),
        (99, False, 1.0, 0.099, False),
        (100, False, 1.0, 0.0, False),  # Q3: λ_u = 0 from epoch 100 on
        (350, False, 1.0, 0.0, False),
        (351, False, 1.0, 0.0, True),  # LGA for e > E - K = 350
        (600, False, 1.0, 0.0, True),
    ],
)
def test_reference_schedule(epoch, warmup, w, lambda_u, lga):
    s = _reference().at(epoch)
    assert (s.warmup, s.lga) == (warmup, lga)
    assert s.w == pytest.approx(w)
    assert s.lambda_u == pytest.approx(lambda_u)


def test_cosine_lr_endpoints():
    s = _reference()
    assert s.at(0).lr == pytest.approx(0.05)
    assert s.at(300).lr == pytest.approx((0.05 + 5e-5) / 2)
    assert s.at(600).lr == pytest.approx(5e-5)  # epoch 600 trains at η_min


def test_lambda_u_is_one_without_debiased_pseudo_labels_q3():
    cfg = Config()
    cfg.promix.debias_pl = 0.0
    assert Schedule(cfg.schedule, cfg.promix, 0.05, 5e-5).at(200).lambda_u == 1.0


def test_paper_mode_has_no_cutoff():
    cfg = Config()
    cfg.schedule.lambda_u_mode = "paper"
    assert Schedule(cfg.schedule, cfg.promix, 0.05, 5e-5).at(300).lambda_u == pytest.approx(0.1)


def test_rho_ramps_over_the_mix_ramp():
    cfg = Config()
    cfg.promix.rho, cfg.promix.rho_end = 0.2, 0.6
    s = Schedule(cfg.schedule, cfg.promix, 0.05, 5e-5)
    assert s.at(0).rho == pytest.approx(0.2)
    assert s.at(25).rho == pytest.approx(0.4)
    assert s.at(80).rho == pytest.approx(0.6)


def test_short_run_keeps_the_proportions():
    cfg = Config()
    cfg.schedule.epochs, cfg.schedule.warmup_epochs = 20, None
    s = Schedule(cfg.schedule, cfg.promix, 0.05, 5e-5)
    phases = [s.at(e) for e in range(20)]
    assert [p.warmup for p in phases].count(True) == 3  # the auto minimum, not 0 epochs
    first = phases[3]
    assert first.w == pytest.approx(0.2)  # starts where the reference's first SSL epoch does
    assert phases[5].w == 1.0
    assert any(p.lambda_u > 0 for p in phases) and phases[-1].lambda_u == 0
    assert [p.lga for p in phases].count(True) == 8  # last 250/600 of E = 19
    assert phases[-1].lr == pytest.approx(5e-5)


def test_explicit_warmup_does_not_shift_ramps():
    cfg = Config()
    cfg.schedule.warmup_epochs = 30  # CIFAR-100: w = 0.6 at its first SSL epoch
    assert Schedule(cfg.schedule, cfg.promix, 0.05, 5e-5).at(30).w == pytest.approx(0.6)


def test_prior_momentum():
    cfg = Config()
    assert prior_momentum(cfg.schedule, 195) == 0.9999
    cfg.schedule.prior_momentum = None
    assert 1 / (1 - prior_momentum(cfg.schedule, 195)) == pytest.approx(10_000 * 601 / 600)
    cfg.schedule.epochs = 20
    tc = 1 / (1 - prior_momentum(cfg.schedule, 30))
    assert tc == pytest.approx(10_000 / (195 * 600) * 30 * 20)


@pytest.mark.parametrize(
    "x, length, expected", [(0, 5, 0), (5, 10, 0.5), (20, 10, 1), (-1, 10, 0), (3, 0, 1)]
)
def test_ramp(x, length, expected):
    assert ramp(x, length) == expected
