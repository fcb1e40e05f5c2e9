"""Typed dataclass fields: parse a value for a field and check it against the field's type.

A field's type says everything that is checked, so a new field is checked without any
side table:
    tau: Annotated[float, Interval("[0, 1]")] = 0.99     a float in [0, 1]
    quota: Literal["uniform", "per_class"] = "uniform"    one of these strings
    rho_end: Fraction | None = None                       None, or what Fraction allows
Types are read with `typing.get_type_hints` (so `from __future__ import annotations` is fine).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import types
import typing

# "auto" reads better for fields whose None means "derive it" (warmup_epochs, prior_momentum).
NULL_WORDS = ("none", "null", "auto")


class ConfigError(ValueError):
    """A config file or override is wrong; the message says which key and how to fix it."""


class Interval:
    """A range in interval notation: Interval("[0, 1)"), Interval("(0, inf)")."""

    def __init__(self, text: str):
        lo, hi = (part.strip() for part in text[1:-1].split(","))
        self.text, self.lo, self.hi = text, float(lo), float(hi)
        self.lo_open, self.hi_open = text[0] == "(", text[-1] == ")"

    def __contains__(self, x: float) -> bool:
        above = x > self.lo if self.lo_open else x >= self.lo
        below = x < self.hi if self.hi_open else x <= self.hi
        return bool(above and below)

    def __repr__(self) -> str:
        return f"Interval({self.text!r})"

    def __str__(self) -> str:
        """In words: '>= 1', '> 0', 'in [0, 1)'."""
        if math.isinf(self.hi):
            return f"{'>' if self.lo_open else '>='} {self.lo:g}"
        return f"in {self.text}"


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


@functools.cache
def hints(cls: type) -> dict[str, object]:
    """The resolved type of every field of a dataclass, Annotated extras kept."""
    return typing.get_type_hints(cls, include_extras=True)


# Section names that also stand for one of their fields: --model=timm:resnet50.
ALIASES = {"model": "model.name"}


def resolve_key(cfg: object, key: str) -> str:
    """Full dotted path for `key`, which may be a unique leaf name."""
    table = leaves(cfg)
    key = ALIASES.get(key.replace("-", "_"), key.replace("-", "_"))
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


def set_value(cfg: object, key: str, raw: object) -> None:
    """Parse `raw` for the field `key` names (dotted path or unique leaf) and set it."""
    path = resolve_key(cfg, key)
    owner, f = leaves(cfg)[path]
    setattr(owner, f.name, parse_value(path, hints(type(owner))[f.name], raw))


def check_tree(cfg: object) -> None:
    """Check (and normalize, e.g. int -> float) every leaf of a dataclass tree in place."""
    for path, (owner, f) in leaves(cfg).items():
        value = getattr(owner, f.name)
        setattr(owner, f.name, parse_value(path, hints(type(owner))[f.name], value))


def parse_value(path: str, hint: object, raw: object) -> object:
    """`raw` (a CLI string, a TOML or Python value) as the field's type, or a ConfigError."""
    options = _options(hint)
    nullable = type(None) in options
    if raw is None or (nullable and isinstance(raw, str) and raw.lower() in NULL_WORDS):
        if nullable:
            return None
        raise ConfigError(f"{path} cannot be None: {describe(hint)}")
    for option in options:
        if option is type(None):
            continue
        try:
            value = _convert(option, raw)
        except (TypeError, ValueError):
            continue
        return _check(path, option, value)
    raise ConfigError(f"{path}={raw!r}: expected {describe(hint)}")


def describe(hint: object) -> str:
    """What a type allows, in words: 'float in [0, 1]', 'one of: a, b', 'int or None'."""
    words = []
    for option in _options(hint):
        base, interval = _base(option)
        if base is type(None):
            words.append("None")
        elif typing.get_origin(base) is typing.Literal:
            words.append("one of: " + ", ".join(map(str, typing.get_args(base))))
        else:
            words.append(base.__name__ + (f" {interval}" if interval else ""))
    return " or ".join(words)


def _options(hint: object) -> tuple:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def _base(option: object) -> tuple[object, Interval | None]:
    """(the plain type, its Interval or None) of Annotated[T, Interval(...)] or T."""
    if typing.get_origin(option) is typing.Annotated:
        base, *extras = typing.get_args(option)
        return base, next((e for e in extras if isinstance(e, Interval)), None)
    return option, None


def _check(path: str, option: object, value: object) -> object:
    base, interval = _base(option)
    if typing.get_origin(base) is typing.Literal:
        choices = typing.get_args(base)
        if value not in choices:
            raise ConfigError(f"{path}={value!r} is not one of: {', '.join(map(str, choices))}")
    if interval is not None and (isinstance(value, float) and math.isnan(value)
                                 or value not in interval):
        raise ConfigError(f"{path}={value!r} is out of range: expected {describe(option)}")
    return value


def _convert(option: object, raw: object) -> object:
    base, _ = _base(option)
    if typing.get_origin(base) is typing.Literal:
        base = type(typing.get_args(base)[0])
    if base is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(raw, str) and raw.lower() in ("false", "0", "no", "off"):
            return False
        raise ValueError(raw)
    if base is int:
        if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
            raise ValueError(raw)
        return int(raw)
    if base is float:
        if isinstance(raw, bool):
            raise ValueError(raw)
        return float(raw)
    if base is str:
        if not isinstance(raw, str):
            raise TypeError(raw)
        return raw
    raise TypeError(base)
