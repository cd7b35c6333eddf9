"""Random architectures for calibrating and validating the latency table."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["arch_signature", "random_arch", "sample_archs"]


def random_arch(space: Any, rng: random.Random) -> dict[str, str]:
    """An architecture drawn uniformly: each site's op picked uniformly from its allowed ops."""
    return {name: rng.choice(list(site.ops)) for name, site in space.sites.items()}


def arch_signature(arch: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """What makes two architectures the same, whatever the order of their sites."""
    return tuple(sorted(arch.items()))


def sample_archs(
    space: Any, samples: int, rng: random.Random, exclude: Sequence[Mapping[str, str]] = ()
) -> list[dict[str, str]]:
    """``samples`` distinct random architectures of ``space``, none of ``exclude``."""
    archs: list[dict[str, str]] = []
    seen = {arch_signature(arch) for arch in exclude}
    attempts = 0
    while len(archs) < samples:
        arch = random_arch(space, rng)
        attempts += 1
        if arch_signature(arch) in seen:
            if attempts > 100 * samples:
                raise ValueError(
                    f"space {space.name!r} has too few architectures for {samples} fresh samples"
                )
            continue
        seen.add(arch_signature(arch))
        archs.append(arch)
    return archs
