"""The search: Optuna samplers inside Ray Tune, two objectives, Pareto front, export.

- :func:`run_search` (``nasfuse search``): supernet, latency table, search, export, in one
  run directory, each stage reused or resumed.
- :func:`search_architectures`: the search loop alone, for any :class:`ArchEvaluator` and
  :class:`ArchCosts` (the supernet's, or :class:`SyntheticEvaluator` in tests).
- :func:`export_run` (``nasfuse export``): ``pareto.csv``, arch YAMLs, ``best.yaml``,
  ``report.md`` from a run's study, with a pick rule.
- :mod:`~nasfuse.search._pareto`: front, hypervolume, knee and picks on plain points.

Example:
    >>> result = run_search(SearchConfig(space="hrnet_lite", budget="quick"), "runs/demo")
    >>> result.best_path
    PosixPath('runs/demo/best.yaml')
"""

from __future__ import annotations

from nasfuse.search._config import BUDGETS, SearchConfig, SearchPlan, resolve_plan
from nasfuse.search._driver import SearchResult, default_run_dir, run_search
from nasfuse.search._engine import SearchStats, reference_latency, search_architectures
from nasfuse.search._export import describe_pick, export_run
from nasfuse.search._pareto import (
    PICK_RULES,
    dominates,
    hypervolume,
    knee_index,
    pareto_front,
    parse_pick,
    pick_index,
)
from nasfuse.search._ray import local_ray
from nasfuse.search._sampling import Constraints, make_sampler
from nasfuse.search._searcher import FusionSearcher
from nasfuse.search._study import TrialRecord, front_records, load_search_study, trial_records
from nasfuse.search._supernet_eval import SupernetCosts, SupernetEvaluator
from nasfuse.search._tensorboard import SearchRecorder, draw_scatter
from nasfuse.search._trial import ArchCosts, ArchEvaluator, SyntheticCosts, SyntheticEvaluator

__all__ = [
    "BUDGETS",
    "PICK_RULES",
    "ArchCosts",
    "ArchEvaluator",
    "Constraints",
    "FusionSearcher",
    "SearchConfig",
    "SearchPlan",
    "SearchRecorder",
    "SearchResult",
    "SearchStats",
    "SupernetCosts",
    "SupernetEvaluator",
    "SyntheticCosts",
    "SyntheticEvaluator",
    "TrialRecord",
    "default_run_dir",
    "describe_pick",
    "dominates",
    "draw_scatter",
    "export_run",
    "front_records",
    "hypervolume",
    "knee_index",
    "load_search_study",
    "local_ray",
    "make_sampler",
    "pareto_front",
    "parse_pick",
    "pick_index",
    "reference_latency",
    "resolve_plan",
    "run_search",
    "search_architectures",
    "trial_records",
]
