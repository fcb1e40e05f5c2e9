"""The Python API: `train(data, ...)` returns a `Run`; `Run.load(run_dir)` reopens one.

    import promix
    run = promix.train("my_images/", epochs=10)        # a folder, a CSV, arrays or a name
    run.label_issues()                                  # most suspicious first
    run.predict_proba(["a.png", "b.png"])               # (2, C)

`train_config(cfg, dataset)` is the same job for a ready `Config` (the CLI's entry point).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

import torch

from . import checkpoint, distributed, runs
from .config import Config, load_preset, set_value, validate
from .data.base import DataError, Dataset
from .models.plan import build_array_data, build_data
from .models.weights import weights_metadata
from .results import Run, load_nets
from .trainer import Result, Trainer
from .truth import check_truth_file, data_base, read_truth

__all__ = ["Run", "load_nets", "make_config", "train", "train_config"]

NAMED_DATASETS = ("digits", "mnist5k", "cifar10", "cifar100")  # data promix can load by name
USER_PRESET = "user"  # presets used when none is given: data of your own...
DEMO_PRESET = "demo"  # ...and a dataset promix knows by name


def train(data=None, labels=None, *, preset: str | None = None,
          classes: Sequence[str] | None = None, test: tuple | None = None,
          callbacks: Sequence = (), **overrides) -> Run:
    """Train ProMix on `data` and return the finished `Run` (its directory is written too).

    data: an image folder (root/<class>/<image>), a CSV manifest (path,label[,split]), a
        dataset name (digits, mnist5k, cifar10, cifar100; the preset's when None), or images
        as an array (N, H, W) or (N, H, W, C), uint8 or float in [0, 1], with `labels` (N,)
        as integers in [0, C) or class names.
    preset: a preset name (`promix presets`) or a .toml file; default `user` for your own
        data, `demo` for a dataset name.
    classes: class names in label order (arrays only). test: (images, labels) held out for
        testing (arrays only; otherwise `test_fraction` of every class is held out).
    overrides: any config field by leaf name or dotted path, as on the command line:
        `epochs=10`, `tau=0.9`, `**{"promix.rho": 0.6}`.

    Every argument is checked before any file is written or image decoded.
    """
    cfg = make_config(data, labels, preset=preset, overrides=overrides)
    dataset = None
    if labels is not None:
        dataset = build_array_data(cfg, data, labels, classes, test)
    elif classes is not None or test is not None:
        raise DataError("classes= and test= go with image arrays: train(images, labels, ...)")
    return train_config(cfg, dataset, callbacks=callbacks)


def make_config(data=None, labels=None, *, preset: str | None = None,
                overrides: dict | None = None) -> Config:
    """The validated config `train` would use for these arguments (nothing is read or written)."""
    if labels is not None:
        kind, root = "arrays", None
    elif data is None:
        kind, root = None, None
    elif isinstance(data, (str, os.PathLike)):
        kind, root = _data_kind(data)
    elif isinstance(data, Config):
        raise DataError("train() takes data, not a Config: use promix.api.train_config(cfg)")
    else:
        raise DataError(f"data must be a folder, a CSV file, a dataset name or image arrays "
                        f"with labels, got {type(data).__name__}: pass labels= with arrays")
    default = DEMO_PRESET if kind in (None, *NAMED_DATASETS) else USER_PRESET
    cfg = load_preset(preset or default)
    if kind is not None:
        cfg.data.dataset, cfg.data.root = kind, root
    for key, value in (overrides or {}).items():
        set_value(cfg, key, value)
    return validate(cfg)


def _data_kind(data) -> tuple[str, str | None]:
    """(data.dataset, data.root) for a path or a dataset name."""
    text = os.fspath(data)
    path = Path(text).expanduser()
    if text in NAMED_DATASETS and not path.exists():
        return text, None
    if path.is_dir():
        return "folder", str(path)
    if path.suffix.lower() == ".csv":
        if not path.is_file():
            raise DataError(f"{path}: no such CSV file")
        return "csv", str(path)
    raise DataError(f"{text}: not an image folder, a CSV file or a dataset name "
                    f"({', '.join(NAMED_DATASETS)})")


def train_config(cfg: Config, dataset: Dataset | None = None, *, run_dir: Path | None = None,
                 callbacks: Sequence = ()) -> Run:
    """Train `cfg.run.method` on `dataset` (built from `cfg.data` when None); write the run dir.

    The run directory is created only once the config is valid, the data is built and the
    trainer is ready; a start that fails after that, before the first epoch ends, removes it.
    With `cfg.run.baseline` set, the baseline method is trained on the same noisy labels with
    the same model, epochs and seed, in `run_dir/baseline-<method>` (`run.baseline`).
    With `cfg.run.resume` set to a run directory, training continues there from its last good
    checkpoint (docs/resume.md). Under torchrun every process calls this and rank 0 alone
    writes the run directory (docs/distributed.md).
    callbacks: objects with any of `on_start(trainer)`, `on_batch_end(trainer)`,
        `on_epoch_end(trainer, record)` (tests use them to pause or inspect training).
    """
    if not cfg.run.resume:  # a resumed run keeps the paths it recorded
        cfg = replace(cfg, data=absolute_paths(cfg.data))  # so the run works from any folder
    validate(cfg)
    check_truth_file(cfg.data.truth)
    world = distributed.init(cfg.run.device)
    data = build_data(cfg, dataset)  # the model is checked first, then the data built
    if cfg.data.truth:  # a bad row fails here, before any training
        read_truth(cfg.data.truth, classes=data.classes, size=len(data.train),
                   paths=data.train.paths, base=data_base(cfg.data.dataset, cfg.data.root))
    trainer = Trainer(cfg, data, world=world, callbacks=callbacks)
    created = world.is_main and run_dir is None and not cfg.run.resume  # removable on failure
    if cfg.run.resume:
        run_dir = Path(cfg.run.resume)
    elif run_dir is None:
        made = str(runs.create_run_dir(cfg)) if world.is_main else ""
        run_dir = Path(world.broadcast_text(made))
    trainer.run_dir = run_dir
    with runs.removed_on_failure(run_dir, enabled=created):
        start = checkpoint.resume(trainer, run_dir) if cfg.run.resume else 0
        if world.is_main and start == 0:
            _write_start(run_dir, cfg, data, trainer)
        if world.is_main:
            runs.truncate_metrics(run_dir, start)  # a resumed run rewrites the epochs it redoes
        result = trainer.fit(start_epoch=start, on_epoch=_epoch_end)
    _save_outputs(run_dir, trainer, result, data)
    return _baseline(cfg, data, run_dir, result, world, callbacks)


def _write_start(run_dir: Path, cfg: Config, data: Dataset, trainer: Trainer) -> None:
    from .review import record_inputs

    record_inputs(cfg, run_dir)  # copies of the corrections/annotator files, their sha256
    runs.write_start(run_dir, cfg, data, device=trainer.device, precision=trainer.dtype)
    runs.write_labels(run_dir / "noisy_labels.csv", data.train.labels, data.classes,
                      data.train.paths)
    if data.skipped:  # unreadable files left out under --skip_bad_images
        (run_dir / "skipped_files.txt").write_text("\n".join(data.skipped) + "\n")


def _save_outputs(run_dir: Path, trainer: Trainer, result: Result, data: Dataset) -> None:
    """Per-sample outputs (every rank infers), then on rank 0 the model, report and summary."""
    save_train_outputs(run_dir / "train_outputs.safetensors", trainer)
    if not trainer.world.is_main:
        return
    runs.save_tensors(run_dir / "model.safetensors", trainer.state.model_tensors(),
                      metadata=weights_metadata(trainer.cfg, data))
    if trainer.cfg.run.method != "ce":  # a baseline's report: `promix issues RUN_DIR/baseline-ce`
        from .report import write_report

        write_report(run_dir, data)
    runs.write_json(run_dir / "summary.json", asdict(result))


def absolute_paths(data_cfg):
    """The data config with every file path absolute, so the run directory records where the
    data is and eval/issues/predict/export work from any working directory."""
    fields = ("root", "noise_file", "cache_dir", "truth", "corrections", "annotators")
    return replace(data_cfg, **{f: os.path.abspath(os.path.expanduser(getattr(data_cfg, f)))
                                for f in fields if getattr(data_cfg, f)})


def save_train_outputs(path: Path, trainer: Trainer) -> None:
    """Final eval-mode logits of each peer on the training set, the selection masks, and each
    peer's probabilities averaged over the second half of training (late_probs).
    Collective under torchrun: every rank calls it, rank 0 writes."""
    outputs = trainer.infer_train()
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
    for k, peer in enumerate(trainer.state.selection, start=1):
        tensors[f"css{k}"] = peer.clean.to(torch.uint8)
        tensors[f"chosen{k}"] = peer.chosen.to(torch.uint8)
        if peer.late_passes > 0:  # what the flags count from (promix.issues, count_probs)
            tensors[f"late_probs{k}"] = peer.late_probs(outputs[k - 1].probs).cpu()
    runs.save_tensors(path, tensors)


def _baseline(cfg: Config, data: Dataset, run_dir: Path, result: Result, world,
              callbacks: Sequence) -> Run:
    """Train cfg.run.baseline in run_dir/baseline-<method> (resumed too when resuming)."""
    if not cfg.run.baseline:
        return Run(run_dir, result=result)
    path = run_dir / f"baseline-{cfg.run.baseline}"
    resume = str(path) if cfg.run.resume and path.is_dir() else None
    if world.is_main:
        path.mkdir(exist_ok=resume is not None)
    world.barrier()
    base_cfg = replace(cfg, run=replace(cfg.run, method=cfg.run.baseline, baseline=None,
                                        resume=resume))
    baseline = train_config(base_cfg, data, run_dir=path, callbacks=callbacks)
    result.baseline = baseline.result
    if world.is_main:
        runs.write_json(run_dir / "summary.json", asdict(result))
    return Run(run_dir, result=result, baseline=baseline)


def _epoch_end(trainer: Trainer, record: dict) -> None:
    """Metrics line (rank 0), then the checkpoint (every rank takes part; rank 0 writes)."""
    if trainer.world.is_main:
        runs.append_metrics(trainer.run_dir, record)
    if checkpoint.due(trainer.cfg, record["epoch"]):
        checkpoint.save(trainer.run_dir, trainer, record["epoch"])
