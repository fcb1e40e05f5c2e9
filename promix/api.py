"""The Python API: `train(config)` runs a whole job and writes its run directory."""

from __future__ import annotations

import os
from dataclasses import asdict, replace
from pathlib import Path

import torch

from . import checkpoint, distributed, runs
from .config import Config
from .data.base import Dataset
from .data.load import build_dataset
from .models import TwoHeadNet, create_model
from .trainer import Result, Trainer
from .truth import check_truth_file, data_base, read_truth


def train(cfg: Config, data: Dataset | None = None, *, run_dir: Path | None = None) -> Result:
    """Train `cfg.run.method` on `data` (built from `cfg.data` when None); write the run dir.

    With `cfg.run.baseline` set, the baseline method is trained on the same noisy labels with
    the same model, epochs and seed, in `run_dir/baseline-<method>`; its Result is attached
    as `result.baseline`.

    With `cfg.run.resume` set to a run directory, training continues there from its last good
    checkpoint (docs/resume.md). Under torchrun every process calls this and rank 0 alone
    writes the run directory (docs/distributed.md).
    """
    if not cfg.run.resume:  # a resumed run keeps the paths it recorded
        cfg = replace(cfg, data=absolute_paths(cfg.data))  # so the run works from any folder
    check_truth_file(cfg.data.truth)
    world = distributed.init(cfg.run.device)
    data = data if data is not None else build_dataset(cfg.data)
    if cfg.data.truth:  # a bad row fails here, before any training
        read_truth(cfg.data.truth, classes=data.classes, size=len(data.train),
                   paths=data.train.paths, base=data_base(cfg.data.dataset, cfg.data.root))
    if cfg.run.resume:
        run_dir = Path(cfg.run.resume)
    elif run_dir is None:
        made = str(runs.create_run_dir(cfg)) if world.is_main else ""
        run_dir = Path(world.broadcast_text(made))
    trainer = Trainer(cfg, data, run_dir)
    distributed.attach(trainer, world)
    start = checkpoint.resume(trainer, run_dir) if cfg.run.resume else 0
    if world.is_main and start == 0:
        from .review import record_inputs

        record_inputs(cfg, run_dir)  # copies of the corrections/annotator files, their sha256
        runs.write_start(run_dir, cfg, data, device=trainer.device, precision=trainer.dtype)
        runs.write_labels(run_dir / "noisy_labels.csv", data.train.labels, data.classes,
                          data.train.paths)
        if data.skipped:  # unreadable files left out under --skip_bad_images
            (run_dir / "skipped_files.txt").write_text("\n".join(data.skipped) + "\n")
    if world.is_main:
        runs.truncate_metrics(run_dir, start)  # a resumed run rewrites the epochs it redoes
    result = trainer.fit(start_epoch=start,
                         on_epoch=lambda t, record: _epoch_end(t, record, run_dir))
    save_train_outputs(run_dir / "train_outputs.safetensors", trainer)  # every rank infers
    if not world.is_main:
        return _baseline(cfg, data, run_dir, result, world)
    save_model(run_dir / "model.safetensors", trainer)
    if cfg.run.method != "ce":  # a baseline's report: `promix issues RUN_DIR/baseline-ce`
        from .report import write_report

        write_report(run_dir, data)
    runs.write_json(run_dir / "summary.json", asdict(result))
    return _baseline(cfg, data, run_dir, result, world)


def absolute_paths(data_cfg):
    """The data config with every file path absolute, so the run directory records where the
    data is and eval/issues/predict/export work from any working directory."""
    fields = ("root", "noise_file", "cache_dir", "truth")
    return replace(data_cfg, **{f: os.path.abspath(os.path.expanduser(getattr(data_cfg, f)))
                                for f in fields if getattr(data_cfg, f)})


def _baseline(cfg: Config, data: Dataset, run_dir: Path, result: Result, world) -> Result:
    """Train cfg.run.baseline in run_dir/baseline-<method> (resumed too when resuming)."""
    if not cfg.run.baseline:
        return result
    path = run_dir / f"baseline-{cfg.run.baseline}"
    resume = str(path) if cfg.run.resume and path.is_dir() else None
    if world.is_main:
        path.mkdir(exist_ok=resume is not None)
    world.barrier()
    base_cfg = replace(cfg, run=replace(cfg.run, method=cfg.run.baseline, baseline=None,
                                        resume=resume))
    result.baseline = train(base_cfg, data, run_dir=path)
    if world.is_main:
        runs.write_json(run_dir / "summary.json", asdict(result))
    return result


def _epoch_end(trainer: Trainer, record: dict, run_dir: Path) -> None:
    """Metrics line (rank 0), then the checkpoint (every rank takes part; rank 0 writes)."""
    if trainer.world.is_main:
        runs.append_metrics(run_dir, record)
    if checkpoint.due(trainer.cfg, record["epoch"]):
        checkpoint.save(run_dir, trainer, record["epoch"])
    distributed.debug_dump(trainer, record)


def save_model(path: Path, trainer: Trainer) -> None:
    tensors = {}
    for k, net in enumerate(trainer.nets, start=1):
        tensors |= {f"peer{k}.{name}": t for name, t in net.state_dict().items()}
    tensors |= {f"priors.{name}": t for name, t in trainer.priors.state_dict().items()}
    runs.save_tensors(path, tensors)


def save_train_outputs(path: Path, trainer: Trainer) -> None:
    """Final eval-mode logits of each peer on the training set, and the selection masks."""
    outputs = trainer.infer_train()  # collective under torchrun: every rank calls it
    if not trainer.world.is_main:
        return
    tensors = {"noisy_labels": trainer.labels}
    if trainer.data.true_labels is not None:
        tensors["true_labels"] = trainer.data.true_labels
    if trainer.data.verified is not None:  # corrections.csv: never flagged in the report
        tensors["verified"] = trainer.data.verified.to(torch.uint8)
    for k, out in enumerate(outputs, start=1):
        tensors[f"logits{k}"] = out.logits
        tensors[f"pseudo_logits{k}"] = out.pseudo_logits
    for k, (clean, chosen) in enumerate(zip(trainer.clean, trainer.chosen, strict=True), 1):
        tensors[f"css{k}"] = clean.to(torch.uint8)
        tensors[f"chosen{k}"] = chosen.to(torch.uint8)
    runs.save_tensors(path, tensors)


def load_nets(run_dir: Path, cfg: Config, *, num_classes: int, in_channels: int,
              device="cpu") -> list[TwoHeadNet]:
    """The trained peers of a run directory (weights from safetensors: no code executed)."""
    tensors = runs.load_tensors(Path(run_dir) / "model.safetensors")
    peers = sorted({name.split(".", 1)[0] for name in tensors if name.startswith("peer")})
    kwargs = {"width": cfg.model.width} if cfg.model.name == "small_cnn" else {}
    nets = []
    for peer in peers:
        net = create_model(cfg.model.name, num_classes=num_classes, in_channels=in_channels,
                           **kwargs)
        prefix = peer + "."
        net.load_state_dict({n[len(prefix):]: t for n, t in tensors.items()
                             if n.startswith(prefix)})
        nets.append(net.to(device).eval())
    return nets
