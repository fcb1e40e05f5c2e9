"""Per-epoch schedules (SPEC §3), expressed as fractions of the run (SPEC §13.1).

E is the last epoch index (`epochs - 1`): the reference's 601 epochs 0..600 have E = 600.
With `epochs=601`, `warmup_epochs=10` and the default fractions, every value below equals the
reference's. For other lengths the ramps keep their proportions; a warm-up longer than its
proportional length shifts the ramps so the first SSL epoch starts where the reference's does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .config import ProMixConfig, ScheduleConfig

REFERENCE_WARMUP_FRAC = 10 / 600  # CIFAR-10's pretrain_ep = 10 of E = 600
MIN_AUTO_WARMUP = 3  # auto warm-up: at least this many epochs (SPEC §13.1)


@dataclass(frozen=True)
class EpochSchedule:
    epoch: int
    lr: float
    warmup: bool  # cross-entropy warm-up on all samples
    rho: float  # selection ratio ρ(e)
    w: float  # consistency / mix weight γ
    lambda_u: float  # unlabeled-loss weight λ_u
    lga: bool  # label guessing by agreement active (e > E - K)


def ramp(x: float, length: float) -> float:
    """R(x, L) = min(x / L, 1), clipped at 0; a zero length is a step."""
    if length <= 0:
        return 1.0
    return min(max(x / length, 0.0), 1.0)


def warmup_length(cfg: ScheduleConfig) -> int:
    """The configured warm-up, or max(proportional, MIN_AUTO_WARMUP) when auto."""
    if cfg.warmup_epochs is not None:
        return cfg.warmup_epochs
    last = cfg.epochs - 1
    return min(max(round(REFERENCE_WARMUP_FRAC * last), MIN_AUTO_WARMUP), max(cfg.epochs - 1, 0))


def prior_momentum(cfg: ScheduleConfig, steps_per_epoch: int) -> float:
    """m of the class-prior EMA: as configured, or 1 - 1/(time constant in steps)."""
    if cfg.prior_momentum is not None:
        return cfg.prior_momentum
    time_constant = max(cfg.prior_time_frac * steps_per_epoch * cfg.epochs, 1.0)
    return 1.0 - 1.0 / time_constant


class Schedule:
    def __init__(self, cfg: ScheduleConfig, promix: ProMixConfig, lr: float, lr_min: float):
        self.cfg, self.promix, self.lr0, self.lr_min = cfg, promix, lr, lr_min
        self.last = max(cfg.epochs - 1, 1)  # E
        self.warmup = warmup_length(cfg)
        # Ramps run from epoch 0 as in the reference. An auto warm-up longer than its
        # proportional length shifts them, so the first SSL epoch starts at the reference's
        # relative position (w = 0.2 there) instead of jumping to w = 1 (SPEC §13.1).
        proportional = REFERENCE_WARMUP_FRAC * self.last
        auto = cfg.warmup_epochs is None
        self.shift = max(self.warmup - proportional, 0.0) if auto else 0.0
        self.ramp_len = cfg.ramp_frac * self.last
        self.lambda_len = cfg.lambda_u_ramp_frac * self.last
        self.cutoff = round(cfg.lambda_u_cutoff_frac * self.last + self.shift, 6)
        self.lga_start = round(self.last - cfg.lga_frac * self.last, 6)  # LGA when e > E - K

    def at(self, epoch: int) -> EpochSchedule:
        cfg, p = self.cfg, self.promix
        e = epoch - self.shift
        cosine = (1 + math.cos(math.pi * epoch / self.last)) / 2
        lr = self.lr_min + (self.lr0 - self.lr_min) * cosine
        rho_end = p.rho if p.rho_end is None else p.rho_end
        rho = p.rho + (rho_end - p.rho) * ramp(e, self.ramp_len)
        if p.debias_pl == 0 and cfg.lambda_u_mode == "faithful":
            lambda_u = 1.0  # the reference ties λ_u to debias_pl (Q3)
        elif cfg.lambda_u_mode == "faithful" and epoch >= self.cutoff:
            lambda_u = 0.0
        else:
            lambda_u = cfg.lambda_u_max * ramp(e, self.lambda_len)
        return EpochSchedule(
            epoch=epoch,
            lr=lr,
            warmup=epoch < self.warmup,
            rho=rho,
            w=ramp(e, self.ramp_len),
            lambda_u=lambda_u,
            lga=p.lga and epoch > self.lga_start,
        )
