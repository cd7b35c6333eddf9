"""The single-path supernet, standalone models of an architecture, and their cost."""

from __future__ import annotations

from nasfuse.supernet._supernet import OP_INITS, SiteChoice, Supernet, arch_cost, build_model

__all__ = ["OP_INITS", "SiteChoice", "Supernet", "arch_cost", "build_model"]
