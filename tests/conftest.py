"""Shared test setup.

Two cores run the suite (pytest-xdist may run two workers): one torch thread per worker
avoids oversubscribing them.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Callable
from typing import Any

import pytest
import torch

torch.set_num_threads(1)
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


@pytest.fixture
def fixtures_dir() -> str:
    """Directory of small files the tests share (tiny search spaces and the like)."""
    return FIXTURES


def _other_value(annotation: object, value: object) -> object:
    """A valid value of ``annotation`` that differs from ``value``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return next(choice for choice in args if choice != value)
    if args and type(None) in args:  # X | None
        if value is None:
            return _other_value(next(a for a in args if a is not type(None)), None)
        return None
    if annotation is bool:
        return not value
    if annotation is int:
        return (value or 0) + 1
    if annotation is float:
        return (value or 0.0) * 2 + 1.0
    if annotation is str:
        return f"{value or ''}-changed"
    if origin is dict:
        return {**(value or {}), "changed": 1}
    if origin is list:
        return [*(value or []), "changed"]
    raise AssertionError(f"no other value for {annotation!r}")


def _with_one_field_changed(cfg: Any, name: str) -> Any:
    """A copy of dataclass ``cfg`` in which field ``name`` alone holds another valid value."""
    annotation = typing.get_type_hints(type(cfg))[name]
    return dataclasses.replace(cfg, **{name: _other_value(annotation, getattr(cfg, name))})


@pytest.fixture
def one_field_changed() -> Callable[[Any, str], Any]:
    """``one_field_changed(cfg, name)``: ``cfg`` with field ``name`` changed, nothing else
    (to check, field by field, what a resume or a cache key makes of a change)."""
    return _with_one_field_changed
