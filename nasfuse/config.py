"""Stage configs: a dataclass per stage, loaded from YAML, overridden with ``key=value``.

Every stage of the pipeline (supernet training, retraining, latency, search) has a
dataclass of its own. This module gives them one way to be read, overridden and written
back, so that the resolved config of every run can be stored next to its results.

Example:
    >>> @dataclasses.dataclass
    ... class TrainConfig:
    ...     epochs: int = 10
    ...     lr: float = 0.1
    >>> load_config(TrainConfig, overrides=["epochs=3"]).epochs
    3
"""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from nasfuse.files import atomic_write_text, parse_yaml_text, read_yaml_mapping

__all__ = ["ConfigError", "load_config", "save_config", "config_from_dict", "parse_overrides"]

T = TypeVar("T")
# A decimal number, exponent included: what a user means by 1e-4 (YAML 1.1 reads a string).
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


class ConfigError(ValueError):
    """A config file or override that does not fit its dataclass."""


def parse_overrides(overrides: Iterable[str]) -> dict[str, Any]:
    """Turn ``["epochs=3", "lr=0.05"]`` into ``{"epochs": 3, "lr": 0.05}``.

    Values are parsed as YAML scalars, so ``true``, ``3``, ``0.1`` and ``[1, 2]`` get their
    natural types and anything else stays a string. Numbers in exponent form (``1e-4``,
    ``5E3``), which YAML 1.1 leaves as strings, are floats too; quote one to keep a string.
    """
    result: dict[str, Any] = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form key=value")
        source = f"override {item!r}"
        parsed = parse_yaml_text(value, source, ConfigError) if value.strip() else None
        if isinstance(parsed, str) and _NUMBER.fullmatch(value.strip()):
            parsed = float(value)
        result[key.strip()] = parsed
    return result


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check ``value`` against a field annotation, converting int to float where natural."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin is typing.Union or (
        origin is not None and str(origin) == "<class 'types.UnionType'>"
    ):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: unexpected value {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item_type = args[0] if args else Any
        items = [_coerce(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: expected one of {list(args)}, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if annotation is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def config_from_dict(cls: type[T], data: Mapping[str, Any], source: str = "config") -> T:
    """Build ``cls`` from a mapping, refusing unknown keys and values of the wrong type."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(unknown)} for {cls.__name__}; "
            f"expected some of: {', '.join(sorted(fields))}"
        )
    kwargs = {
        name: _coerce(value, hints[name], f"{source}: key '{name}'") for name, value in data.items()
    }
    return cls(**kwargs)


def load_config(
    cls: type[T],
    path: str | Path | None = None,
    overrides: Iterable[str] | Mapping[str, Any] = (),
) -> T:
    """Load ``cls`` from an optional YAML file, then apply overrides.

    Args:
        cls: the stage's dataclass; its defaults fill what the file does not give.
        path: a YAML mapping of field names to values, or None for the defaults.
        overrides: ``key=value`` strings (from the command line) or a mapping; they win
            over the file.

    Raises:
        ConfigError: naming the file and the key, for unknown keys, wrong types, a file
            that is missing or not valid YAML.
    """
    data: dict[str, Any] = {}
    source = "overrides"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        data.update(
            read_yaml_mapping(path, "a mapping of keys to values", ConfigError, allow_empty=True)
        )
    extra = dict(overrides) if isinstance(overrides, Mapping) else parse_overrides(overrides)
    data.update(extra)
    return config_from_dict(cls, data, source)


def save_config(config: Any, path: str | Path) -> None:
    """Write a dataclass config as YAML (atomically), so the run can be repeated."""
    data = dataclasses.asdict(config)
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))
