"""Choosing the architectures to validate: spread over the latency range, plus references.

A uniformly random architecture mixes every op, so random samples crowd the middle of the
latency range. :func:`pick_archs_by_latency` draws a broader pool (each pool member uses a
random subset of the ops, from a single op up to all of them), predicts every member's
latency, and picks the members nearest to evenly spaced latency targets from the pool's
fastest to its slowest; the uniform references (all-add, all-aff, ... every op the space
offers, each with add where it is not allowed) come on top.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PickedArch", "mixed_random_arch", "pick_archs_by_latency", "uniform_archs"]


@dataclass(frozen=True)
class PickedArch:
    """One architecture chosen for validation.

    Attributes:
        label: ``all-<op>`` for a uniform reference, ``spread-<i>`` (fastest first) otherwise.
        arch: site -> op.
        arch_hash: :func:`nasfuse.arch.arch_hash` of ``arch``.
        latency_ms: predicted latency.
    """

    label: str
    arch: dict[str, str] = field(repr=False)
    arch_hash: str
    latency_ms: float


def mixed_random_arch(space: Any, rng: random.Random) -> dict[str, str]:
    """A random architecture that uses a random subset of the space's ops.

    A non-empty subset of all the ops the space offers is drawn (its size uniform), then
    each site takes an op uniformly from its allowed ops within the subset, or from all its
    allowed ops when the subset has none of them.
    """
    all_ops = sorted({op for site in space.sites.values() for op in site.ops})
    subset = set(rng.sample(all_ops, rng.randint(1, len(all_ops))))
    return space.random_arch(rng, ops=subset)


def uniform_archs(space: Any, ops: Sequence[str] | None = None) -> list[tuple[str, dict[str, str]]]:
    """``(label, arch)`` of each op's uniform architecture, as every search starts from.

    The architectures are the search's uniform baselines
    (:func:`nasfuse.search._baselines.uniform_baselines`): the op wherever it is allowed,
    add elsewhere; the label is ``all-<op>``, or ``all-<op>+add`` where add fills in.

    Args:
        space: the :class:`~nasfuse.spaces.SearchSpace`.
        ops: which ops; None: every op the space offers, in its order.

    Raises:
        ValueError: an op the space does not offer, or one allowed nowhere.
    """
    from nasfuse.search._baselines import FALLBACK_OP, uniform_baselines

    offered = list(space.config["ops"])
    chosen = offered if ops is None else list(dict.fromkeys(ops))
    sites = {name: list(site.ops) for name, site in space.sites.items()}
    baselines = {b.name: b for b in uniform_baselines(sites)}
    result = []
    for op in chosen:
        if op not in offered:
            raise ValueError(
                f"cannot include all-{op}: space {space.name!r} offers {', '.join(offered)}"
            )
        baseline = baselines.get(f"all-{op}")
        if baseline is None:
            raise ValueError(f"cannot include all-{op}: no site of {space.name!r} allows it")
        label = f"{baseline.name}+{FALLBACK_OP}" if baseline.note else baseline.name
        result.append((label, baseline.arch))
    return result


def pick_archs_by_latency(
    space: Any,
    count: int,
    latency_ms: Callable[[Mapping[str, str]], float],
    include_ops: Sequence[str] | None = None,
    pool_size: int | None = None,
    seed: int = 0,
) -> list[PickedArch]:
    """``count`` distinct architectures spread over the latency range, plus uniform ones.

    Args:
        space: the :class:`~nasfuse.spaces.SearchSpace`.
        count: how many spread architectures (besides the uniform ones).
        latency_ms: predicted latency of an architecture (e.g. ``LatencyTable.predict``).
        include_ops: for each op, its uniform architecture (:func:`uniform_archs`: the op
            wherever it is allowed, add elsewhere) is added first in the list; None: every
            op the space offers.
        pool_size: random architectures drawn to pick from; default ``max(200, 20 * count)``.
        seed: seeds the pool.

    Returns:
        The uniform references, then the spread picks from fastest to slowest; no
        architecture twice.

    Raises:
        ValueError: an op of ``include_ops`` is not in the space, or the pool holds fewer
            than ``count`` distinct architectures besides the references.
    """
    from nasfuse.arch import arch_hash

    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    picked: list[PickedArch] = []
    taken: set[str] = set()
    for label, arch in uniform_archs(space, include_ops):
        digest = arch_hash(arch)
        if digest in taken:
            continue
        picked.append(PickedArch(label, arch, digest, float(latency_ms(arch))))
        taken.add(digest)
    if count == 0:
        return picked

    rng = random.Random(seed)
    pool: dict[str, tuple[float, dict[str, str]]] = {}
    for _ in range(pool_size if pool_size is not None else max(200, 20 * count)):
        arch = mixed_random_arch(space, rng)
        digest = arch_hash(arch)
        if digest not in taken and digest not in pool:
            pool[digest] = (float(latency_ms(arch)), arch)
    if len(pool) < count:
        raise ValueError(
            f"only {len(pool)} distinct architectures to pick {count} from in space "
            f"{space.name!r}; ask for fewer (--archs) or a larger pool"
        )
    # Fastest first; equal latencies in hash order, so the picks do not depend on dict order.
    ordered = sorted(pool.items(), key=lambda item: (item[1][0], item[0]))
    fastest, slowest = ordered[0][1][0], ordered[-1][1][0]
    available = list(range(len(ordered)))
    for index in range(count):
        target = (
            (fastest + slowest) / 2
            if count == 1
            else fastest + (slowest - fastest) * index / (count - 1)
        )
        position = min(available, key=lambda i: (abs(ordered[i][1][0] - target), i))
        available.remove(position)
        digest, (latency, arch) = ordered[position]
        picked.append(PickedArch(f"spread-{index:02d}", arch, digest, latency))
    return picked
