"""How well the supernet ranks architectures: rank correlations and top-k precision.

Two scores per architecture are compared: the supernet's (accuracy with inherited weights
after BatchNorm recalibration) and the stand-alone one (accuracy after training from
scratch). Kendall's τ and Spearman's ρ come from :mod:`scipy.stats` (τ-b, which accounts
for ties); top-k precision is defined in :func:`top_k_precision`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "RankingStats",
    "default_top_k",
    "ranking_stats",
    "top_k_indices",
    "top_k_precision",
]


@dataclass(frozen=True)
class RankingStats:
    """Agreement between two scorings of the same architectures.

    Attributes:
        count: number of architectures.
        kendall_tau: Kendall's τ-b in [-1, 1]; NaN if either scoring is constant.
        kendall_p: its two-sided p-value (NaN likewise).
        spearman_rho: Spearman's ρ in [-1, 1]; NaN if either scoring is constant.
        spearman_p: its two-sided p-value.
        top_k: the k of the top-k precision.
        top_k_precision: see :func:`top_k_precision`, in [0, 1].
        kendall_tau_ci, spearman_rho_ci, top_k_precision_ci: percentile bootstrap
            intervals ``(low, high)`` over architectures (resampled with replacement), or
            None when no bootstrap was asked for.
        ci_level: the intervals' confidence level (0.95 by default).
    """

    count: int
    kendall_tau: float
    kendall_p: float
    spearman_rho: float
    spearman_p: float
    top_k: int
    top_k_precision: float
    kendall_tau_ci: tuple[float, float] | None = None
    spearman_rho_ci: tuple[float, float] | None = None
    top_k_precision_ci: tuple[float, float] | None = None
    ci_level: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data; NaN becomes None so the result is valid JSON."""

        def plain(value: Any) -> Any:
            if isinstance(value, float) and math.isnan(value):
                return None
            if isinstance(value, tuple):
                return [plain(v) for v in value]
            return value

        return {key: plain(value) for key, value in asdict(self).items()}


def default_top_k(count: int) -> int:
    """``max(1, count // 4)``: the top quarter of the architectures."""
    return max(1, count // 4)


def top_k_indices(scores: Sequence[float], k: int) -> list[int]:
    """Indices of the ``k`` highest scores, highest first.

    Ties are broken by position (the earlier index ranks higher), so the result is
    deterministic even when several scores tie at the k-th place.
    """
    if not 1 <= k <= len(scores):
        raise ValueError(f"k must be between 1 and {len(scores)}, got {k}")
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k]


def top_k_precision(first: Sequence[float], second: Sequence[float], k: int) -> float:
    """Share of the top ``k`` by ``first`` that are also in the top ``k`` by ``second``.

    ``|top_k(first) ∩ top_k(second)| / k``, with :func:`top_k_indices` (ties by position).
    With ``first`` the supernet scores and ``second`` the stand-alone accuracies, it says
    how many of the architectures a one-shot search would keep are truly among the best.

    Example:
        >>> top_k_precision([0.9, 0.8, 0.7, 0.6], [0.1, 0.9, 0.8, 0.7], k=2)
        0.5
    """
    if len(first) != len(second):
        raise ValueError(f"the scorings differ in length: {len(first)} and {len(second)}")
    common = set(top_k_indices(first, k)) & set(top_k_indices(second, k))
    return len(common) / k


def _correlations(first: Any, second: Any) -> tuple[Any, Any]:
    """scipy's Kendall τ-b and Spearman ρ results (NaN for a constant scoring, silently)."""
    from scipy import stats

    with warnings.catch_warnings():
        # A constant scoring gives NaN (reported as such); scipy also warns about it.
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        return stats.kendalltau(first, second), stats.spearmanr(first, second)


def _bootstrap_intervals(
    first: Sequence[float], second: Sequence[float], k: int, resamples: int, seed: int, level: float
) -> dict[str, tuple[float, float]]:
    """Percentile intervals of τ, ρ and top-k precision over resampled architectures.

    Resamples in which a scoring is constant (τ undefined) are left out of τ's and ρ's
    intervals; with fewer than half of them usable the interval is NaN.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    first_arr, second_arr = np.asarray(first, float), np.asarray(second, float)
    count = len(first_arr)
    taus, rhos, precisions = [], [], []
    for _ in range(resamples):
        index = rng.integers(0, count, count)
        a, b = first_arr[index], second_arr[index]
        kendall, spearman = _correlations(a, b)
        taus.append(float(kendall.statistic))
        rhos.append(float(spearman.statistic))
        precisions.append(top_k_precision(a.tolist(), b.tolist(), k))
    tail = (1.0 - level) / 2 * 100

    def interval(values: list[float]) -> tuple[float, float]:
        finite = [v for v in values if math.isfinite(v)]
        if len(finite) < resamples / 2:
            return (math.nan, math.nan)
        low, high = np.percentile(finite, [tail, 100 - tail])
        return (float(low), float(high))

    return {
        "kendall_tau_ci": interval(taus),
        "spearman_rho_ci": interval(rhos),
        "top_k_precision_ci": interval(precisions),
    }


def ranking_stats(
    supernet_scores: Sequence[float],
    standalone_scores: Sequence[float],
    k: int | None = None,
    *,
    bootstrap: int = 0,
    seed: int = 0,
    level: float = 0.95,
) -> RankingStats:
    """Kendall τ, Spearman ρ and top-k precision between two scorings.

    Args:
        supernet_scores: one score per architecture (higher is better).
        standalone_scores: the reference scores of the same architectures, same order.
        k: the top-k size; default :func:`default_top_k`.
        bootstrap: resamples of the architectures for confidence intervals (0: none).
        seed: seeds the resampling.
        level: the intervals' confidence level.

    Raises:
        ValueError: lengths differ, fewer than 2 architectures, or a non-finite score.
    """
    if len(supernet_scores) != len(standalone_scores):
        raise ValueError(
            f"the scorings differ in length: {len(supernet_scores)} and {len(standalone_scores)}"
        )
    count = len(supernet_scores)
    if count < 2:
        raise ValueError(f"a ranking needs at least 2 architectures, got {count}")
    values = [float(v) for v in (*supernet_scores, *standalone_scores)]
    if not all(math.isfinite(v) for v in values):
        raise ValueError("every score must be a finite number")
    k = default_top_k(count) if k is None else int(k)
    kendall, spearman = _correlations(supernet_scores, standalone_scores)
    intervals: dict[str, Any] = {}
    if bootstrap > 0:
        intervals = _bootstrap_intervals(
            supernet_scores, standalone_scores, k, bootstrap, seed, level
        )
        intervals["ci_level"] = level
    return RankingStats(
        count=count,
        kendall_tau=float(kendall.statistic),
        kendall_p=float(kendall.pvalue),
        spearman_rho=float(spearman.statistic),
        spearman_p=float(spearman.pvalue),
        top_k=k,
        top_k_precision=top_k_precision(supernet_scores, standalone_scores, k),
        **intervals,
    )
