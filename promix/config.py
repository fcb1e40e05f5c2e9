"""One typed config tree. Defaults are the paper's (SPEC §10); presets are small TOML files.

`--key=value` overrides name a field by its dotted path (`--promix.tau=0.95`) or by its
leaf name when that is unique (`--tau=0.95`). Values are parsed and checked against the
field's type; a typo gets a clear message with the closest field names.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Literal

import tomllib


class ConfigError(ValueError):
    """A config file or override is wrong; the message says which key and how to fix it."""


@dataclass
class DataConfig:
    dataset: str = "digits"  # digits | mnist5k | cifar10 | cifar100 | folder | csv
    root: str | None = None  # data directory, .tar.gz, image folder or CSV file
    download: bool = False  # fetch the official archive (CIFAR) when root holds none
    noise: str = "sym"  # none | sym | sym_exact | asym | idn | aggre | worst | rand1..3 | noisy100
    noise_rate: float = 0.5  # fraction r of samples relabelled (sym: realized r(1-1/C))
    noise_file: str | None = None  # CIFAR-N labels (CIFAR-10_human.pt / CIFAR-100_human.pt)
    noise_seed: int = 123  # the reference seeds Python's random with 123 before injection
    image_size: int | None = None  # resize user images to this square size (None: keep)
    per_class: int | None = None  # keep the first n training images of each class
    test_fraction: float = 0.2  # held out when the data has no test split
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
    name: str = "small_cnn"  # registry name: resnet18 | preact_resnet18 | small_cnn
    width: int = 32  # small_cnn: first stage width (stages are w, 2w, 4w)


@dataclass
class OptimConfig:
    lr: float = 0.05  # η0, per-epoch cosine to η0 * lr_min_factor
    lr_min_factor: float = 1e-3  # η_min = η0 * 0.1^3 = 5e-5
    momentum: float = 0.9
    weight_decay: float = 5e-4  # applied to every parameter with a gradient, BN included
    batch_size: int = 256  # B


@dataclass
class ScheduleConfig:
    """Schedule lengths as fractions of the run (SPEC §13.1); E is the last epoch index."""

    epochs: int = 601  # number of epochs trained; the reference's 0..600 inclusive is 601
    warmup_epochs: int | None = 10  # cross-entropy warm-up length; None: auto (see schedules)
    ramp_frac: float = 50 / 600  # `warmup_ep`=50: ramp of the mix weight w and of ρ
    lambda_u_max: float = 0.1  # maximum unlabeled-loss weight (SPEC §13.2)
    lambda_u_ramp_frac: float = 100 / 600  # λ_u ramps over 2·warmup_ep = 100 epochs
    lambda_u_mode: str = "faithful"  # faithful: 0 from the cutoff on (Q3) | paper: no cutoff
    lambda_u_cutoff_frac: float = 100 / 600  # faithful mode: λ_u = 0 from this epoch on
    lga_frac: float = 250 / 600  # LGA active for e > E - K, K = lga_frac * E
    prior_momentum: float | None = 0.9999  # EMA m of the class priors; None: auto time constant
    prior_time_frac: float = 10_000 / (195 * 600)  # auto: 1/(1-m) as a fraction of all steps


@dataclass
class ProMixConfig:
    """Algorithm switches and constants. Every part can be turned off for ablations."""

    rho: float = 0.5  # selection ratio ρ (start); see rho_mode
    rho_end: float | None = None  # ρ ramps to this over ramp_frac (None: constant)
    # fixed: ρ as given | auto: estimated per class from the losses at every pass | lenient:
    # per class, drop only losses above the noisy component's mean | bayes: per class, keep
    # while the clean posterior exceeds rho_posterior. lenient and bayes are estimated once,
    # at the end of the warm-up, and held (docs/baselines.md)
    rho_mode: str = "fixed"
    rho_posterior: float = 0.1  # bayes: a dropped clean sample counts as (1-p)/p kept noisy ones
    quota: str = "uniform"  # uniform: k_j = ceil(ρN/C) (reference, Q5) | per_class: ceil(ρ n_j)
    selection: str = "css"  # css (class-wise small loss) | gmm (DivideMix's 2-component GMM)
    tau: float = 0.99  # confidence threshold of MHCS and LGA (strict)
    mhcs: bool = True  # matched high-confidence selection
    lga: bool = True  # label guessing by agreement in the last K epochs
    lga_threshold: float = 0.9  # θ: LGA fills the chosen set up to ⌊θB⌋
    lga_label: str = "faithful"  # faithful: each peer's debiased argmax (Q7) | agreed
    debias_output: float = 0.8  # α: logit adjustment strength inside the losses
    debias_pl: float = 0.8  # β_pl: debiasing strength of the pseudo-labels
    pseudo_head: bool = True  # auxiliary pseudo head h_AP and its losses
    consistency: bool = True  # CR terms (strong view trained on the same labels)
    mixup: bool = True
    fmix: bool = True
    mixup_alpha: float = 4.0  # λ0 ~ Beta(4, 4), λ = max(λ0, 1-λ0)
    fmix_decay: float = 3.0  # FMix spectrum decay power
    sharpen_t: float = 0.5  # T
    conf_penalty: str = "none"  # warm-up penalty: none | faithful (Q4 logit clamp) | fixed
    passes: str = "faithful"  # faithful: 6 passes per peer | efficient: 4 (mixed batch shared)


@dataclass
class CoteachingConfig:
    """The Co-teaching baseline (Han et al., 2018; `--method=coteaching`, docs/baselines.md)."""

    forget_rate: float | None = None  # τ_f, final fraction dropped per batch; None: the noise
    # report's realized rate when the data knows it (synthetic noise, CIFAR-N), else 0.2
    forget_ramp_frac: float = 10 / 200  # T_k: R(T) reaches 1 - τ_f after this part of the run


@dataclass
class RunConfig:
    method: str = "promix"  # promix | ce | coteaching
    baseline: str | None = None  # also train this method on the same data and compare (ce)
    seed: int = 123
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto (bf16 on CUDA and on CPUs with AMX/AVX512-BF16) | fp32 | bf16
    channels_last: bool = True
    compile: bool = False  # torch.compile the backbones
    # How the strong view runs (same pixels every way, docs/augment.md): grouped (each op on the
    # samples that drew it: least arithmetic, 3 host syncs), dense (every op on the whole batch:
    # fixed shapes, no sync), graph (dense, replayed as one CUDA graph; CUDA only).
    # auto: graph on CUDA, grouped on CPU.
    augment: str = "auto"
    out_dir: str = "runs"  # run directories are created under this
    name: str | None = None  # run directory name (default: time stamp and preset)
    eval_batch_size: int = 1024  # batch of the selection pass and evaluation
    progress: bool = True  # progress bars
    deterministic: bool = False  # torch deterministic algorithms (bitwise resume tests)
    checkpoint_every: int = 1  # epochs between checkpoints (0: only the final model)
    keep_checkpoints: int = 2  # how many checkpoints to keep
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
    paper_accuracy: float | None = None  # the paper's reported last accuracy for this setting
    description: str = ""


CHOICES = {
    "data.noise": {"none", "sym", "sym_exact", "asym", "idn", "clean", "aggre", "worst",
                   "rand1", "rand2", "rand3", "noisy100"},
    "model.name": None,  # checked against the model registry at build time
    "schedule.lambda_u_mode": {"faithful", "paper"},
    "promix.rho_mode": {"fixed", "auto", "lenient", "bayes"},
    "promix.quota": {"uniform", "per_class"},
    "promix.selection": {"css", "gmm"},
    "promix.lga_label": {"faithful", "agreed"},
    "promix.conf_penalty": {"none", "faithful", "fixed"},
    "promix.passes": {"faithful", "efficient"},
    "run.method": {"promix", "ce", "coteaching"},
    "run.device": {"auto", "cpu", "cuda"},
    "run.precision": {"auto", "fp32", "bf16"},
    "run.augment": {"auto", "grouped", "dense", "graph"},
}


# "auto" reads better for fields whose None means "derive it" (warmup_epochs, prior_momentum).
NULL_WORDS = ("none", "null", "auto")

# ----------------------------------------------------------------------------- access


def leaves(cfg: object, prefix: str = "") -> dict[str, tuple[object, dataclasses.Field]]:
    """Dotted path -> (owning dataclass instance, field) for every leaf field."""
    out = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        path = prefix + f.name
        if dataclasses.is_dataclass(value):
            out.update(leaves(value, path + "."))
        else:
            out[path] = (cfg, f)
    return out


def resolve_key(cfg: Config, key: str) -> str:
    """Full dotted path for `key`, which may be a unique leaf name."""
    table = leaves(cfg)
    key = key.replace("-", "_")
    if key in table:
        return key
    matches = [p for p in table if p.rsplit(".", 1)[-1] == key]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise ConfigError(f"'{key}' is ambiguous: use one of {', '.join(sorted(matches))}")
    names = list(table) + [p.rsplit(".", 1)[-1] for p in table]
    close = difflib.get_close_matches(key, names, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else "; `promix config` lists them"
    raise ConfigError(f"unknown config key '{key}'{hint}")


def parse_value(path: str, annotation: object, raw: object) -> object:
    """Convert `raw` (a CLI string or a TOML value) to the field's type, or explain why not."""
    allowed = _types(annotation)
    nullable = type(None) in allowed
    if raw is None or (nullable and isinstance(raw, str) and raw.lower() in NULL_WORDS):
        if nullable:
            return None
        raise ConfigError(f"{path} cannot be None")
    for t in allowed:
        if t is type(None):
            continue
        try:
            value = _convert(t, raw)
        except (TypeError, ValueError):
            continue
        choices = CHOICES.get(path)
        if choices and value not in choices:
            raise ConfigError(f"{path}={value!r} is not one of: {', '.join(sorted(choices))}")
        return value
    names = " or ".join(" | ".join(map(str, typing.get_args(t))) if typing.get_origin(t) is Literal
                        else t.__name__ for t in allowed)
    raise ConfigError(f"{path}={raw!r}: expected {names}")


def _types(annotation: object) -> tuple[type, ...]:
    if isinstance(annotation, str):
        annotation = eval(annotation, vars(typing) | {"__builtins__": __builtins__})  # noqa: S307
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def _convert(t: type, raw: object) -> object:
    if typing.get_origin(t) is Literal:
        if raw not in typing.get_args(t):
            raise ValueError(raw)
        return raw
    if t is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(raw, str) and raw.lower() in ("false", "0", "no", "off"):
            return False
        raise ValueError(raw)
    if t is int:
        if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
            raise ValueError(raw)
        return int(raw)
    if t is float:
        if isinstance(raw, bool):
            raise ValueError(raw)
        return float(raw)
    if t is str:
        if not isinstance(raw, str):
            raise TypeError(raw)
        return raw
    raise TypeError(t)


def set_value(cfg: Config, key: str, raw: object) -> None:
    path = resolve_key(cfg, key)
    owner, f = leaves(cfg)[path]
    setattr(owner, f.name, parse_value(path, f.type, raw))


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply `key=value` strings (a leading `--` is allowed)."""
    for item in overrides:
        text = item[2:] if item.startswith("--") else item
        if "=" not in text:
            raise ConfigError(f"override '{item}' must look like --key=value")
        key, raw = text.split("=", 1)
        set_value(cfg, key, raw)
    return cfg


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
