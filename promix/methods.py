"""The trained methods behind one interface: ProMix and its two baselines.

The Trainer runs any of them the same way: each epoch it asks the method for its phase,
runs the selection pass when the phase is "promix", and calls `method.step` on every batch.
A method's step changes only the `TrainState` it is handed (weights, optimizer, priors, the
per-peer chosen masks) and returns its named loss terms.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from .config import Config
from .coteaching import coteaching_step, forget_rate_at, resolve_forget_rate
from .schedules import EpochSchedule
from .state import TrainState
from .step import Batch, train_step, warmup_step


@dataclass
class Method:
    """What the Trainer asks of a method. phase: "warmup" | "promix" | "coteaching" (the
    selection pass and the strong view run in the "promix" phase). step: one optimizer
    step on a batch, returning the named loss terms."""

    cfg: Config
    name: ClassVar[str]
    peers: ClassVar[int] = 2  # networks trained

    def phase(self, sched: EpochSchedule) -> str:
        raise NotImplementedError

    def step(self, state: TrainState, batch: Batch, sched: EpochSchedule, *,
             autocast) -> dict[str, float]:
        raise NotImplementedError


class ProMix(Method):
    """Cross-entropy warm-up on every sample, then the ProMix step (SPEC §4, §6)."""

    name = "promix"

    def phase(self, sched):
        return "warmup" if sched.warmup else "promix"

    def step(self, state, batch, sched, *, autocast):
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


class CrossEntropy(Method):
    """The `ce` baseline: one network, cross-entropy on every sample for the whole run."""

    name, peers = "ce", 1

    def phase(self, sched):
        return "warmup"

    def step(self, state, batch, sched, *, autocast):
        return warmup_step(state.nets, state.optimizer, batch, penalty="none", autocast=autocast)


@dataclass
class CoTeaching(Method):
    """The `coteaching` baseline (coteaching.py): no warm-up, R(T) ramps down from 1."""

    noise: dict = field(default_factory=dict)  # the noise report: τ_f defaults to its rate
    name = "coteaching"

    def phase(self, sched):
        return "coteaching"

    def step(self, state, batch, sched, *, autocast):
        return coteaching_step(state.nets, state.optimizer, batch, autocast=autocast,
                               forget_rate=self.forget_rate(sched.epoch))

    def forget_rate(self, epoch: int) -> float:
        """Co-teaching's 1 - R(T) at this epoch."""
        c = self.cfg.coteaching
        return forget_rate_at(epoch, self.cfg.schedule.epochs, ramp_frac=c.forget_ramp_frac,
                              tau_f=resolve_forget_rate(c, self.noise))


def create_method(cfg: Config, noise: dict) -> Method:
    """The method cfg.run.method names."""
    if cfg.run.method == "coteaching":
        return CoTeaching(cfg, noise)
    return {"promix": ProMix, "ce": CrossEntropy}[cfg.run.method](cfg)
