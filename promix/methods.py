"""The trained methods behind one interface: ProMix and its two baselines.

The Trainer runs any of them the same way: each epoch it asks the method for its phase,
runs the selection pass when the phase is "promix", and calls `method.step` on every batch.
A method's step changes only the `TrainState` it is handed (weights, optimizer, priors, the
per-peer chosen masks) and returns its named loss terms.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import Config
from .coteaching import coteaching_step, forget_rate_at, resolve_forget_rate
from .schedules import EpochSchedule
from .state import TrainState
from .step import Batch, train_step, warmup_step


@dataclass
class ProMix:
    """Cross-entropy warm-up on every sample, then the ProMix step (SPEC §4, §6)."""

    cfg: Config
    name = "promix"
    peers = 2

    def phase(self, sched: EpochSchedule) -> str:
        return "warmup" if sched.warmup else "promix"

    def step(self, state: TrainState, batch: Batch, sched: EpochSchedule, *,
             autocast) -> dict[str, float]:
        if sched.warmup:
            return warmup_step(state.nets, state.optimizer, batch,
                               penalty=self.cfg.promix.conf_penalty, autocast=autocast)
        terms, chosen = train_step(
            state.nets, state.optimizer, batch, clean=[s.clean for s in state.selection],
            priors=state.priors, sched=sched, cfg=self.cfg.promix, random=state.random,
            autocast=autocast,
        )
        for peer, mask in zip(state.selection, chosen, strict=True):
            peer.chosen[batch.index] = mask
        return terms


@dataclass
class CrossEntropy:
    """The `ce` baseline: one network, cross-entropy on every sample for the whole run."""

    cfg: Config
    name = "ce"
    peers = 1

    def phase(self, sched: EpochSchedule) -> str:
        return "warmup"

    def step(self, state: TrainState, batch: Batch, sched: EpochSchedule, *,
             autocast) -> dict[str, float]:
        return warmup_step(state.nets, state.optimizer, batch, penalty="none", autocast=autocast)


@dataclass
class CoTeaching:
    """The `coteaching` baseline (coteaching.py): no warm-up, R(T) ramps down from 1."""

    cfg: Config
    noise: dict  # the dataset's noise report: τ_f defaults to its realized rate
    name = "coteaching"
    peers = 2

    def phase(self, sched: EpochSchedule) -> str:
        return "coteaching"

    def step(self, state: TrainState, batch: Batch, sched: EpochSchedule, *,
             autocast) -> dict[str, float]:
        return coteaching_step(state.nets, state.optimizer, batch, autocast=autocast,
                               forget_rate=self.forget_rate(sched.epoch))

    def forget_rate(self, epoch: int) -> float:
        """Co-teaching's 1 - R(T) at this epoch."""
        c = self.cfg.coteaching
        return forget_rate_at(epoch, self.cfg.schedule.epochs, ramp_frac=c.forget_ramp_frac,
                              tau_f=resolve_forget_rate(c, self.noise))


def create_method(cfg: Config, noise: dict):
    """The method cfg.run.method names."""
    if cfg.run.method == "coteaching":
        return CoTeaching(cfg, noise)
    return {"promix": ProMix, "ce": CrossEntropy}[cfg.run.method](cfg)
