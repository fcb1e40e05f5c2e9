"""One typed config tree. Defaults are the paper's (SPEC §10); presets are small TOML files.

`--key=value` overrides name a field by its dotted path (`--promix.tau=0.95`) or by its
leaf name when that is unique (`--tau=0.95`). Values are parsed and checked against the
field's type; a typo gets a clear message with the closest field names.

Slightly over the 300-line guide on purpose: every field of every section, with its type,
range and meaning, stays in this one file, so a reader finds all the knobs in one place.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import tomllib

from .fields import (  # noqa: F401 - re-exported: the config's public names
    ConfigError,
    Interval,
    check_tree,
    leaves,
    parse_value,
    resolve_key,
    set_value,
)

# Ranges every field of that kind must lie in (fields.py checks them on every value).
Fraction = Annotated[float, Interval("[0, 1]")]  # a share or a probability
OpenFraction = Annotated[float, Interval("(0, 1)")]
Positive = Annotated[float, Interval("(0, inf)")]
NonNegative = Annotated[float, Interval("[0, inf)")]
Count = Annotated[int, Interval("[1, inf)")]  # at least one
Natural = Annotated[int, Interval("[0, inf)")]

# The noise kinds, written once: synthetic ones are injected by data/noise.py, human ones are
# read from a CIFAR-N label file by data/cifarn.py ("clean" is both: no noise, or CIFAR-N's
# clean labels when a noise_file is given).
SyntheticNoise = Literal["none", "clean", "sym", "sym_exact", "asym", "idn"]
HumanNoise = Literal["clean", "aggre", "worst", "rand1", "rand2", "rand3", "noisy100"]
Method = Literal["promix", "ce", "coteaching"]


@dataclass
class DataConfig:
    # arrays: images passed to promix.train in memory (such a run cannot rebuild its data)
    dataset: Literal["digits", "mnist5k", "cifar10", "cifar100", "folder", "csv", "arrays",
                     "clothing1m"] = "digits"
    root: str | None = None  # data directory, .tar.gz, image folder or CSV file
    download: bool = False  # fetch the official archive (CIFAR) when root holds none
    noise: Literal[SyntheticNoise, HumanNoise] = "sym"  # how the training labels are corrupted
    noise_rate: Fraction = 0.5  # fraction r of samples relabelled (sym: realized r(1-1/C))
    noise_file: str | None = None  # CIFAR-N labels (CIFAR-10_human.pt / CIFAR-100_human.pt)
    noise_seed: Natural = 123  # the reference seeds Python's random with 123 before injection
    # square training size in pixels; None: the timm model's pretrained size for image files,
    # else the images' own (docs/backbones.md: the resolution rule)
    image_size: Count | None = None
    interpolation: Literal["bilinear", "bicubic"] | None = None  # resize filter (None: the model's)
    per_class: Count | None = None  # keep the first n training images of each class
    test_fraction: OpenFraction = 0.2  # held out when the data has no test split
    skip_bad_images: bool = False  # skip unreadable files and list them in the run dir
    cache_dir: str | None = None  # decoded-image cache (None: ~/.cache/promix)
    flip: bool | None = None  # horizontal flips in the views (None: per dataset, off for digits)
    # CSV path,label of labels a person verified, for any subset of the training images: the
    # report then measures the flags' precision and recall on it (docs/label-issues.md)
    truth: str | None = None
    # A reviewer's corrections.csv (`promix review`, docs/review.md): its labels replace the
    # given ones and count as verified (always selected, never flagged); invalid images dropped.
    corrections: str | None = None
    corrections_sha256: str | None = None  # set when the run starts: the corrections it used
    # Several labels per image (CSV: path|index plus one column per annotator, or long format
    # path|index,annotator,label): training takes their consensus as the given label.
    annotators: str | None = None
    annotators_sha256: str | None = None  # set when the run starts: the annotator file it used
    # How the annotators' labels are combined: dawid_skene (EM over per-annotator confusion
    # matrices) | majority (ties broken by the annotators' agreement with the majority).
    consensus: Literal["dawid_skene", "majority"] = "dawid_skene"
    # CSS ranks samples by loss - log P(consensus label | annotators): unanimous, reliable
    # labels go first. False: the losses alone, as without annotators.
    annotator_prior: bool = True


@dataclass
class ModelConfig:
    # registry name (models.BACKBONES): resnet18 | preact_resnet18 | small_cnn, or timm:NAME
    name: str = "small_cnn"
    width: Count = 32  # small_cnn: first stage width (stages are w, 2w, 4w)
    # timm models: load timm's pretrained weights (from the Hugging Face hub, cached under
    # ~/.cache/huggingface); input size, mean/std and interpolation then follow the model
    pretrained: bool = False
    weights: str | None = None  # local .safetensors / .pth checkpoint to start from (offline)
    # used instead when the pretrained weights cannot be fetched (offline); None: stop with
    # an error. The console says when it is used (docs/backbones.md)
    fallback: str | None = None
    backbone_lr_scale: Positive = 1.0  # backbone learning rate = lr * this; the heads get lr
    freeze_stages: Natural = 0  # timm: leading stages (the stem counts as one) kept frozen


@dataclass
class OptimConfig:
    lr: Positive = 0.05  # η0, per-epoch cosine to η0 * lr_min_factor
    lr_min_factor: Fraction = 1e-3  # η_min = η0 * 0.1^3 = 5e-5
    momentum: Annotated[float, Interval("[0, 1)")] = 0.9
    weight_decay: NonNegative = 5e-4  # applied to every parameter with a gradient, BN included
    batch_size: Count = 256  # B


@dataclass
class ScheduleConfig:
    """Schedule lengths as fractions of the run (SPEC §13.1); E is the last epoch index."""

    epochs: Count = 601  # number of epochs trained; the reference's 0..600 inclusive is 601
    warmup_epochs: Natural | None = 10  # cross-entropy warm-up length; None: auto (see schedules)
    ramp_frac: Fraction = 50 / 600  # `warmup_ep`=50: ramp of the mix weight w and of ρ
    lambda_u_max: NonNegative = 0.1  # maximum unlabeled-loss weight (SPEC §13.2)
    lambda_u_ramp_frac: Fraction = 100 / 600  # λ_u ramps over 2·warmup_ep = 100 epochs
    # faithful: 0 from the cutoff on (Q3) | paper: no cutoff
    lambda_u_mode: Literal["faithful", "paper"] = "faithful"
    lambda_u_cutoff_frac: Fraction = 100 / 600  # faithful mode: λ_u = 0 from this epoch on
    lga_frac: Fraction = 250 / 600  # LGA active for e > E - K, K = lga_frac * E
    # EMA m of the class priors; None: auto time constant
    prior_momentum: Annotated[float, Interval("[0, 1)")] | None = 0.9999
    prior_time_frac: Positive = 10_000 / (195 * 600)  # auto: 1/(1-m) as a fraction of all steps


@dataclass
class ProMixConfig:
    """Algorithm switches and constants. Every part can be turned off for ablations."""

    rho: Annotated[float, Interval("(0, 1]")] = 0.5  # selection ratio ρ (start); see rho_mode
    # ρ ramps to this over ramp_frac (None: constant)
    rho_end: Annotated[float, Interval("(0, 1]")] | None = None
    # fixed: ρ as given | auto: estimated per class from the losses at every pass | lenient:
    # per class, drop only losses above the noisy component's mean | bayes: per class, keep
    # while the clean posterior exceeds rho_posterior. lenient and bayes are estimated once,
    # at the end of the warm-up, and held (docs/baselines.md)
    rho_mode: Literal["fixed", "auto", "lenient", "bayes"] = "fixed"
    # bayes: a dropped clean sample counts as (1-p)/p kept noisy ones
    rho_posterior: OpenFraction = 0.1
    # uniform: k_j = ceil(ρN/C) (reference, Q5) | per_class: ceil(ρ n_j)
    quota: Literal["uniform", "per_class"] = "uniform"
    # css (class-wise small loss) | gmm (DivideMix's 2-component GMM)
    selection: Literal["css", "gmm"] = "css"
    tau: Fraction = 0.99  # confidence threshold of MHCS and LGA (strict)
    mhcs: bool = True  # matched high-confidence selection
    lga: bool = True  # label guessing by agreement in the last K epochs
    lga_threshold: Fraction = 0.9  # θ: LGA fills the chosen set up to ⌊θB⌋
    # faithful: each peer's debiased argmax (Q7) | agreed
    lga_label: Literal["faithful", "agreed"] = "faithful"
    debias_output: NonNegative = 0.8  # α: logit adjustment strength inside the losses
    debias_pl: NonNegative = 0.8  # β_pl: debiasing strength of the pseudo-labels
    pseudo_head: bool = True  # auxiliary pseudo head h_AP and its losses
    consistency: bool = True  # CR terms (strong view trained on the same labels)
    mixup: bool = True
    fmix: bool = True
    mixup_alpha: Positive = 4.0  # λ0 ~ Beta(4, 4), λ = max(λ0, 1-λ0)
    fmix_decay: Positive = 3.0  # FMix spectrum decay power
    sharpen_t: Positive = 0.5  # T
    # warm-up penalty: none | faithful (Q4 logit clamp) | fixed
    conf_penalty: Literal["none", "faithful", "fixed"] = "none"
    # faithful: 6 passes per peer | efficient: 4 (mixed batch shared)
    passes: Literal["faithful", "efficient"] = "faithful"


@dataclass
class CoteachingConfig:
    """The Co-teaching baseline (Han et al., 2018; `--method=coteaching`, docs/baselines.md)."""

    # τ_f, final fraction dropped per batch; None: the noise report's realized rate when the
    # data knows it (synthetic noise, CIFAR-N), else 0.2
    forget_rate: Annotated[float, Interval("[0, 1)")] | None = None
    forget_ramp_frac: Fraction = 10 / 200  # T_k: R(T) reaches 1 - τ_f after this part of the run


@dataclass
class RunConfig:
    method: Method = "promix"
    baseline: Method | None = None  # also train this method on the same data and compare (ce)
    seed: Natural = 123
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # auto (bf16 on CUDA and on CPUs with AMX/AVX512-BF16) | fp32 | bf16
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    channels_last: bool = True
    compile: bool = False  # torch.compile the backbones
    # How the strong view runs (same pixels every way, docs/augment.md): grouped (each op on the
    # samples that drew it: least arithmetic, 3 host syncs), dense (every op on the whole batch:
    # fixed shapes, no sync), graph (dense, replayed as one CUDA graph; CUDA only).
    # auto: graph on CUDA, grouped on CPU.
    augment: Literal["auto", "grouped", "dense", "graph"] = "auto"
    out_dir: str = "runs"  # run directories are created under this
    name: str | None = None  # run directory name (default: time stamp and preset)
    eval_batch_size: Count = 1024  # batch of the selection pass and evaluation
    progress: bool = True  # progress bars
    deterministic: bool = False  # torch deterministic algorithms (bitwise resume tests)
    checkpoint_every: Natural = 1  # epochs between checkpoints (0: only the final model)
    keep_checkpoints: Count = 2  # how many checkpoints to keep
    resume: str | None = None  # run directory to continue
    sync_bn: bool = False  # torchrun on GPUs: BatchNorm statistics over the global batch


@dataclass
class Config:
    preset: str = "default"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    promix: ProMixConfig = field(default_factory=ProMixConfig)
    coteaching: CoteachingConfig = field(default_factory=CoteachingConfig)
    run: RunConfig = field(default_factory=RunConfig)
    # the paper's reported last accuracy for this setting
    paper_accuracy: Annotated[float, Interval("[0, 100]")] | None = None
    description: str = ""


def validate(cfg: Config) -> Config:
    """Check every field against its type and range, then the rules that involve the
    machine or the model registry; ConfigError names the field. Returns cfg (normalized)."""
    check_tree(cfg)
    from .models import BACKBONES

    if cfg.model.name not in BACKBONES and not cfg.model.name.startswith("timm:"):
        close = difflib.get_close_matches(cfg.model.name, list(BACKBONES), n=2)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise ConfigError(f"model.name={cfg.model.name!r} is not a registered model{hint} "
                          f"(use one of: {', '.join(sorted(BACKBONES))}, or timm:NAME)")
    run = cfg.run
    if run.device == "cuda" or run.augment == "graph":
        import torch

        cuda = torch.cuda.is_available() and run.device != "cpu"
        if not cuda and run.device == "cuda":
            raise ConfigError("--device=cuda needs a CUDA device and none is visible: use "
                              "--device=cpu or auto")
        if not cuda:
            raise ConfigError("--augment=graph needs a CUDA device and none is visible: use "
                              "--augment=grouped or dense on a CPU")
    return cfg


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply command-line overrides: `--key=value`, `--key value` or `key=value`."""
    for key, raw in override_pairs(overrides):
        set_value(cfg, key, raw)
    return cfg


def override_pairs(items: list[str]) -> list[tuple[str, str]]:
    """(key, raw value) of each override; `--key value` takes the next token as the value."""
    pairs, i = [], 0
    while i < len(items):
        item = items[i]
        text = item[2:] if item.startswith("--") else item
        if "=" in text:
            pairs.append(tuple(text.split("=", 1)))
        elif item.startswith("--") and i + 1 < len(items) and not items[i + 1].startswith("--"):
            pairs.append((text, items[i + 1]))
            i += 1
        elif item.startswith("--"):
            raise ConfigError(f"override '{item}' needs a value: --key=value or --key value")
        else:
            raise ConfigError(f"unexpected argument '{item}': overrides look like --key=value")
        i += 1
    return pairs


# ----------------------------------------------------------------------------- presets


def preset_names() -> list[str]:
    root = resources.files("promix") / "presets"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))


def load_preset(name_or_path: str) -> Config:
    """A preset by name (promix/presets/NAME.toml) or a TOML file path, over the defaults."""
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.exists():
        text, name = path.read_text(), path.stem
    else:
        file = resources.files("promix") / "presets" / f"{name_or_path}.toml"
        if not file.is_file():
            close = difflib.get_close_matches(name_or_path, preset_names(), n=3)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise ConfigError(
                f"no preset '{name_or_path}'{hint} (`promix presets` lists them)"
            )
        text, name = file.read_text(), name_or_path
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"preset {name}: {err}") from err
    cfg = Config(preset=name)
    for key, value in flatten(table):
        set_value(cfg, key, value)
    return cfg


def flatten(table: dict, prefix: str = ""):
    """(dotted key, value) pairs of a nested dict, e.g. ('promix.tau', 0.99)."""
    for key, value in table.items():
        if isinstance(value, dict):
            yield from flatten(value, f"{prefix}{key}.")
        else:
            yield prefix + key, value


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(table: dict) -> Config:
    """Rebuild a Config from `to_dict` output (a run directory's config.json)."""
    cfg = Config()
    for key, value in flatten(table):
        set_value(cfg, key, value)
    return cfg
