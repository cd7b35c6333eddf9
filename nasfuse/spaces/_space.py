"""The ``SearchSpace`` class: a validated space's config and sites, and what it checks.

A space is loaded from its YAML file by :func:`nasfuse.spaces.load_space`
(:mod:`nasfuse.spaces._loading`), which validates it into a resolved config and its
fusion sites (:mod:`nasfuse.spaces._resolve`); this module holds what a loaded space is
and does: its hash, its architectures and its refusals of what was recorded for another.
"""

from __future__ import annotations

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
from nasfuse.spaces._schema import SpaceError
from nasfuse.spaces._site import Site

__all__ = ["Site", "SearchSpace", "SpaceMismatchError", "config_hash"]


def config_hash(config: Mapping[str, Any]) -> str:
    """16 hex chars of sha256 over the canonical resolved config, less its description
    (rewording a space's description does not make its architectures stale)."""
    hashed = {k: v for k, v in config.items() if k != "description"}
    canonical = json.dumps(hashed, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


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
        self.hash = config_hash(config)

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
        :func:`~nasfuse.spaces.load_space` checks batch size 1, training runs their own batch size.
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
