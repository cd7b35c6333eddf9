"""The registry of space families: what a ``family:`` key in a space file names.

A family turns a space file's own keys into fusion sites and a network. Each family module
registers itself on import, and ``nasfuse/spaces/__init__.py`` imports the shipped ones
(``hrnet``, ``resnet``), so that importing :mod:`nasfuse.spaces` is all it takes::

    register_family(Family("resnet", KEYS, resolve, site_shapes, ResNet))

A name registered twice is refused, naming where it was registered first: two families
answering to one name would make a space file mean whichever module was imported last.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from nasfuse.spaces._schema import SpaceError, Where
from nasfuse.spaces._site import Site, SiteShape

if TYPE_CHECKING:
    from torch import nn

    from nasfuse.spaces._net import FusionNet
    from nasfuse.spaces._space import SearchSpace

__all__ = [
    "Family",
    "SpaceFamily",
    "budget_space_options",
    "get_family",
    "list_families",
    "register_family",
    "registered_at",
    "unregister_family",
]


class SpaceFamily(Protocol):
    """What a family provides; :class:`Family` holds the parts of one.

    ``name`` is the value of ``family:`` in a space file and ``keys`` the family's own keys
    there (the common ones are the space's). ``resolve(raw, where)`` validates those keys
    and fills defaults, raising through ``where.error`` so that messages name the file and
    the key. ``layout(config)`` gives every site of a resolved config as a
    :data:`SiteShape`, in forward order. ``network(space, make_fusion, num_classes,
    in_chans)`` builds the :class:`~nasfuse.spaces.FusionNet`, with ``make_fusion(site)``
    as the module at each site; it must build exactly the layout's sites, so a family
    derives both from one layout of its own.

    A family may also provide ``budget_options(budget, config)``: the space options a
    search budget (``quick``, ``default``, ``full``) sets on the family's spaces, for what
    the budget's generic knobs (width, input size) cannot say, such as HRNet's depth.
    Without it a budget sets nothing family-specific (:func:`budget_space_options`).
    """

    @property
    def name(self) -> str: ...

    @property
    def keys(self) -> tuple[str, ...]: ...

    def resolve(self, raw: Mapping[str, Any], where: Where) -> dict[str, Any]: ...

    def layout(self, config: Mapping[str, Any]) -> list[SiteShape]: ...

    def network(
        self,
        space: SearchSpace,
        make_fusion: Callable[[Site], nn.Module],
        num_classes: int,
        in_chans: int,
    ) -> FusionNet: ...


@dataclass(frozen=True)
class Family:
    """A :class:`SpaceFamily` made of its parts, as the shipped families register."""

    name: str
    keys: tuple[str, ...]
    resolve: Callable[[Mapping[str, Any], Where], dict[str, Any]]
    layout: Callable[[Mapping[str, Any]], list[SiteShape]]
    network: Callable[..., FusionNet]
    budget_options: Callable[[str, Mapping[str, Any]], dict[str, Any]] | None = None


_FAMILIES: dict[str, SpaceFamily] = {}
_REGISTERED_AT: dict[str, str] = {}


def register_family(family: SpaceFamily) -> SpaceFamily:
    """Add ``family`` to the registry under ``family.name``; returns it.

    Raises:
        ValueError: if the name is taken, naming the file and line that took it.
    """
    caller = inspect.stack(context=0)[1]
    here = f"{caller.filename}:{caller.lineno}"
    if family.name in _FAMILIES:
        raise ValueError(
            f"space family {family.name!r} is already registered (at {_REGISTERED_AT[family.name]}); "
            f"refusing the second registration at {here}: give the family another name"
        )
    _FAMILIES[family.name] = family
    _REGISTERED_AT[family.name] = here
    return family


def get_family(name: Any, where: Where | None = None) -> SpaceFamily:
    """The family registered as ``name``.

    Raises:
        SpaceError: naming the ``family`` key of ``where`` (when given) and the known
            families.
    """
    family = _FAMILIES.get(name) if isinstance(name, str) else None
    if family is None:
        message = f"expected one of {', '.join(_FAMILIES)}, got {name!r}"
        raise where.error("family", message) if where else SpaceError(f"family: {message}")
    return family


def list_families() -> list[str]:
    """The registered family names, in registration order."""
    return list(_FAMILIES)


def registered_at(name: str) -> str:
    """``file:line`` where family ``name`` was registered."""
    return _REGISTERED_AT[name]


def unregister_family(name: str) -> None:
    """Remove family ``name`` (for tests that register one of their own)."""
    _FAMILIES.pop(name, None)
    _REGISTERED_AT.pop(name, None)


def budget_space_options(space: SearchSpace, budget: str) -> dict[str, Any]:
    """The space options search budget ``budget`` sets on ``space``, less those the space
    was loaded with (a user's ``--set`` wins over a budget): what its family's
    ``budget_options`` gives, or nothing for a family without one."""
    preset = getattr(get_family(space.family), "budget_options", None)
    if preset is None:
        return {}
    options = preset(budget, space.config)
    return {key: value for key, value in options.items() if key not in space.options}
