"""Which path of the supernet trains at each step: uniform (SPOS) or strictly fair sampling.

Both samplers draw from their own :class:`random.Random`, seeded from the run's seed, so
every DDP rank draws the same architecture at every step without communicating, and
``state_dict()`` / ``load_state_dict()`` make a resumed run draw exactly what an
uninterrupted one would have.

Example:
    >>> sampler = create_sampler("fair", space, seed=0)
    >>> arch = sampler.next_arch()          # {site name: op name}, counted in sampler.counts
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nasfuse.spaces import SearchSpace

__all__ = ["ArchSampler", "UniformSampler", "FairSampler", "SAMPLERS", "create_sampler"]


def _rng_state_to_lists(rng: random.Random) -> list[Any]:
    """``rng.getstate()`` as plain lists (checkpoint-safe under ``weights_only=True``)."""
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def _rng_state_from_lists(rng: random.Random, state: list[Any]) -> None:
    version, internal, gauss = state
    rng.setstate((int(version), tuple(int(v) for v in internal), gauss))


class ArchSampler:
    """Base of the architecture samplers: a seeded RNG, per-site op counts, a state dict.

    Args:
        space: the search space; each site's allowed ops are the choices there.
        seed: seed of the sampler's own RNG.
        fixed: sites held at one op (a few-shot sub-supernet's split); the other sites
            are sampled as usual.

    Attributes:
        counts: ``counts[site][op]``: how many steps had ``op`` active at ``site``.

    Raises:
        ValueError: a fixed site the space does not have, or an op not allowed there.
    """

    name = "base"

    def __init__(
        self, space: SearchSpace, seed: int = 0, fixed: Mapping[str, str] | None = None
    ) -> None:
        fixed = dict(fixed or {})
        for site, op in fixed.items():
            if site not in space.sites:
                raise ValueError(f"fixed site {site!r} is not a site of space {space.name!r}")
            if op not in space.sites[site].ops:
                raise ValueError(
                    f"fixed site {site!r}: op {op!r} is not allowed there "
                    f"(allowed: {', '.join(space.sites[site].ops)})"
                )
        self.space = space
        self.fixed = fixed
        self.site_ops: dict[str, tuple[str, ...]] = {
            name: (fixed[name],) if name in fixed else tuple(site.ops)
            for name, site in space.sites.items()
        }
        self.rng = random.Random(seed)
        self.counts: dict[str, dict[str, int]] = {
            name: dict.fromkeys(ops, 0) for name, ops in self.site_ops.items()
        }

    def next_arch(self) -> dict[str, str]:
        """The architecture of the next training step (and count it)."""
        arch = self._draw()
        for site, op in arch.items():
            self.counts[site][op] += 1
        return arch

    def _draw(self) -> dict[str, str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the same sequence of draws."""
        return {
            "sampler": self.name,
            "rng": _rng_state_to_lists(self.rng),
            "counts": {site: dict(ops) for site, ops in self.counts.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state_dict`; refuses another sampler or another space's sites."""
        if state.get("sampler") != self.name:
            raise ValueError(
                f"sampler state is of the {state.get('sampler')!r} sampler, not {self.name!r}"
            )
        if set(state["counts"]) != set(self.site_ops):
            raise ValueError("sampler state belongs to a search space with other sites")
        _rng_state_from_lists(self.rng, state["rng"])
        self.counts = {site: dict(ops) for site, ops in state["counts"].items()}


class UniformSampler(ArchSampler):
    """Single-path one-shot (SPOS) sampling: every site picks one of its ops uniformly."""

    name = "uniform"

    def _draw(self) -> dict[str, str]:
        return self.space.random_arch(self.rng, fixed=self.fixed)


class FairSampler(ArchSampler):
    """Strictly fair sampling, per site (FairNAS's rule, for sites with different op counts).

    Each site keeps a queue: a random permutation of its ``n`` allowed ops. Every step takes
    the next op from each site's queue; an empty queue is refilled with a fresh permutation.
    So a *block* of a site is ``n`` consecutive steps starting at a multiple of ``n`` (counted
    from the first step of the run), and within every block each allowed op is active
    exactly once: after any number of steps the counts at a site differ by at most one.
    Sites with different ``n`` have blocks of different lengths and are drawn independently
    of each other (their permutations come from the one sampler RNG, site by site).
    """

    name = "fair"

    def __init__(
        self, space: SearchSpace, seed: int = 0, fixed: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(space, seed, fixed)
        self.queues: dict[str, list[str]] = {site: [] for site in self.site_ops}

    def _draw(self) -> dict[str, str]:
        arch = {}
        for site, ops in self.site_ops.items():
            queue = self.queues[site]
            if not queue:
                queue.extend(ops)
                self.rng.shuffle(queue)
            arch[site] = queue.pop()
        return arch

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["queues"] = {site: list(queue) for site, queue in self.queues.items()}
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.queues = {site: list(queue) for site, queue in state["queues"].items()}


SAMPLERS: dict[str, type[ArchSampler]] = {"uniform": UniformSampler, "fair": FairSampler}


def create_sampler(
    name: str, space: SearchSpace, seed: int = 0, fixed: Mapping[str, str] | None = None
) -> ArchSampler:
    """``"uniform"`` or ``"fair"`` (with ``fixed`` sites held at one op); ``ValueError``
    naming the choices otherwise."""
    try:
        cls = SAMPLERS[name]
    except KeyError:
        raise ValueError(
            f"unknown sampler {name!r}; choose one of: {', '.join(SAMPLERS)}"
        ) from None
    return cls(space, seed, fixed)
