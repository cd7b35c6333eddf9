"""nasfuse: neural architecture search over feature-fusion operators."""

from __future__ import annotations

from nasfuse.ops import create_op, list_ops

__version__ = "0.1.0"

__all__ = ["__version__", "create_op", "list_ops"]

from nasfuse import timm_models  # noqa: E402, F401  (registers nasfuse_<space> with timm)
