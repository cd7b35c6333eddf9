"""Stage configs: a dataclass per stage, loaded from YAML, overridden with ``key=value``.

Every stage of the pipeline (supernet training, retraining, latency, search) has a
dataclass of its own. This module gives them one way to be read, overridden and written
back, so that the resolved config of every run can be stored next to its results, and one
answer to "may this run be resumed with this config?": fields declared with
:func:`run_only` (threads, progress bars, where the data lives, ...) may change between a
run and its resume; every other field decides the result, so :func:`check_resumable`
refuses a change to it and :func:`config_fingerprint` names a cache by those fields alone.

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
import hashlib
import json
import re
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from nasfuse.files import atomic_write_text, parse_yaml_text, read_yaml_mapping

__all__ = [
    "ConfigError",
    "FieldChange",
    "ResumeConflict",
    "changed_fields",
    "check_resumable",
    "config_fingerprint",
    "config_from_dict",
    "load_config",
    "parse_overrides",
    "result_fields",
    "run_only",
    "run_only_fields",
    "save_config",
    "upgraded",
]

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


def upgraded(cls: type, data: Mapping[str, Any]) -> Mapping[str, Any]:
    """``data`` as config class ``cls`` reads it today: through ``cls.upgrade_saved``, a
    static method a config class defines when a key it once wrote has changed meaning, so
    that files of older runs still load and resume; unchanged for a class without one."""
    upgrade = getattr(cls, "upgrade_saved", None)
    return upgrade(data) if upgrade is not None else data


def config_from_dict(cls: type[T], data: Mapping[str, Any], source: str = "config") -> T:
    """Build ``cls`` from a mapping (through :func:`upgraded`), refusing unknown keys and
    values of the wrong type."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    data = upgraded(cls, data)
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


# ------------------------------------------------------------ resume and cache identity
_RUN_ONLY = "nasfuse.run_only"
"""Field metadata key marking a field that may change on resume (see :func:`run_only`)."""


def run_only(
    default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING
) -> Any:
    """A dataclass field that says how a run goes, not what it computes.

    Such a field (CPU threads, a progress bar, where the data lives) may change when a run is
    resumed, and does not enter :func:`config_fingerprint`. Every other field of a config
    decides the result: changing it is refused on resume. A subclass that declares the
    field again must declare it with ``run_only`` too (:func:`run_only_fields` checks).

    Example:
        >>> @dataclasses.dataclass
        ... class Config:
        ...     lr: float = 0.1
        ...     threads: int | None = run_only(None)
        >>> sorted(run_only_fields(Config))
        ['threads']
    """
    return dataclasses.field(
        default=default, default_factory=default_factory, metadata={_RUN_ONLY: True}
    )


def run_only_fields(cfg_type: type) -> frozenset[str]:
    """Names of the fields of dataclass ``cfg_type`` declared with :func:`run_only`.

    Raises:
        TypeError: a subclass declares again, without ``run_only``, a field that a base
            class declares with it (or the other way round): a changed default must not
            silently change what a resume accepts.
    """
    marked = {f.name for f in dataclasses.fields(cfg_type) if f.metadata.get(_RUN_ONLY)}
    for base in cfg_type.__mro__[1:]:
        if not dataclasses.is_dataclass(base):
            continue
        for f in dataclasses.fields(base):
            if bool(f.metadata.get(_RUN_ONLY)) != (f.name in marked):
                raise TypeError(
                    f"{cfg_type.__name__}.{f.name} and {base.__name__}.{f.name} disagree on "
                    "whether it is run-only; declare both with run_only() or neither"
                )
    return frozenset(marked)


def result_fields(cfg: Any, exclude: Iterable[str] = ()) -> dict[str, Any]:
    """The fields of config ``cfg`` that decide its result (all but the run-only ones).

    Args:
        cfg: a dataclass config.
        exclude: further fields to leave out (e.g. a seed that a cache names separately).

    Returns:
        ``{name: value}`` in field order, values as :func:`dataclasses.asdict` gives them.
    """
    skipped = run_only_fields(type(cfg)) | set(exclude)
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in skipped}


def config_fingerprint(
    cfg: Any,
    exclude: Iterable[str] = (),
    extra: Mapping[str, Any] | None = None,
    length: int = 12,
) -> str:
    """Hex digest of :func:`result_fields` (plus ``extra``): names what ``cfg`` computes.

    Two configs that differ only in run-only fields get the same fingerprint, so a cache
    keyed by it is shared exactly where :func:`check_resumable` lets a run continue.

    Args:
        cfg: a dataclass config.
        exclude: fields left out (see :func:`result_fields`).
        extra: more identity to hash with the fields (e.g. the search space's hash).
        length: hex characters kept.
    """
    settings = {**dict(extra or {}), **result_fields(cfg, exclude)}
    canonical = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:length]


class _Missing:
    """Stands for a field one side of a comparison does not have (shown, never compared)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


_NOT_A_FIELD = _Missing("(no such setting now)")
_NO_DEFAULT = _Missing("nothing")


@dataclasses.dataclass(frozen=True)
class FieldChange:
    """One result-deciding field whose value differs between a saved run and now."""

    name: str
    saved: Any
    current: Any
    recorded: bool = True  # False: the run predates the field; ``saved`` is its default

    def __str__(self) -> str:
        before = repr(self.saved) if self.recorded else f"(not recorded, default {self.saved!r})"
        return f"{self.name}: {before} -> {self.current!r}"


def _default(f: dataclasses.Field) -> Any:
    """The value a field gets when it is not given (a stand-in if it has none)."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return _NO_DEFAULT


def changed_fields(saved: Mapping[str, Any], current: Any) -> list[FieldChange]:
    """The result-deciding fields in which config ``current`` differs from ``saved``.

    Args:
        saved: the config a run was started with, as a mapping (a checkpoint's
            ``config``, a run's YAML file).
        current: the dataclass config it is to be resumed with.

    A field ``saved`` lacks (the run predates it) counts as its default value, the value
    that keeps what older runs did; a retired key the config class upgrades
    (:func:`upgraded`) is read as its upgrade; any other saved key that is no longer a
    field is a change, since what it asked for cannot be honoured now.

    Returns:
        The changes in field order, then unknown saved keys in sorted order; empty when the
        run may be resumed.
    """
    run_only_names = run_only_fields(type(current))
    saved = upgraded(type(current), saved)
    now = dataclasses.asdict(current)
    changes = []
    for f in dataclasses.fields(current):
        if f.name in run_only_names:
            continue
        recorded = f.name in saved
        before = saved[f.name] if recorded else _default(f)
        if before != now[f.name]:
            changes.append(FieldChange(f.name, before, now[f.name], recorded))
    for name in sorted(set(saved) - set(now)):
        changes.append(FieldChange(name, saved[name], _NOT_A_FIELD))
    return changes


class ResumeConflict(ConfigError):
    """Resuming a run with a config that would compute something else."""


def check_resumable(saved: Mapping[str, Any], current: Any, where: str, remedy: str) -> None:
    """Refuse to resume the run started with ``saved`` under config ``current``.

    Args:
        saved: the run's config as recorded (see :func:`changed_fields`).
        current: the dataclass config of the resume.
        where: what the message is about (the checkpoint or config file).
        remedy: what the user can do instead, in a clause.

    Raises:
        ResumeConflict: naming every changed field (``name: saved -> current``), the
            remedy, and the fields that may change on resume.
    """
    changes = changed_fields(saved, current)
    if not changes:
        return
    free = ", ".join(sorted(run_only_fields(type(current)))) or "none"
    raise ResumeConflict(
        f"{where}: cannot resume, the run was started with other settings "
        f"({'; '.join(str(change) for change in changes)}); {remedy} (only these may change "
        f"on resume: {free})"
    )
