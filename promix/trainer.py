"""The epoch loop: selection pass, training steps, evaluation, logging (SPEC §3-§9).

Training images live on the device as one uint8 tensor; every epoch draws a permutation,
builds the weak and strong views in batches on the device and calls the method's step
(methods.py: ProMix, or a baseline). Nothing is re-read from disk, and no dataset is rebuilt.
The Trainer owns the `TrainState` (state.py); checkpoints, model files and the torchrun sync
go through it. Callbacks (`on_start`, `on_batch_end`, `on_epoch_end`) watch or pause a run.
It runs a little over the 300-line guide: the selection pass (§5) stays beside the loop that
calls it, so one file reads as the epoch of the paper.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .config import Config
from .data.augment import normalize, strong_renderer, strong_view, weak_view
from .data.base import Dataset
from .data.load import flip_default
from .data.mapped import prefetch
from .debias import PriorState
from .distributed import World, join
from .hardware import autocast, resolve_device, resolve_precision, seed_everything
from .inference import PeerOutputs, predict, selection_quality
from .methods import create_method
from .metrics import ensemble_accuracy
from .models import TwoHeadNet, create_model, param_groups
from .models.plan import pretrained_file
from .models.timm_backbone import freeze_stages
from .models.weights import load_weights, read_weights
from .results import Result
from .schedules import EpochSchedule, Schedule, prior_momentum
from .selection import (
    auto_rho,
    class_quotas,
    class_small_loss,
    gmm_clean,
    lenient_rho,
    matched_high_confidence,
)
from .state import PeerSelection, TrainState
from .step import Batch, StepRandom


class Trainer:
    def __init__(self, cfg: Config, data: Dataset, run_dir: Path | None = None, *,
                 world: World | None = None, callbacks=()):
        """world: this process's place in a torchrun job (a single process when None)."""
        self.cfg, self.data, self.run_dir = cfg, data, run_dir
        self.world = world or World()
        self.callbacks = list(callbacks)
        self.method = create_method(cfg, data.noise)
        run = cfg.run
        seed_everything(run.seed, deterministic=run.deterministic)
        self.device = resolve_device(run.device)
        self.dtype = resolve_precision(run.precision, self.device)
        self.autocast = autocast(self.device, self.dtype)
        self.progress = run.progress and self.world.is_main  # one progress bar, rank 0's
        # (N, C, H, W) uint8; MappedImages (data larger than memory) stay on disk
        self.images = data.train.images.to(self.device)
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
        nets = [self._model() for _ in range(self.method.peers)]
        if hasattr(self, "weights_note"):
            print(f"promix: {self.weights_note}")
        optimizer = torch.optim.SGD(  # one group per peer, two with a backbone lr scale
            [g for net in nets for g in param_groups(net, cfg.model.backbone_lr_scale)],
            lr=cfg.optim.lr, momentum=cfg.optim.momentum, weight_decay=cfg.optim.weight_decay,
        )
        self.schedule = Schedule(
            cfg.schedule, cfg.promix, cfg.optim.lr, cfg.optim.lr * cfg.optim.lr_min_factor
        )
        steps = max(len(self.labels) // self.batch_size, 1)
        priors = PriorState.uniform(
            self.num_classes, prior_momentum(cfg.schedule, steps), device=self.device
        )
        self.state = TrainState(
            nets=nets, optimizer=optimizer, priors=priors,
            selection=[PeerSelection.everything(len(self.labels), self.num_classes, self.device)
                       for _ in nets],
            random=StepRandom(np.random.default_rng(run.seed),
                              torch.Generator(self.device).manual_seed(run.seed)),
            order=torch.Generator().manual_seed(run.seed + 1),  # data order, on the CPU
        )
        join(self.world, self.state, seed=run.seed, sync_bn=run.sync_bn, device=self.device)

    @property
    def batch_size(self) -> int:
        return min(self.cfg.optim.batch_size, len(self.data.train))

    @property
    def history(self) -> list[dict]:
        """One record per finished epoch (what metrics.jsonl holds)."""
        return self.state.history

    def _model(self) -> TwoHeadNet:
        m = self.cfg.model
        kwargs = {"width": m.width} if m.name == "small_cnn" else {}
        start = not self.cfg.run.resume  # a resumed run's weights come from its checkpoint
        if m.pretrained and start:  # timm: from the Hugging Face cache if there, else the hub
            kwargs |= {"pretrained": True, "pretrained_file": pretrained_file(m.name)}
        net = create_model(m.name, num_classes=self.num_classes,
                           in_channels=self.images.shape[1], **kwargs)
        if m.weights and start:  # checked before the data were decoded (models/plan.py)
            self.weights_note = load_weights(net, read_weights(m.weights), model_name=m.name,
                                             classes=self.data.classes)
        freeze_stages(net.backbone, m.freeze_stages)
        net = net.to(self.device)
        if self.cfg.run.channels_last:
            net = net.to(memory_format=torch.channels_last)
        if self.cfg.run.compile:
            net.backbone = torch.compile(net.backbone)
        return net

    # ------------------------------------------------------------------ the loop

    def fit(self, start_epoch: int = 0, on_epoch=None, stop_epoch: int | None = None) -> Result:
        """Train epochs [start_epoch, stop_epoch) of the run (all of them by default); the
        schedule is always the whole run's, so stopping early does not rescale it.
        on_epoch(trainer, record) runs after each epoch, before the callbacks' on_epoch_end."""
        t0 = time.perf_counter()
        self._callback("on_start")
        for epoch in range(start_epoch, stop_epoch or self.cfg.schedule.epochs):
            sched = self.schedule.at(epoch)
            for group in self.state.optimizer.param_groups:
                group["lr"] = sched.lr * group.get("lr_scale", 1.0)
            record = {"epoch": epoch, "lr": sched.lr, "phase": self.method.phase(sched)}
            tick = time.perf_counter()
            if record["phase"] == "promix":
                record |= self.select(sched)
            record |= self.train_epoch(sched)
            record["train_seconds"] = time.perf_counter() - tick
            record |= self.evaluate()
            self.state.history.append(record)
            if on_epoch is not None:
                on_epoch(self, record)
            self._callback("on_epoch_end", record)
        return self.result(time.perf_counter() - t0)

    def _callback(self, event: str, *args) -> None:
        for callback in self.callbacks:
            if hasattr(callback, event):
                getattr(callback, event)(self, *args)

    def batches(self, drop_last: bool):
        """Index batches of a fresh permutation; the warm-up keeps the last partial batch."""
        n, b = len(self.labels), self.batch_size
        perm = torch.randperm(n, generator=self.state.order).to(self.device)
        stop = n - n % b if drop_last else n
        bounds = [*range(0, stop, b), stop]
        if len(bounds) > 2 and bounds[-1] - bounds[-2] == 1:
            del bounds[-2]  # a lone last sample joins the batch before: BN needs two samples
        for start, end in zip(bounds[:-1], bounds[1:], strict=True):
            index = self.world.shard(perm[start:end])  # this rank's part of the batch
            if index is not None:
                yield index

    def views(self, index: torch.Tensor, strong: bool, x: torch.Tensor | None = None) -> Batch:
        x = self.images[index] if x is None else x  # (B, C, H, W) uint8
        g, cl = self.state.random.generator, self.cfg.run.channels_last
        weak = normalize(weak_view(x, generator=g, flip=self.flip), self.mean, self.std,
                         channels_last=cl)
        strong_x = None
        if strong:
            strong_x = normalize(strong_view(x, generator=g, flip=self.flip, render=self.render),
                                 self.mean, self.std, channels_last=cl)
        return Batch(weak, strong_x, self.labels[index], index)

    def train_epoch(self, sched: EpochSchedule) -> dict:
        promix = self.method.phase(sched) == "promix"
        for net in self.state.nets:
            net.train()
        sums: dict[str, float] = {}
        steps = 0
        batches = list(self.batches(drop_last=promix))
        bar = tqdm(batches, desc=f"epoch {sched.epoch}", leave=False,
                   disable=not self.progress, unit="batch")
        for index, x in prefetch(self.images, bar):  # the next batches read meanwhile
            batch = self.views(index, strong=promix, x=x)
            terms = self.method.step(self.state, batch, sched, autocast=self.autocast)
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + value
            steps += 1
            self._callback("on_batch_end")
            bar.set_postfix(loss=f"{terms['loss']:.3f}")
        # each rank set the chosen masks of its own shards
        self.world.merge_chosen([peer.chosen for peer in self.state.selection])
        sums = self.world.average(sums)
        record = {f"loss/{name}": v / max(steps, 1) for name, v in sums.items()}
        if promix:  # the final chosen set L_k of each peer's last step per sample, LGA included
            for k, peer in enumerate(self.state.selection, start=1):  # (SPEC §13.5's 3rd set)
                record[f"selected/chosen_{k}"] = int(peer.chosen.sum())
                record |= self._quality(f"chosen_{k}", peer.chosen)
        return record

    # ------------------------------------------------------------------ selection (SPEC §5)

    def infer_train(self) -> list[PeerOutputs]:
        images = self.world.shard_rows(self.images)  # each rank infers a slice; all get all
        return [
            self.world.gather_outputs(
                predict(net, images, self.mean, self.std, batch_size=self.cfg.run.eval_batch_size,
                        autocast=self.autocast, channels_last=self.cfg.run.channels_last),
                len(self.images))
            for net in self.state.nets
        ]

    def select(self, sched: EpochSchedule) -> dict:
        """CSS per peer on eval-mode test-view losses; logs selection quality when known."""
        p = self.cfg.promix
        # the ratio actually applied: the ramp's ρ, or each peer's per-class estimate (the GMM
        # selection applies none)
        css_fixed = p.selection != "gmm" and p.rho_mode == "fixed"
        record = {"rho": sched.rho} if css_fixed else {}
        outputs = self.infer_train()
        for k, (out, peer) in enumerate(zip(outputs, self.state.selection, strict=True)):
            loss = out.losses(self.labels)
            if self.log_label_prior is not None:
                loss = loss - self.log_label_prior.to(loss.dtype)
            if p.selection == "gmm":
                peer.clean = gmm_clean(loss)
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
                # verified samples take no quota slot (they join below): a reviewer's work
                # never pushes out a sample the selection would otherwise keep
                ranked = loss if self.verified is None else loss.masked_fill(
                    self.verified, math.inf)
                peer.clean = class_small_loss(ranked, self.labels, quota)
            if self.verified is not None:
                peer.clean |= self.verified
            peer.chosen = (matched_high_confidence(peer.clean, out.probs, self.labels, p.tau)
                           if p.mhcs else peer.clean.clone())
            peer.selected = peer.chosen.clone()
            if sched.epoch >= self.cfg.schedule.epochs // 2:  # the count's probabilities
                peer.add_late(out.probs)
            record[f"selected/css_{k + 1}"] = int(peer.clean.sum())
            record[f"selected/mhcs_{k + 1}"] = int(peer.chosen.sum())
            record |= self._quality(f"css_{k + 1}", peer.clean)
            record |= self._quality(f"mhcs_{k + 1}", peer.chosen)
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
        return next((r[key] for r in reversed(self.state.history) if key in r), None)

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
            for net in self.state.nets
        ]
        scores = ensemble_accuracy(outs, labels, pseudo=self.method.name == "promix")
        return {f"test/{name}": value for name, value in scores.items()}

    def result(self, seconds: float) -> Result:
        accs = [r["test/acc"] for r in self.state.history if "test/acc" in r]
        selection = {}
        if self.is_clean is not None and self.method.name == "promix":
            # The clean selection: samples trained on their given label (LGA's additions are
            # relabelled, so they are not "selected as clean").
            per_peer = [selection_quality(peer.selected, self.is_clean)
                        for peer in self.state.selection]
            selection = {key: float(np.mean([q[key] for q in per_peer])) for key in per_peer[0]}
        return Result(
            method=self.cfg.run.method,
            test_accuracy=accs[-1] if accs else None,
            best_test_accuracy=max(accs) if accs else None,
            selection=selection,
            epochs=len(self.state.history),
            seconds=seconds,
            run_dir=str(self.run_dir) if self.run_dir else None,
        )
