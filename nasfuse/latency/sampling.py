"""Random architectures for calibrating and validating the latency table."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from nasfuse.arch import arch_hash

__all__ = ["random_arch", "sample_archs"]


def random_arch(space: Any, rng: random.Random) -> dict[str, str]:
    """An architecture drawn uniformly: :meth:`nasfuse.spaces.SearchSpace.random_arch`."""
    return space.random_arch(rng)


def sample_archs(
    space: Any, samples: int, rng: random.Random, exclude: Sequence[Mapping[str, str]] = ()
) -> list[dict[str, str]]:
    """``samples`` distinct random architectures of ``space``, none of ``exclude``."""
    archs: list[dict[str, str]] = []
    seen = {arch_hash(arch) for arch in exclude}
    attempts = 0
    while len(archs) < samples:
        arch = space.random_arch(rng)
        attempts += 1
        if arch_hash(arch) in seen:
            if attempts > 100 * samples:
                raise ValueError(
                    f"space {space.name!r} has too few architectures for {samples} fresh samples"
                )
            continue
        seen.add(arch_hash(arch))
        archs.append(arch)
    return archs
