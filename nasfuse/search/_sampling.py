"""What decides which architectures a search tries: the sampler and the constraints.

The Optuna sampler proposes architectures (:func:`make_sampler`); a resumed or second
driver seeds its own apart (:func:`seed_apart`) so it does not replay the suggestions
already in the study, and enqueued baselines join NSGA-II's first generation
(:func:`place_in_generation`). :class:`Constraints` are upper bounds on predicted latency
and parameters that screen each proposal in the driver, so an architecture that breaks one
is told to Optuna as infeasible and never costs an evaluation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial

__all__ = ["Constraints", "make_sampler", "seed_apart", "place_in_generation"]


@dataclass(frozen=True)
class Constraints:
    """Upper bounds checked before evaluation; None means unconstrained."""

    max_latency_ms: float | None = None
    max_params: int | None = None

    @property
    def active(self) -> bool:
        return self.max_latency_ms is not None or self.max_params is not None

    def violations(self, latency_ms: float, params: int) -> dict[str, float]:
        """Optuna constraint values (<= 0 feasible), one per active bound, relative to it."""
        values: dict[str, float] = {}
        if self.max_latency_ms is not None:
            values["latency_ms"] = (latency_ms - self.max_latency_ms) / self.max_latency_ms
        if self.max_params is not None:
            values["params"] = (params - self.max_params) / self.max_params
        return values


def make_sampler(name: str, seed: int, population_size: int) -> optuna.samplers.BaseSampler:
    """``nsga2``, ``tpe`` (constant liar, for trials in flight) or ``random``, seeded."""
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=population_size, seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True, multivariate=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"unknown sampler {name!r}; expected nsga2, tpe or random")


def seed_apart(seed: int, trials_before: int, driver_id: str | None) -> int:
    """The seed for a driver's sampler: ``seed`` itself for a fresh study searched by one
    driver; otherwise one derived from it, the trials the study held and ``driver_id`` (the
    driver's, given when other drivers are live), so a resumed or second driver does not
    replay the suggestions already in the study."""
    if trials_before == 0 and driver_id is None:
        return int(seed)
    parts = [str(seed), str(trials_before)]
    if driver_id is not None:
        parts.append(driver_id)
    digest = hashlib.sha256(":".join(parts).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def place_in_generation(study: optuna.Study, trials: Sequence[FrozenTrial], number: int) -> None:
    """Give the enqueued trial ``number`` (one of ``trials``) its NSGA-II generation, as a
    sampled one gets it.

    A genetic sampler assigns the generation while sampling; a trial whose parameters
    are all fixed (an enqueued baseline) is never sampled, so it would belong to no
    generation and never be a parent. Asking the sampler here makes the baselines
    NSGA-II's first generation.
    """
    sampler = study.sampler
    if isinstance(sampler, optuna.samplers.BaseGASampler):
        frozen = next(t for t in trials if t.number == number)
        sampler.get_trial_generation(study, frozen)
