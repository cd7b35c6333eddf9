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

__all__ = ["RankingStats", "default_top_k", "ranking_stats", "top_k_indices", "top_k_precision"]


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
    """

    count: int
    kendall_tau: float
    kendall_p: float
    spearman_rho: float
    spearman_p: float
    top_k: int
    top_k_precision: float

    def to_dict(self) -> dict[str, Any]:
        """Plain data; NaN becomes None so the result is valid JSON."""
        return {
            key: (None if isinstance(value, float) and math.isnan(value) else value)
            for key, value in asdict(self).items()
        }


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


def ranking_stats(
    supernet_scores: Sequence[float], standalone_scores: Sequence[float], k: int | None = None
) -> RankingStats:
    """Kendall τ, Spearman ρ and top-k precision between two scorings.

    Args:
        supernet_scores: one score per architecture (higher is better).
        standalone_scores: the reference scores of the same architectures, same order.
        k: the top-k size; default :func:`default_top_k`.

    Raises:
        ValueError: lengths differ, fewer than 2 architectures, or a non-finite score.
    """
    from scipy import stats

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
    with warnings.catch_warnings():
        # A constant scoring gives NaN (reported as such); scipy also warns about it.
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        kendall = stats.kendalltau(supernet_scores, standalone_scores)
        spearman = stats.spearmanr(supernet_scores, standalone_scores)
    return RankingStats(
        count=count,
        kendall_tau=float(kendall.statistic),
        kendall_p=float(kendall.pvalue),
        spearman_rho=float(spearman.statistic),
        spearman_p=float(spearman.pvalue),
        top_k=k,
        top_k_precision=top_k_precision(supernet_scores, standalone_scores, k),
    )
