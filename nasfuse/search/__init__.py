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

from nasfuse._lazy import lazy_exports

# Imported on first use (nasfuse._lazy): a Ray worker that unpickles a trial's evaluator
# imports its two modules, not the driver, Optuna and TensorBoard.
_LAZY = {
    "nasfuse.search._config": ("BUDGETS", "SearchConfig", "SearchPlan", "resolve_plan"),
    "nasfuse.search._driver": ("SearchResult", "default_run_dir", "run_search"),
    "nasfuse.search._engine": ("SearchStats", "reference_latency", "search_architectures"),
    "nasfuse.search._export": ("describe_pick", "export_run"),
    "nasfuse.search._pareto": (
        "PICK_RULES",
        "dominates",
        "hypervolume",
        "knee_index",
        "pareto_front",
        "parse_pick",
        "pick_index",
    ),
    "nasfuse.search._ray": ("local_ray",),
    "nasfuse.search._sampling": ("Constraints", "make_sampler"),
    "nasfuse.search._searcher": ("FusionSearcher",),
    "nasfuse.search._study": (
        "TrialRecord",
        "front_records",
        "load_search_study",
        "trial_records",
    ),
    "nasfuse.search._supernet_eval": ("SupernetCosts", "SupernetEvaluator"),
    "nasfuse.search._tensorboard": ("SearchRecorder", "draw_scatter"),
    "nasfuse.search._trial": (
        "ArchCosts",
        "ArchEvaluator",
        "SyntheticCosts",
        "SyntheticEvaluator",
    ),
}
_WHERE = {name: module for module, names in _LAZY.items() for name in names}

__all__ = sorted(_WHERE)

__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
