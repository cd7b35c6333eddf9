"""Search spaces: YAML files validated into a ``SearchSpace`` with its fusion ``Site`` s.

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
import hashlib
import json
import math
import random
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from torch import nn

from nasfuse import files
from nasfuse.spaces._family import get_family
from nasfuse.spaces._memory import check_training_memory
from nasfuse.spaces._schema import (
    SpaceError,
    Where,
    check_keys,
    get_int,
    get_list,
    get_number,
)
from nasfuse.spaces._site import Site

__all__ = [
    "Site",
    "SearchSpace",
    "SpaceMismatchError",
    "load_recorded_space",
    "load_space",
    "list_spaces",
    "shipped_space_dirs",
]

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


class SpaceMismatchError(SpaceError, files.CheckpointError):
    """Something recorded for one space met another one, or this one after it changed.

    Raised by :meth:`SearchSpace.check_hash` for architecture files, checkpoints and
    studies alike. It is a :class:`SpaceError` (the space does not fit) and a
    :class:`~nasfuse.files.CheckpointError` (a refused checkpoint), so that a caller
    catching either kind of refusal catches this one too.
    """


class SearchSpace:
    """A validated search space: its resolved config and its fusion sites.

    Built by :func:`load_space`. An architecture is a ``dict[str, str]`` site -> op.

    Attributes:
        name: the space's ``name`` key, e.g. ``"hrnet_lite"``.
        family: the registered family it belongs to (``"hrnet"``, ``"resnet"``, ...).
        source: the shipped name or the file path it was loaded from.
        options: the overrides applied on load, e.g. ``{"width_mult": 0.5}``.
        config: the resolved config (defaults filled in, overrides applied).
        hash: 16 hex chars of sha256 over the canonical resolved config.
        input_size: square input side at which site shapes are given.
        in_chans: default input channels.
        sites: site name -> ``Site``, in forward order.
    """

    def __init__(
        self,
        config: dict[str, Any],
        sites: list[Site],
        source: str,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.name: str = config["name"]
        self.family: str = config["family"]
        self.source = source
        self.options: dict[str, Any] = dict(options or {})
        self.input_size: int = config["input_size"]
        self.in_chans: int = config["in_chans"]
        self.sites: dict[str, Site] = {site.name: site for site in sites}
        hashed = {k: v for k, v in config.items() if k != "description"}
        canonical = json.dumps(hashed, sort_keys=True, separators=(",", ":"))
        self.hash = hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        options = f", options={self.options}" if self.options else ""
        return f"SearchSpace({self.name!r}, {len(self.sites)} sites, hash={self.hash}{options})"

    def size(self) -> int:
        """Number of architectures: the product over sites of the number of allowed ops."""
        return math.prod(len(site.ops) for site in self.sites.values())

    def check_hash(
        self, found: SearchSpace | Mapping[str, Any], what: str, where: str | Path, remedy: str
    ) -> None:
        """Refuse ``what`` unless it was recorded for this space as it is now.

        Every place that reads a space hash back (architecture files, supernet and model
        checkpoints, a search's study) checks it here, so a refusal always names both
        hashes, both sets of options and what to do about it.

        Args:
            found: the space ``what`` was made with, or the record ``what`` keeps of it:
                a mapping with ``space_hash`` and, if known, ``space_name`` or ``space``
                (a name or source) and ``space_options``, as architecture files,
                checkpoints and studies hold them.
            what: the thing refused, as the subject of a sentence (``"this architecture"``).
            where: the file or folder it was read from; the message starts with it.
            remedy: what the user can do, e.g. ``"train a supernet for this space"``.

        Raises:
            SpaceMismatchError: if the recorded hash is not this space's hash. A record
                naming no space, or this one, means this space edited or loaded with other
                options; the message says which of the two cases it is.

        Example:
            >>> space.check_hash(checkpoint, "this model", "model.pt", "retrain it")
        """
        found_hash, found_name, options = _recorded_space(found)
        if found_hash == self.hash:
            return
        if found_name is None or found_name in (self.name, self.source):
            raise SpaceMismatchError(
                f"{where}: space {self.name!r} has changed since {what} was saved: hash "
                f"{found_hash} (options {options}) != {self.hash} (options {self.options}); "
                f"the space file was edited or loaded with other options; {remedy}"
            )
        raise SpaceMismatchError(
            f"{where}: {what} is for space {found_name!r} (hash {found_hash}, options "
            f"{options}), not {self.name!r} (hash {self.hash}, options {self.options}); {remedy}"
        )

    def validate_arch(
        self, arch: Mapping[str, str], source: str = "architecture"
    ) -> dict[str, str]:
        """Check ``arch`` against the sites; return it as a dict in site order.

        Raises:
            SpaceError: naming ``source``, for a missing or unknown site or an op not
                allowed at its site.
        """
        if not isinstance(arch, Mapping):
            raise SpaceError(
                f"{source}: expected a mapping of site -> op, got {type(arch).__name__}"
            )
        missing = [name for name in self.sites if name not in arch]
        if missing:
            raise SpaceError(
                f"{source}: missing site(s) {', '.join(missing[:5])}"
                f"{' ...' if len(missing) > 5 else ''} ({len(missing)} of {len(self.sites)}) "
                f"for space {self.name!r}"
            )
        unknown = [str(name) for name in arch if name not in self.sites]
        if unknown:
            raise SpaceError(
                f"{source}: unknown site(s) {', '.join(unknown[:5])} for space {self.name!r} "
                f"(its sites look like {next(iter(self.sites))!r})"
            )
        for name, site in self.sites.items():
            if arch[name] not in site.ops:
                raise SpaceError(
                    f"{source}: op {arch[name]!r} is not allowed at site {name!r} "
                    f"({site.channels}x{site.height}x{site.width}); allowed: {', '.join(site.ops)}"
                )
        return {name: str(arch[name]) for name in self.sites}

    def uniform_arch(self, op: str) -> dict[str, str]:
        """Every site -> ``op``; ``SpaceError`` if ``op`` is not allowed at some site (the
        search's baselines put add there instead: ``nasfuse.search._baselines``)."""
        refused = [name for name, site in self.sites.items() if op not in site.ops]
        if refused:
            raise SpaceError(
                f"op {op!r} is not allowed at {len(refused)} site(s) of space {self.name!r}, "
                f"e.g. {refused[0]!r} (allowed there: {', '.join(self.sites[refused[0]].ops)})"
            )
        return {name: op for name in self.sites}

    def random_arch(
        self,
        rng: random.Random | int | None = None,
        ops: Collection[str] | None = None,
        fixed: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        """An architecture drawn uniformly: each site's op independently, one draw a site.

        Every random architecture in nasfuse comes from here (the supernet's and the
        training sampler's paths, the latency table's samples, validation's pool), so one
        seed gives one architecture whichever stage asks.

        Args:
            rng: a ``random.Random``, a seed, or None for the ``random`` module's global
                generator (seeded by ``nasfuse.runtime.seed_everything``).
            ops: draw each site's op from its allowed ops within ``ops``; a site allowing
                none of them draws from all its allowed ops. None: no limit.
            fixed: sites held at one op (not checked here). They still take their draw,
                so that a training sampler's sequence, saved in checkpoints, stays the one
                it has always been.

        Example:
            >>> space.random_arch(0) == space.random_arch(random.Random(0))
            True
        """
        if isinstance(rng, int) and not isinstance(rng, bool):
            rng = random.Random(rng)
        generator = rng if rng is not None else random
        fixed = fixed or {}
        arch = {}
        for name, site in self.sites.items():
            if name in fixed:
                choices: tuple[str, ...] = (fixed[name],)
            elif ops is None:
                choices = site.ops
            else:
                choices = tuple(op for op in site.ops if op in ops) or site.ops
            arch[name] = generator.choice(choices)
        return arch

    def check_training_memory(self, batch_size: int, every_op: bool = False) -> None:
        """Refuse this space if training it at ``batch_size`` cannot fit in this machine's RAM.

        A floor estimate, made without allocating (see ``nasfuse/spaces/_memory.py``);
        :func:`load_space` checks batch size 1, training runs their own batch size.
        ``every_op``: count every candidate op's weights (a supernet), not add's only.

        Raises:
            SpaceError: naming the space, the estimate and the heaviest site.
        """
        label = f"{self.source} (with overrides {self.options})" if self.options else self.source
        check_training_memory(self, batch_size, label, every_op)

    def build(
        self,
        make_fusion: Callable[[Site], nn.Module],
        num_classes: int,
        in_chans: int,
    ) -> nn.Module:
        """The network of this space with ``make_fusion(site)`` as the fusion module of each site.

        Returns a ``FusionNet``: ``forward(x)`` maps ``(B, in_chans, H, W)`` to
        ``(B, num_classes)``; ``site_paths`` says where each site's module sits.
        """
        return get_family(self.family).network(self, make_fusion, num_classes, in_chans)


def _recorded_space(found: SearchSpace | Mapping[str, Any]) -> tuple[str, str | None, Any]:
    """``(hash, name or source or None, options or "not recorded")`` of a space or a record."""
    if isinstance(found, SearchSpace):
        return found.hash, found.name, found.options
    name = found.get("space_name", found.get("space"))
    options = dict(found.get("space_options") or {}) if "space_options" in found else None
    return (
        str(found.get("space_hash")),
        None if name is None else str(name),
        "not recorded" if options is None else options,
    )


def shipped_space_dirs() -> list[Path]:
    """Where shipped spaces are looked up: in the wheel, then the repository's top level."""
    package = Path(__file__).resolve().parent.parent
    return [package / "search_spaces", package.parent / "search_spaces"]


def list_spaces() -> list[str]:
    """Names of the shipped spaces (``hrnet_lite``, ``resnet18``, ``resnet20``)."""
    names: set[str] = set()
    for folder in shipped_space_dirs():
        if folder.is_dir():
            names.update(path.stem for path in folder.glob("*.yaml"))
    return sorted(names)


def _find_space_file(name_or_path: str | Path) -> tuple[Path, str]:
    """The file to read and the ``source`` to record (shipped name or resolved path)."""
    text = str(name_or_path)
    path = Path(text)
    if path.is_file():
        return path, str(path.resolve())
    if (
        not isinstance(name_or_path, Path)
        and "/" not in text
        and not text.endswith((".yaml", ".yml"))
    ):
        for folder in shipped_space_dirs():
            candidate = folder / f"{text}.yaml"
            if candidate.is_file():
                return candidate, text
        raise SpaceError(
            f"unknown search space {text!r}: not a shipped space ({', '.join(list_spaces()) or 'none found'}) "
            "and not a file"
        )
    raise FileNotFoundError(f"{text}: search space file not found")


def read_yaml_mapping(path: Path, what: str = "a mapping") -> dict[str, Any]:
    """Parse ``path`` as YAML within nasfuse's limits; ``SpaceError`` naming the file."""
    return files.read_yaml_mapping(path, what, SpaceError)


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


def load_space(name_or_path: str | Path, overrides: Mapping[str, Any] | None = None) -> SearchSpace:
    """Load and validate a search space.

    Args:
        name_or_path: a shipped name (``"hrnet_lite"``, see :func:`list_spaces`) or a YAML
            file.
        overrides: ``{"width_mult": 0.5, "stages.0.modules": 1}``: dotted keys into the
            file's mapping, validated like the file; they change the space's hash.

    Raises:
        SpaceError: naming the file and the key, for unknown keys or ops, channel lists
            that do not match the branch count, non-positive sizes, invalid YAML (with the
            line), an unknown shipped name, a width or input size whose training could
            not fit in this machine's memory even at batch size 1.
        FileNotFoundError: for a path that does not exist.

    Example:
        >>> space = load_space("hrnet_lite", {"width_mult": 0.5})
        >>> site = space.sites["stage3.module1.fuse.branch2"]  # Site(channels=80, ...)
    """
    path, source = _find_space_file(name_or_path)
    raw = read_yaml_mapping(path, "a search-space mapping")
    options = dict(overrides or {})
    label = str(path)
    if options:
        label = f"{path} (with overrides {options})"
        raw = apply_overrides(raw, options, label)
        narrowed = "ops" in options and "restrict" not in options
        if narrowed and isinstance(raw.get("restrict"), dict) and isinstance(raw["ops"], list):
            # Narrowing the op list drops the file's rules of the ops it removed; a rule
            # for an unknown op written in the file itself is still refused.
            raw["restrict"] = {op: rule for op, rule in raw["restrict"].items() if op in raw["ops"]}
    config, sites = resolve_space(raw, Where(label))
    space = SearchSpace(config, sites, source, options)
    check_training_memory(space, 1, label)
    return space


def load_recorded_space(
    record: Mapping[str, Any], what: str, where: str | Path, remedy: str
) -> SearchSpace:
    """The space that ``record`` was saved for, refused if it is not the same any more.

    Args:
        record: what an architecture file or checkpoint keeps of its space: ``space`` (a
            shipped name or a file), ``space_options`` and ``space_hash``.
        what, where, remedy: as for :meth:`SearchSpace.check_hash`.

    Raises:
        SpaceMismatchError: naming ``where``, if the space cannot be loaded as recorded
            (a file gone, options no longer valid) or its hash is not the recorded one.
    """
    source = str(record["space"])
    try:
        space = load_space(source, record.get("space_options") or {})
    except (ValueError, FileNotFoundError) as exc:
        raise SpaceMismatchError(
            f"{where}: cannot load the space {source!r} {what} was saved for: {exc}; {remedy}"
        ) from exc
    space.check_hash(record, what, where, remedy)
    return space
