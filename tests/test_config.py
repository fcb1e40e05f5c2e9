"""Config tree: overrides checked against types, presets, round trips."""

import dataclasses
import functools
from pathlib import Path

import pytest
import tomllib

from promix.config import (
    Config,
    ConfigError,
    apply_overrides,
    from_dict,
    load_preset,
    preset_names,
    to_dict,
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
        ("--epochs", "--key=value"),
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
