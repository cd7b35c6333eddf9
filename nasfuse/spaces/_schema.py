"""Checked reads from a search-space mapping, with errors that name the file and the key.

Every family module (``hrnet``, ``resnet``) reads its keys through these helpers, so that
a wrong value anywhere gives the same kind of message:
``search_spaces/hrnet_lite.yaml: key 'stages[1].channels': expected 3 widths (one per
branch), got [40, 80]``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "SpaceError",
    "Where",
    "check_keys",
    "get_int",
    "get_number",
    "get_bool",
    "get_int_list",
    "get_list",
    "scaled_width",
    "halve",
]

_MISSING: Any = object()


class SpaceError(ValueError):
    """A search space (file, overrides) or an architecture that does not fit its space."""


class Where:
    """Where a value was read from: the file (and overrides) and a key prefix.

    Args:
        source: the file or name, e.g. ``search_spaces/hrnet_lite.yaml``.
        prefix: the key path so far, e.g. ``stages[1]``.
    """

    def __init__(self, source: str, prefix: str = "") -> None:
        self.source = source
        self.prefix = prefix

    def key(self, key: str | int) -> str:
        """The full key path of ``key`` below this prefix."""
        if isinstance(key, int):
            return f"{self.prefix}[{key}]"
        return f"{self.prefix}.{key}" if self.prefix else key

    def child(self, key: str | int) -> Where:
        """A ``Where`` one level down, at ``key``."""
        return Where(self.source, self.key(key))

    def error(self, key: str | int | None, message: str) -> SpaceError:
        """A ``SpaceError`` naming the source, the key and what was expected."""
        path = self.key(key) if key is not None else self.prefix
        if path:
            return SpaceError(f"{self.source}: key '{path}': {message}")
        return SpaceError(f"{self.source}: {message}")


def check_keys(
    mapping: Any, allowed: Iterable[str], required: Iterable[str], where: Where
) -> Mapping[str, Any]:
    """Refuse a non-mapping, unknown keys and missing required keys; return the mapping."""
    allowed = list(allowed)
    if not isinstance(mapping, Mapping):
        raise where.error(
            None, f"expected a mapping with keys {', '.join(allowed)}, got {mapping!r}"
        )
    unknown = [str(k) for k in mapping if k not in allowed]
    if unknown:
        raise where.error(
            None,
            f"unknown key(s) {', '.join(repr(where.key(k)) for k in unknown)}; "
            f"expected some of: {', '.join(allowed)}",
        )
    missing = [k for k in required if k not in mapping]
    if missing:
        raise where.error(
            None, f"missing required key(s) {', '.join(repr(where.key(k)) for k in missing)}"
        )
    return mapping


def get_int(
    mapping: Mapping[str, Any], key: str, where: Where, default: Any = _MISSING, minimum: int = 1
) -> int:
    """An integer ``>= minimum`` (booleans refused)."""
    value = mapping.get(key, default)
    if value is _MISSING:
        raise where.error(key, "missing (expected an integer)")
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise where.error(key, f"expected an integer >= {minimum}, got {value!r}")
    return value


def get_number(
    mapping: Mapping[str, Any], key: str, where: Where, default: Any = _MISSING
) -> float:
    """A positive number, returned as ``float``."""
    value = mapping.get(key, default)
    if value is _MISSING:
        raise where.error(key, "missing (expected a positive number)")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise where.error(key, f"expected a positive number, got {value!r}")
    return float(value)


def get_bool(mapping: Mapping[str, Any], key: str, where: Where, default: Any = _MISSING) -> bool:
    """``true`` or ``false``."""
    value = mapping.get(key, default)
    if not isinstance(value, bool):
        raise where.error(key, f"expected true or false, got {value!r}")
    return value


def get_list(mapping: Mapping[str, Any], key: str, where: Where, default: Any = _MISSING) -> list:
    """A non-empty list."""
    value = mapping.get(key, default)
    if value is _MISSING:
        raise where.error(key, "missing (expected a list)")
    if not isinstance(value, (list, tuple)) or not value:
        raise where.error(key, f"expected a non-empty list, got {value!r}")
    return list(value)


def get_int_list(
    mapping: Mapping[str, Any], key: str, where: Where, length: int, what: str = "values"
) -> list[int]:
    """A list of ``length`` positive integers; ``what`` says what the list should hold."""
    values = get_list(mapping, key, where)
    if len(values) != length:
        raise where.error(key, f"expected {length} {what}, got {len(values)}: {values!r}")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise where.error(key, f"expected positive integers, got {value!r} in {values!r}")
    return [int(v) for v in values]


def scaled_width(channels: int, width_mult: float) -> int:
    """``channels * width_mult`` rounded to the nearest integer, at least 1."""
    return max(1, int(round(channels * width_mult)))


def halve(size: int, times: int = 1) -> int:
    """Spatial size after ``times`` stride-2 layers (3x3 pad 1, 1x1 pad 0, 7x7 pad 3, or
    3x3 max-pool pad 1): each gives ``ceil(size / 2)``."""
    for _ in range(times):
        size = (size + 1) // 2
    return size
