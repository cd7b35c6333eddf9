"""Evidence that the supernet ranks architectures as training them from scratch would.

- :func:`validate_supernet` (``nasfuse validate-supernet``): picks architectures spread over
  the latency range plus uniform references, scores them on the supernet, retrains them as
  Ray Tune trials, and reports Kendall τ, Spearman ρ and top-k precision.
- :func:`pick_archs_by_latency`: the picks; :func:`ranking_stats`: the statistics.
- :func:`train_standalone`: many stand-alone trainings as Ray Tune trials, each kept on
  disk by architecture hash, seed and budget, so reruns and other tables reuse them.
- charts are drawn by :mod:`nasfuse.plots`, shared with the search.

Example:
    >>> result = validate_supernet("runs/supernet-resnet20-digits", ValidationConfig(archs=10))
    >>> result.ranking.kendall_tau
"""

from __future__ import annotations

from nasfuse.validation._picking import (
    PickedArch,
    mixed_random_arch,
    pick_archs_by_latency,
    uniform_archs,
)
from nasfuse.validation._ranking import (
    RankingStats,
    default_top_k,
    ranking_stats,
    top_k_indices,
    top_k_precision,
)
from nasfuse.validation._standalone import (
    StandaloneJob,
    budget_key,
    standalone_dir,
    train_standalone,
)
from nasfuse.validation._validate import (
    VALIDATION_FILE,
    ValidationConfig,
    ValidationResult,
    find_supernet,
    format_validation_table,
    validate_supernet,
)

__all__ = [
    "VALIDATION_FILE",
    "PickedArch",
    "RankingStats",
    "StandaloneJob",
    "ValidationConfig",
    "ValidationResult",
    "budget_key",
    "default_top_k",
    "find_supernet",
    "format_validation_table",
    "mixed_random_arch",
    "pick_archs_by_latency",
    "uniform_archs",
    "ranking_stats",
    "standalone_dir",
    "top_k_indices",
    "top_k_precision",
    "train_standalone",
    "validate_supernet",
]
