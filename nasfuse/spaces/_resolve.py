"""Validating a space file's mapping into a resolved config and its fusion ``Site`` s.

A space file (see ``search_spaces/*.yaml``) holds common keys and its family's keys::

    name: hrnet_lite             # required
    family: hrnet                # required: a registered family (hrnet, resnet)
    description: ...             # optional, not part of the hash
    input_size: 32               # square input side; site shapes are computed at this size
    in_chans: 3
    width_mult: 1.0              # multiplies every width of the family
    ops: [add, concat, aff]      # the ops allowed at every site ...
    restrict:                    # ... unless a rule below removes one from a site
      cmgm: {max_hw: 256}        # keys: max_hw, min_hw, max_channels, sites (fnmatch globs)
    # family keys: see nasfuse/spaces/hrnet.py and resnet.py (the registered families)

Every site name is matched against ``restrict.<op>.sites`` with ``fnmatch`` (so
``"*.fuse.*"`` keeps an op to fuse layers); ``max_hw``/``min_hw`` compare ``H * W`` at the
space's input size; ``max_channels`` compares C.
"""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Mapping
from typing import Any

from nasfuse.spaces._family import get_family
from nasfuse.spaces._schema import (
    SpaceError,
    Where,
    check_keys,
    get_int,
    get_list,
    get_number,
)
from nasfuse.spaces._site import Site

__all__ = ["COMMON_KEYS", "RULE_KEYS", "apply_overrides", "resolve_space", "with_overrides"]

COMMON_KEYS = (
    "name",
    "family",
    "description",
    "input_size",
    "in_chans",
    "width_mult",
    "ops",
    "restrict",
)
RULE_KEYS = ("max_hw", "min_hw", "max_channels", "sites")


def apply_overrides(
    raw: dict[str, Any], overrides: Mapping[str, Any], source: str
) -> dict[str, Any]:
    """A copy of ``raw`` with each ``"a.b.0.c": value`` override set.

    The last key may be new (validation then refuses it if it is unknown); every key
    before it must exist.
    """
    data = copy.deepcopy(raw)
    for dotted, value in overrides.items():
        parts = str(dotted).split(".")
        node: Any = data
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise SpaceError(
                        f"{source}: override {dotted!r}: {part!r} is not an index of a list of {len(node)}"
                    )
                index: Any = int(part)
            elif isinstance(node, dict):
                index = part
                if not last and part not in node:
                    raise SpaceError(
                        f"{source}: override {dotted!r}: no key {'.'.join(parts[: depth + 1])!r}"
                    )
            else:
                raise SpaceError(
                    f"{source}: override {dotted!r}: {'.'.join(parts[:depth])!r} is not a mapping or list"
                )
            if last:
                node[index] = copy.deepcopy(value)
            else:
                node = node[index]
    return data


def with_overrides(
    raw: dict[str, Any], overrides: Mapping[str, Any], source: str
) -> dict[str, Any]:
    """:func:`apply_overrides`, and an ``ops`` override that narrows the op list (without
    a ``restrict`` override) drops the file's rules of the ops it removed; a rule for an
    unknown op written in the file itself is still refused."""
    data = apply_overrides(raw, overrides, source)
    narrowed = "ops" in overrides and "restrict" not in overrides
    if narrowed and isinstance(data.get("restrict"), dict) and isinstance(data["ops"], list):
        data["restrict"] = {op: rule for op, rule in data["restrict"].items() if op in data["ops"]}
    return data


def _resolve_restrictions(raw: Any, ops: list[str], where: Where) -> dict[str, dict[str, Any]]:
    rules = check_keys(raw, ops, (), where.child("restrict")) if raw is not None else {}
    resolved: dict[str, dict[str, Any]] = {}
    for op, rule in rules.items():
        at = where.child("restrict").child(op)
        check_keys(rule, RULE_KEYS, (), at)
        entry: dict[str, Any] = {}
        for key in ("max_hw", "min_hw", "max_channels"):
            if key in rule:
                entry[key] = get_int(rule, key, at)
        if "sites" in rule:
            patterns = get_list(rule, "sites", at)
            if not all(isinstance(p, str) for p in patterns):
                raise at.error("sites", f"expected a list of site-name patterns, got {patterns!r}")
            entry["sites"] = list(patterns)
        resolved[op] = entry
    return resolved


def _op_allowed(rule: Mapping[str, Any] | None, name: str, channels: int, hw: int) -> bool:
    if not rule:
        return True
    if "max_hw" in rule and hw > rule["max_hw"]:
        return False
    if "min_hw" in rule and hw < rule["min_hw"]:
        return False
    if "max_channels" in rule and channels > rule["max_channels"]:
        return False
    return not ("sites" in rule and not any(fnmatch.fnmatchcase(name, p) for p in rule["sites"]))


def resolve_space(raw: Mapping[str, Any], where: Where) -> tuple[dict[str, Any], list[Site]]:
    """Validate a raw space mapping; return the resolved config and its sites."""
    from nasfuse.ops import list_ops

    if not isinstance(raw, Mapping) or "family" not in raw:
        check_keys(raw, COMMON_KEYS, ("family",), where)
    family = get_family(raw["family"], where)
    check_keys(
        raw, COMMON_KEYS + family.keys, ("name", "family", "input_size", "ops", "stages"), where
    )
    if not isinstance(raw["name"], str) or not raw["name"]:
        raise where.error("name", f"expected a non-empty string, got {raw['name']!r}")
    ops = get_list(raw, "ops", where)
    registered = list_ops()
    for op in ops:
        if not isinstance(op, str) or op not in registered:
            raise where.error("ops", f"unknown op {op!r}; registered ops: {', '.join(registered)}")
    if len(set(ops)) != len(ops):
        raise where.error("ops", f"an op is listed twice in {ops!r}")
    config: dict[str, Any] = {
        "name": raw["name"],
        "family": family.name,
        "description": str(raw.get("description", "")),
        "input_size": get_int(raw, "input_size", where),
        "in_chans": get_int(raw, "in_chans", where, default=3),
        "width_mult": get_number(raw, "width_mult", where, default=1.0),
        "ops": list(ops),
        "restrict": _resolve_restrictions(raw.get("restrict"), ops, where),
    }
    config.update(family.resolve(raw, where))
    sites = []
    for name, channels, num_inputs, height, width in family.layout(config):
        allowed = tuple(
            op
            for op in ops
            if _op_allowed(config["restrict"].get(op), name, channels, height * width)
        )
        if not allowed:
            raise where.error(
                "restrict", f"no op is left at site {name!r} ({channels}x{height}x{width})"
            )
        sites.append(Site(name, channels, num_inputs, height, width, allowed))
    return config, sites
