"""The epoch loop: selection pass, training steps, evaluation, logging (SPEC §3-§9).

Training images live on the device as one uint8 tensor; every epoch draws a permutation,
builds the weak and strong views in batches on the device and calls the step. Nothing is
re-read from disk, and no dataset is rebuilt.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .config import Config, ConfigError
from .coteaching import coteaching_step, forget_rate_at, resolve_forget_rate
from .data.augment import normalize, render_strong, strong_view, weak_view
from .data.base import Dataset
from .data.load import flip_default
from .debias import PriorState
from .distributed import World
from .hardware import CudaGraphed, autocast, resolve_device, resolve_precision, seed_everything
from .inference import PeerOutputs, accuracy, predict, selection_quality
from .models import TwoHeadNet, create_model
from .schedules import EpochSchedule, Schedule, prior_momentum
from .selection import auto_rho, class_quotas, class_small_loss, gmm_clean, lenient_rho
from .step import Batch, StepRandom, train_step, warmup_step


def strong_renderer(mode: str, device: torch.device):
    """The strong view's `render` for run.augment (config.py): identical pixels, other speed."""
    if mode == "auto":
        mode = "graph" if device.type == "cuda" else "grouped"
    if mode == "graph":
        if device.type != "cuda":
            raise ConfigError("--augment=graph needs a CUDA device; use grouped or dense on a CPU")
        return CudaGraphed(functools.partial(render_strong, dense=True))
    return functools.partial(render_strong, dense=mode == "dense")


@dataclass
class Result:
    """What a finished run returns (also in summary.json)."""

    method: str
    test_accuracy: float | None  # last epoch: ensemble of primary heads (Acc Mean)
    best_test_accuracy: float | None
    selection: dict = field(default_factory=dict)  # final clean selection vs true labels
    epochs: int = 0
    seconds: float = 0.0
    run_dir: str | None = None
    baseline: Result | None = None  # the same data trained with cfg.run.baseline


class Trainer:
    def __init__(self, cfg: Config, data: Dataset, run_dir: Path | None = None):
        self.cfg, self.data, self.run_dir = cfg, data, run_dir
        run = cfg.run
        seed_everything(run.seed, deterministic=run.deterministic)
        self.device = resolve_device(run.device)
        self.dtype = resolve_precision(run.precision, self.device)
        self.autocast = autocast(self.device, self.dtype)
        self.images = data.train.images.to(self.device)  # (N, C, H, W) uint8
        self.labels = data.train.labels.to(self.device)  # noisy ỹ
        # Moved to the device once, not at every epoch's evaluation and selection pass.
        self.is_clean = (None if data.true_labels is None  # diagnostics only, never the step
                         else self.labels == data.true_labels.to(self.device))
        # Labels a person verified (corrections.csv) are always in the clean set; with several
        # annotators, CSS ranks by loss - log P(label | annotators) (docs/review.md).
        self.verified = None if data.verified is None else data.verified.to(self.device)
        self.log_label_prior = (None if data.label_prior is None
                                else data.label_prior.to(self.device).log())
        self.test = None if data.test is None else (data.test.images.to(self.device),
                                                    data.test.labels.to(self.device))
        mean, std = data.normalization()
        self.mean = torch.tensor(mean, device=self.device)
        self.std = torch.tensor(std, device=self.device)
        self.flip = flip_default(cfg.data)
        self.render = strong_renderer(run.augment, self.device)
        self.num_classes = data.num_classes
        n_nets = 1 if run.method == "ce" else 2
        self.nets = [self._model() for _ in range(n_nets)]
        self.optimizer = torch.optim.SGD(
            [{"params": net.parameters()} for net in self.nets],  # one group per peer
            lr=cfg.optim.lr, momentum=cfg.optim.momentum, weight_decay=cfg.optim.weight_decay,
        )
        self.schedule = Schedule(
            cfg.schedule, cfg.promix, cfg.optim.lr, cfg.optim.lr * cfg.optim.lr_min_factor
        )
        steps = max(len(self.labels) // self.batch_size, 1)
        self.priors = PriorState.uniform(
            self.num_classes, prior_momentum(cfg.schedule, steps), device=self.device
        )
        self.random = StepRandom(
            np.random.default_rng(run.seed),
            torch.Generator(self.device).manual_seed(run.seed),
        )
        self.order = torch.Generator().manual_seed(run.seed + 1)  # data order, on the CPU
        self.history: list[dict] = []
        self.clean = [torch.ones_like(self.labels, dtype=torch.bool) for _ in self.nets]
        self.chosen = [c.clone() for c in self.clean]  # last step-level L_k (incl. LGA)
        self.selected = [c.clone() for c in self.clean]  # CSS ∪ MHCS of the last selection pass
        self.world = World()  # rank and process count; distributed.attach sets it under torchrun

    @property
    def batch_size(self) -> int:
        return min(self.cfg.optim.batch_size, len(self.data.train))

    def _model(self) -> TwoHeadNet:
        m = self.cfg.model
        kwargs = {"width": m.width} if m.name == "small_cnn" else {}
        net = create_model(
            m.name, num_classes=self.num_classes, in_channels=self.images.shape[1], **kwargs
        ).to(self.device)
        if self.cfg.run.channels_last:
            net = net.to(memory_format=torch.channels_last)
        if self.cfg.run.compile:
            net.backbone = torch.compile(net.backbone)
        return net

    # ------------------------------------------------------------------ the loop

    def fit(self, start_epoch: int = 0, on_epoch=None, stop_epoch: int | None = None) -> Result:
        """Train epochs [start_epoch, stop_epoch) of the run (all of them by default); the
        schedule is always the whole run's, so stopping early does not rescale it."""
        t0 = time.perf_counter()
        for epoch in range(start_epoch, stop_epoch or self.cfg.schedule.epochs):
            sched = self.schedule.at(epoch)
            for group in self.optimizer.param_groups:
                group["lr"] = sched.lr
            record = {"epoch": epoch, "lr": sched.lr, "phase": self.phase(sched)}
            tick = time.perf_counter()
            if record["phase"] == "promix":
                record |= self.select(sched)
            record |= self.train_epoch(sched)
            record["train_seconds"] = time.perf_counter() - tick
            record |= self.evaluate()
            self.history.append(record)
            if on_epoch is not None:
                on_epoch(self, record)
        return self.result(time.perf_counter() - t0)

    def phase(self, sched: EpochSchedule) -> str:
        if self.cfg.run.method == "coteaching":  # no warm-up: R(T) ramps from 1 instead
            return "coteaching"
        if self.cfg.run.method == "ce" or sched.warmup:
            return "warmup"
        return "promix"

    def batches(self, drop_last: bool):
        """Index batches of a fresh permutation; the warm-up keeps the last partial batch."""
        n, b = len(self.labels), self.batch_size
        perm = torch.randperm(n, generator=self.order).to(self.device)
        stop = n - n % b if drop_last else n
        bounds = [*range(0, stop, b), stop]
        if len(bounds) > 2 and bounds[-1] - bounds[-2] == 1:
            del bounds[-2]  # a lone last sample joins the batch before: BN needs two samples
        for start, end in zip(bounds[:-1], bounds[1:], strict=True):
            index = self.world.shard(perm[start:end])  # this rank's part of the batch
            if index is not None:
                yield index

    def views(self, index: torch.Tensor, strong: bool) -> Batch:
        x = self.images[index]
        g, cl = self.random.generator, self.cfg.run.channels_last
        weak = normalize(weak_view(x, generator=g, flip=self.flip), self.mean, self.std,
                         channels_last=cl)
        strong_x = None
        if strong:
            strong_x = normalize(strong_view(x, generator=g, flip=self.flip, render=self.render),
                                 self.mean, self.std, channels_last=cl)
        return Batch(weak, strong_x, self.labels[index], index)

    def train_epoch(self, sched: EpochSchedule) -> dict:
        promix = self.phase(sched) == "promix"
        penalty = self.cfg.promix.conf_penalty if self.cfg.run.method != "ce" else "none"
        for net in self.nets:
            net.train()
        sums: dict[str, float] = {}
        steps = 0
        batches = list(self.batches(drop_last=promix))
        bar = tqdm(batches, desc=f"epoch {sched.epoch}", leave=False,
                   disable=not self.cfg.run.progress, unit="batch")
        for index in bar:
            batch = self.views(index, strong=promix)
            if promix:
                terms, chosen = train_step(
                    self.nets, self.optimizer, batch, clean=self.clean, priors=self.priors,
                    sched=sched, cfg=self.cfg.promix, random=self.random,
                    autocast=self.autocast,
                )
                for k, mask in enumerate(chosen):
                    self.chosen[k][index] = mask
            elif self.cfg.run.method == "coteaching":
                terms = coteaching_step(self.nets, self.optimizer, batch, autocast=self.autocast,
                                        forget_rate=self.forget_rate(sched.epoch))
            else:
                terms = warmup_step(self.nets, self.optimizer, batch, penalty=penalty,
                                    autocast=self.autocast)
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + value
            steps += 1
            bar.set_postfix(loss=f"{terms['loss']:.3f}")
        self.world.merge_chosen(self.chosen)  # each rank set the masks of its own shards
        sums = self.world.average(sums)
        record = {f"loss/{name}": v / max(steps, 1) for name, v in sums.items()}
        if promix:  # the final chosen set L_k of each peer's last step per sample, LGA included
            for k, mask in enumerate(self.chosen, start=1):  # (SPEC §13.5's third set)
                record[f"selected/chosen_{k}"] = int(mask.sum())
                record |= self._quality(f"chosen_{k}", mask)
        return record

    def forget_rate(self, epoch: int) -> float:
        """Co-teaching's 1 - R(T) at this epoch (promix/coteaching.py)."""
        c = self.cfg.coteaching
        return forget_rate_at(epoch, self.cfg.schedule.epochs, ramp_frac=c.forget_ramp_frac,
                              tau_f=resolve_forget_rate(c, self.data.noise))

    # ------------------------------------------------------------------ selection (SPEC §5)

    def infer_train(self) -> list[PeerOutputs]:
        images = self.world.shard_rows(self.images)  # each rank infers a slice; all get all
        return [
            self.world.gather_outputs(
                predict(net, images, self.mean, self.std, batch_size=self.cfg.run.eval_batch_size,
                        autocast=self.autocast, channels_last=self.cfg.run.channels_last),
                len(self.images))
            for net in self.nets
        ]

    def select(self, sched: EpochSchedule) -> dict:
        """CSS per peer on eval-mode test-view losses; logs selection quality when known."""
        p = self.cfg.promix
        # the ratio actually applied: the ramp's ρ, or each peer's per-class estimate (the GMM
        # selection applies none)
        css_fixed = p.selection != "gmm" and p.rho_mode == "fixed"
        record = {"rho": sched.rho} if css_fixed else {}
        outputs = self.infer_train()
        for k, out in enumerate(outputs):
            loss = out.losses(self.labels)
            if self.log_label_prior is not None:
                loss = loss - self.log_label_prior.to(loss.dtype)
            if p.selection == "gmm":
                self.clean[k] = gmm_clean(loss)
            else:
                rho = sched.rho
                if p.rho_mode != "fixed":
                    key = f"rho_auto_{k + 1}"
                    # lenient and bayes estimate once, on the warm-up network, which trained
                    # on every label alike; later losses are shaped by the selection itself
                    # (docs/baselines.md). auto re-estimates at every pass.
                    held = self.last_record(key) if p.rho_mode != "auto" else None
                    rho = (self.estimate_rho(loss) if held is None
                           else torch.tensor(held, dtype=torch.float64))
                    record[key] = rho.tolist()
                quota = class_quotas(self.labels, rho, self.num_classes,
                                     rule=p.quota).to(self.device)
                self.clean[k] = class_small_loss(loss, self.labels, quota)
            if self.verified is not None:
                self.clean[k] |= self.verified
            confident = out.probs.gather(1, self.labels[:, None]).squeeze(1) > p.tau
            self.chosen[k] = self.clean[k] | confident if p.mhcs else self.clean[k].clone()
            self.selected[k] = self.chosen[k].clone()
            record[f"selected/css_{k + 1}"] = int(self.clean[k].sum())
            record[f"selected/mhcs_{k + 1}"] = int(self.chosen[k].sum())
            record |= self._quality(f"css_{k + 1}", self.clean[k])
            record |= self._quality(f"mhcs_{k + 1}", self.chosen[k])
        return record

    def estimate_rho(self, loss: torch.Tensor) -> torch.Tensor:
        """Per-class selection ratios (C,) from one peer's losses, by promix.rho_mode."""
        p, bounds = self.cfg.promix, {"low": 0.05, "high": 1.0}
        if p.rho_mode == "lenient":
            return lenient_rho(loss, self.labels, self.num_classes, **bounds)
        threshold = p.rho_posterior if p.rho_mode == "bayes" else 0.5
        return auto_rho(loss, self.labels, self.num_classes, threshold=threshold, **bounds)

    def last_record(self, key: str):
        """The latest value of `key` in the history (restored on resume), or None."""
        return next((r[key] for r in reversed(self.history) if key in r), None)

    def _quality(self, name: str, mask: torch.Tensor) -> dict:
        if self.is_clean is None:
            return {}
        q = selection_quality(mask, self.is_clean)
        return {f"select/{name}/{key}": value for key, value in q.items() if key != "size"}

    # ------------------------------------------------------------------ evaluation (SPEC §9)

    def evaluate(self) -> dict:
        if self.test is None:
            return {}
        images, labels = self.test
        outs = [
            predict(net, images, self.mean, self.std,
                    batch_size=self.cfg.run.eval_batch_size, autocast=self.autocast,
                    channels_last=self.cfg.run.channels_last)
            for net in self.nets
        ]
        mean_logits = sum(o.logits for o in outs) / len(outs)
        record = {"test/acc": accuracy(mean_logits, labels)}  # Acc Mean
        for k, o in enumerate(outs, start=1):
            record[f"test/acc_net{k}"] = accuracy(o.logits, labels)
            if self.cfg.run.method == "promix":
                record[f"test/acc_pseudo{k}"] = accuracy(o.pseudo_logits, labels)
        return record

    def result(self, seconds: float) -> Result:
        accs = [r["test/acc"] for r in self.history if "test/acc" in r]
        selection = {}
        if self.is_clean is not None and self.cfg.run.method == "promix":
            # The clean selection: samples trained on their given label (LGA's additions are
            # relabelled, so they are not "selected as clean").
            per_peer = [selection_quality(c, self.is_clean) for c in self.selected]
            selection = {key: float(np.mean([q[key] for q in per_peer])) for key in per_peer[0]}
        return Result(
            method=self.cfg.run.method,
            test_accuracy=accs[-1] if accs else None,
            best_test_accuracy=max(accs) if accs else None,
            selection=selection,
            epochs=len(self.history),
            seconds=seconds,
            run_dir=str(self.run_dir) if self.run_dir else None,
        )
