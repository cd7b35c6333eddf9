"""The single-path supernet, standalone models of an architecture, and their cost."""

from __future__ import annotations

from nasfuse.supernet._supernet import SiteChoice, Supernet, arch_cost, build_model

__all__ = ["SiteChoice", "Supernet", "arch_cost", "build_model"]
