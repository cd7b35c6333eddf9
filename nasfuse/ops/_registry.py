"""The op registry: one decorator to register, one factory to create."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

__all__ = ["register_op", "create_op", "list_ops", "get_op_class"]

_OPS: dict[str, type[nn.Module]] = {}
_WHERE: dict[str, str] = {}

M = TypeVar("M", bound=type[nn.Module])


def register_op(name: str) -> Callable[[M], M]:
    """Class decorator that registers a fusion op under ``name``.

    Raises:
        ValueError: if ``name`` is taken, saying where the first one was registered.
    """

    def decorator(cls: M) -> M:
        where = f"{cls.__module__}.{cls.__qualname__}"
        if name in _OPS and _WHERE[name] != where:
            raise ValueError(
                f"fusion op {name!r} is already registered by {_WHERE[name]}; cannot register {where}"
            )
        _OPS[name] = cls
        _WHERE[name] = where
        cls.op_name = name
        return cls

    return decorator


def list_ops() -> list[str]:
    """Names of every registered op, in registration order."""
    return list(_OPS)


def get_op_class(name: str) -> type[nn.Module]:
    """The class registered as ``name``; ``ValueError`` listing the known ops otherwise."""
    try:
        return _OPS[name]
    except KeyError:
        raise ValueError(f"unknown fusion op {name!r}; known ops: {', '.join(_OPS)}") from None


def create_op(name: str, channels: int, num_inputs: int, **options: Any) -> nn.Module:
    """Create the fusion op ``name`` for ``num_inputs`` inputs of ``channels`` channels.

    Example:
        >>> op = create_op("aff", channels=64, num_inputs=2)
        >>> out = op([x, y])  # x, y: (B, 64, H, W)
    """
    cls = get_op_class(name)
    accepted = inspect.signature(cls.__init__).parameters
    unknown = [k for k in options if k not in accepted]
    if unknown and not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        raise ValueError(f"fusion op {name!r} has no option(s) {', '.join(unknown)}")
    return cls(channels, num_inputs, **options)
