"""Fusion operators, one family per module, behind one registry.

Every op is built as ``create_op(name, channels, num_inputs, **options)`` and called as
``op(xs)`` on K aligned ``(B, C, H, W)`` tensors, ``xs[0]`` being the main path. What each
op computes is described in docs/ops.md.
"""

from __future__ import annotations

# Importing a module registers its ops; the order here is the order of list_ops().
# isort: off
from nasfuse.ops import basic  # noqa: F401  add, concat
from nasfuse.ops import dwff  # noqa: F401
from nasfuse.ops import aff  # noqa: F401  aff, iaff
from nasfuse.ops import cmgm  # noqa: F401
from nasfuse.ops import dynconv  # noqa: F401
from nasfuse.ops import pmfs  # noqa: F401

# isort: on
from nasfuse.ops._base import FusionOp
from nasfuse.ops._registry import create_op, get_op_class, list_ops, register_op

__all__ = ["FusionOp", "create_op", "get_op_class", "list_ops", "register_op"]
