"""Config tree: overrides checked against types, presets, round trips."""

import dataclasses
import functools
from pathlib import Path
from typing import Annotated, Literal

import pytest
import tomllib

from promix.config import (
    Config,
    ConfigError,
    Fraction,
    Interval,
    apply_overrides,
    from_dict,
    load_preset,
    preset_names,
    set_value,
    to_dict,
    validate,
)


@pytest.mark.parametrize(
    "override, path, value",
    [
        ("--promix.tau=0.95", ("promix", "tau"), 0.95),
        ("--tau=0.9", ("promix", "tau"), 0.9),  # unique leaf name
        ("--epochs=20", ("schedule", "epochs"), 20),
        ("--mhcs=false", ("promix", "mhcs"), False),
        ("--warmup_epochs=none", ("schedule", "warmup_epochs"), None),
        ("--warmup-epochs=auto", ("schedule", "warmup_epochs"), None),
        ("--data.root=/tmp/x", ("data", "root"), "/tmp/x"),
        ("--rho_end=0.7", ("promix", "rho_end"), 0.7),
    ],
)
def test_overrides(override, path, value):
    cfg = apply_overrides(Config(), [override])
    assert getattr(getattr(cfg, path[0]), path[1]) == value


@pytest.mark.parametrize(
    "override, message",
    [
        ("--tua=0.9", "did you mean tau"),
        ("--epochs=ten", "expected int"),
        ("--epochs=2.5", "expected int"),
        ("--mhcs=maybe", "expected bool"),
        ("--name=x", "ambiguous"),
        ("--quota=global", "not one of"),
        ("--epochs", "--key=value or --key value"),
        ("--tau=none", "expected float"),
    ],
)
def test_bad_overrides_explain(override, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(Config(), [override])


def _toml_leaves(table, prefix=""):
    for key, value in table.items():
        if isinstance(value, dict):
            yield from _toml_leaves(value, f"{prefix}{key}.")
        else:
            yield prefix + key, value


PRESETS = Path(__file__).resolve().parents[1] / "promix" / "presets"


@pytest.mark.parametrize("name", sorted(p.stem for p in PRESETS.glob("*.toml")))
def test_every_preset_loads_what_its_file_states(name):
    """Every key of the TOML file, read here with tomllib, is the resolved config's value
    ("auto" and "none" are the None of the fields that derive their value); every other
    field keeps its default."""
    assert name in preset_names()
    stated = dict(_toml_leaves(tomllib.loads((PRESETS / f"{name}.toml").read_text())))
    cfg, default = load_preset(name), Config()
    assert cfg.preset == name and stated
    for path, annotation in _config_paths(default):
        value = functools.reduce(getattr, path.split("."), cfg)
        if path in stated:
            want = stated[path]
            if "None" in str(annotation) and want in ("auto", "none"):
                want = None
            assert value == want and type(value) is type(want), path
        elif path != "preset":
            assert value == functools.reduce(getattr, path.split("."), default), path


def _config_paths(cfg, prefix=""):
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            yield from _config_paths(value, f"{prefix}{f.name}.")
        else:
            yield prefix + f.name, f.type


def test_unknown_preset_suggests():
    with pytest.raises(ConfigError, match="did you mean demo"):
        load_preset("dem")


def test_dict_roundtrip():
    cfg = apply_overrides(load_preset("demo"), ["--tau=0.5", "--warmup_epochs=none"])
    assert from_dict(to_dict(cfg)) == cfg


def test_preset_file_path(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('[promix]\ntau = 0.9\n[schedule]\nepochs = 7\n')
    cfg = load_preset(str(path))
    assert (cfg.promix.tau, cfg.schedule.epochs, cfg.preset) == (0.9, 7, "mine")
    path.write_text('[promix]\ntau = "high"\n')
    with pytest.raises(ConfigError, match="promix.tau"):
        load_preset(str(path))


@pytest.mark.parametrize("section, name, value, message", [
    ("promix", "tau", 2.0, "promix.tau=2.0 is out of range"),
    ("schedule", "epochs", 0, "schedule.epochs=0 is out of range"),
    ("schedule", "epochs", True, "expected int"),
    ("optim", "lr", -1.0, "optim.lr=-1.0 is out of range"),
    ("run", "method", "dividemix", "not one of"),
    ("model", "name", "vit", "not a registered model"),
    ("data", "root", 3, "expected str or None"),
])
def test_validate_checks_values_set_in_python(section, name, value, message):
    cfg = Config()
    setattr(getattr(cfg, section), name, value)
    with pytest.raises(ConfigError, match=message):
        validate(cfg)


def test_validate_normalizes_ints_for_float_fields():
    cfg = Config()
    cfg.promix.tau = 1
    assert validate(cfg).promix.tau == 1.0 and isinstance(cfg.promix.tau, float)


@dataclasses.dataclass
class NewSection:  # a field another part of promix might add: checked with no extra code
    level: Annotated[int, Interval("[1, 3]")] = 1
    mode: Literal["a", "b"] = "a"
    share: Fraction | None = None


@pytest.mark.parametrize("key, raw, value", [
    ("level", "2", 2), ("mode", "b", "b"), ("share", "none", None), ("share", "0.5", 0.5)])
def test_any_new_field_is_parsed_by_its_type(key, raw, value):
    cfg = NewSection()
    set_value(cfg, key, raw)
    assert getattr(cfg, key) == value


@pytest.mark.parametrize("key, raw, message", [
    ("level", "4", r"level=4 is out of range: expected int in \[1, 3\]"),
    ("mode", "c", "mode='c' is not one of: a, b"),
    ("share", "1.5", "share=1.5 is out of range"),
])
def test_any_new_field_is_checked_by_its_type(key, raw, message):
    with pytest.raises(ConfigError, match=message):
        set_value(NewSection(), key, raw)


def test_key_value_and_key_space_value():
    cfg = apply_overrides(Config(), ["--epochs", "8", "--tau=0.5"])
    assert (cfg.schedule.epochs, cfg.promix.tau) == (8, 0.5)
    with pytest.raises(ConfigError, match="out of range"):
        apply_overrides(Config(), ["--lr", "-0.5"])


def test_the_noise_kinds_are_written_once():
    from typing import get_args

    from promix.config import HumanNoise, SyntheticNoise
    from promix.data.cifarn import KEYS
    from promix.data.noise import KINDS

    assert KINDS == get_args(SyntheticNoise) and set(KEYS) == set(get_args(HumanNoise))
