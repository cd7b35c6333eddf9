"""The search stage's config and the budgets that fill in what it leaves open.

A budget is a named plan (supernet epochs, trials, width multiplier, ...) sized for a
machine: ``quick`` and ``default`` for a 2-core CPU on the digits data, ``full`` for a GPU
and a real dataset. Any field set explicitly in :class:`SearchConfig` wins over the budget.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from nasfuse.config import run_only

__all__ = ["SearchConfig", "SearchPlan", "BUDGETS", "resolve_plan"]


@dataclass
class SearchConfig:
    """Everything ``nasfuse search`` needs; written as ``search_config.yaml`` into the run.

    Attributes:
        space: search space name or YAML path.
        space_options: overrides applied when loading the space (``width_mult`` and so on).
        dataset: ``digits`` (ships with scikit-learn), ``fashion_mnist`` (Debian ships it),
            ``cifar10``, ``cifar100`` or ``imagefolder``.
        data_dir: where real datasets live.
        download: let torchvision download Fashion-MNIST or CIFAR into ``data_dir``.
        train_subset: train the supernet on a fixed stratified subset of this many training
            images (None: all); trials are scored on the whole validation split.
        budget: ``quick`` (about 2 min on 2 CPU cores), ``default`` (about 11 min there),
            ``full`` (GPU).
        trials: number of Optuna trials (evaluated, cached, infeasible and failed ones all
            count; trials cut short by a kill do not). None: the budget's.
        supernet_epochs: None: the budget's.
        width_mult: the space's width multiplier. None: the space option if given, else
            the budget's.
        sampler: ``nsga2`` (NSGA-II), ``tpe`` (TPE with constant liar) or ``random``.
        population_size: NSGA-II population. None: the budget's.
        baseline_variants: one-group variants of all-add enqueued after the uniform
            architectures, which every search starts with (see
            :mod:`nasfuse.search._baselines`). None: enough to fill NSGA-II's first
            generation (the population minus the uniform architectures, at least 2).
        latency: ``lut`` (the latency table's prediction is the objective) or ``measured``
            (each evaluated architecture is extracted and timed; trials then run one at a time).
        latency_clock: ``wall`` time, or the measuring thread's CPU ``thread`` time (steadier
            on a CPU shared with other jobs); see :func:`nasfuse.latency.measure_latency`.
        max_latency_ms: constraint on the table's prediction, checked before evaluation.
        max_params_m: constraint on the parameter count, in millions.
        storage: Optuna storage URL; None: SQLite file ``study.db`` in the run directory.
        study_name: the Optuna study's name inside the storage.
        ray_address: an existing Ray cluster to join; None: start a local Ray.
        num_cpus: CPUs for a local Ray; None: all of this machine's.
        concurrency: trials in flight at once; None: one per CPU, at most 2 on a CPU target.
        supernet: a supernet checkpoint to reuse instead of training one.
        calib_batches: batches for BN recalibration per trial. None: the budget's.
        finetune_steps: fine-tune each trial's inherited weights this many steps before
            scoring it (:func:`nasfuse.training.finetune`); 0: score them as inherited.
        few_shot_epochs: score each trial with the few-shot sub-supernet of its op at
            ``few_shot_site``, each trained this many epochs from the supernet
            (:func:`nasfuse.training.train_few_shot`, kept in ``supernet/few_shot/``);
            0: the one-shot supernet scores every trial.
        few_shot_site: the split site; None: the last site.
        batch_size: evaluation batch size, and the supernet's training batch size unless
            the budget's or ``supernet_options`` set one (64: at 32 with the training
            defaults, hrnet_lite's supernet was seen to diverge to NaN).
        supernet_options: further :class:`~nasfuse.training.SupernetTrainConfig` keys
            (``lr``, ``clip_grad``, ``opt``, ``sampler``, ...), over the budget's own
            (quick: ``batch_size`` 128 and ``lr`` 0.1).
        input_size: the space's input size option. None: the budget's (quick: 16, the
            others: the space's own).
        latency_table: a latency table file to start the run with instead of building one
            (``nasfuse latency build``, or another run's); it is checked against this
            search's settings as the run's own table is, and copied into the run directory,
            whose copy is the one a resumed run reads.
        threads: torch threads of the driver (supernet training, latency table); None:
            torch's default. On a shared CPU, 1 avoids oversubscription.
        seed: seeds the sampler, data splits and supernet training.
        pick: rule for ``best.yaml``; None: ``max-latency=<max_latency_ms>`` if set, else ``knee``.

    A budget may also set space options for the space's family (HRNet's depth: see
    :func:`nasfuse.spaces.budget_space_options`); options in ``space_options`` win.

    Run-only (may change on ``--resume``): ``data_dir``, ``download``, ``trials``,
    ``ray_address``, ``num_cpus``, ``concurrency``, ``latency_table``, ``threads``,
    ``pick``; a change to any other field is refused, since the study would mix trials of
    two searches.
    """

    space: str = "hrnet_lite"
    space_options: dict[str, Any] = field(default_factory=dict)
    dataset: str = "digits"
    data_dir: str | None = run_only(None)
    download: bool = run_only(False)
    train_subset: int | None = None
    budget: Literal["quick", "default", "full"] = "default"
    trials: int | None = run_only(None)  # a resume may ask for more (or stop sooner)
    supernet_epochs: int | None = None
    width_mult: float | None = None
    sampler: Literal["nsga2", "tpe", "random"] = "nsga2"
    population_size: int | None = None
    baseline_variants: int | None = None
    latency: Literal["lut", "measured"] = "lut"
    latency_clock: Literal["wall", "thread"] = "wall"
    max_latency_ms: float | None = None
    max_params_m: float | None = None
    storage: str | None = None
    study_name: str = "nasfuse"
    ray_address: str | None = run_only(None)
    num_cpus: int | None = run_only(None)
    concurrency: int | None = run_only(None)
    supernet: str | None = None
    calib_batches: int | None = None
    finetune_steps: int = 0
    few_shot_epochs: int = 0
    few_shot_site: str | None = None
    batch_size: int = 64
    supernet_options: dict[str, Any] = field(default_factory=dict)
    input_size: int | None = None
    # The run's copy is what counts once it has one.
    latency_table: str | None = run_only(None)
    # Only the driver's speed: the latency table and the trials run on one thread each.
    threads: int | None = run_only(None)
    seed: int = 0
    pick: str | None = run_only(None)  # applied to the whole study at export

    @staticmethod
    def upgrade_saved(data: Mapping[str, Any]) -> dict[str, Any]:
        """A config written by an older nasfuse, as this one reads it (see
        :func:`nasfuse.config.config_from_dict`).

        Before HRNet's depth became a family's budget option, configs carried
        ``hrnet_modules: N``, which set ``stages.<i>.modules: N`` on every stage the space
        options left unset, on HRNet spaces only. The key is dropped where the budget now
        sets the same depth (every value older budgets wrote) and otherwise becomes those
        space options, so an older run resumes as the same search.
        """
        data = dict(data)
        modules = data.pop("hrnet_modules", None)
        if modules is None:
            return data
        from nasfuse.spaces import budget_space_options, load_space

        options = dict(data.get("space_options") or {})
        space = load_space(data.get("space", "hrnet_lite"), options)
        if space.family != "hrnet":
            return data
        depth = {
            f"stages.{index}.modules": modules
            for index in range(len(space.config["stages"]))
            if f"stages.{index}.modules" not in options
        }
        budget = budget_space_options(space, data.get("budget", "default"))
        if depth != {key: budget.get(key) for key in depth}:
            data["space_options"] = {**options, **depth}
        return data


@dataclass(frozen=True)
class SearchPlan:
    """What a budget resolves to; printed at the start of a search."""

    budget: str
    supernet_epochs: int
    trials: int
    width_mult: float
    input_size: int | None
    population_size: int
    calib_batches: int
    supernet_options: dict[str, Any] = field(default_factory=dict)
    """The budget's supernet training keys, under the config's ``supernet_options``."""

    def describe(self) -> str:
        """One line for the console, e.g. ``budget quick: width 0.25, 8 supernet epochs, ...``."""
        size = (
            f"input {self.input_size}x{self.input_size}"
            if self.input_size
            else "space's input size"
        )
        return (
            f"budget {self.budget}: width_mult {self.width_mult:g}, {size}, "
            f"{self.supernet_epochs} supernet epochs{self._supernet_text()}, "
            f"{self.trials} trials "
            f"(NSGA-II population {self.population_size}), "
            f"BN recalibration on {self.calib_batches} batches per trial"
        )

    def _supernet_text(self) -> str:
        if not self.supernet_options:
            return ""
        keys = ", ".join(f"{key} {value}" for key, value in self.supernet_options.items())
        return f" ({keys})"


# Sized on the 2-core CPU this project is developed on, with digits (1,077 training images,
# 16 steps per epoch at batch 64). quick narrows the space (width 0.25) at 16x16 input
# (digits are 8x8 images), about 4x cheaper per step than 32x32, and trains its supernet in
# 8 steps of batch 128 with the learning rate doubled: 0.82x and 0.86x the wall clock of
# batch 64 on seeds 0 and 1, with a front no worse (experiments/README.md, issue 16). It
# scores the supernet's fixed archs (the val/acc curves) after epochs 10 and 20 only: each
# scoring costs about half an epoch and never changes the training.
# full is the whole space, for GPUs. What a budget means for one family's own keys (HRNet's
# depth: one module per stage on the CPU budgets) is the family's budget_options
# (nasfuse/spaces/hrnet.py).
BUDGETS: dict[str, dict[str, Any]] = {
    "quick": {
        "supernet_epochs": 20,
        "trials": 50,
        "width_mult": 0.25,
        "input_size": 16,
        "population_size": 10,
        "calib_batches": 4,
        "supernet_options": {"batch_size": 128, "lr": 0.1, "eval_every": 10},
    },
    "default": {
        "supernet_epochs": 30,
        "trials": 100,
        "width_mult": 0.5,
        "input_size": None,
        "population_size": 20,
        "calib_batches": 8,
    },
    "full": {
        "supernet_epochs": 120,
        "trials": 500,
        "width_mult": 1.0,
        "input_size": None,
        "population_size": 50,
        "calib_batches": 20,
    },
}


def resolve_plan(cfg: SearchConfig) -> SearchPlan:
    """The budget's plan with every explicit field of ``cfg`` applied over it."""
    if cfg.budget not in BUDGETS:
        raise ValueError(f"unknown budget {cfg.budget!r}; expected one of {', '.join(BUDGETS)}")
    base = dict(BUDGETS[cfg.budget])
    # What the config's supernet_options set is theirs; the plan keeps the budget's rest.
    base["supernet_options"] = {
        key: value
        for key, value in base.get("supernet_options", {}).items()
        if key not in cfg.supernet_options
    }
    for name in (
        "supernet_epochs",
        "trials",
        "population_size",
        "calib_batches",
        "width_mult",
        "input_size",
    ):
        value = getattr(cfg, name)
        if value is not None:
            base[name] = value
    for name in ("width_mult", "input_size"):
        if name in cfg.space_options and getattr(cfg, name) is None:
            base[name] = cfg.space_options[name]
    if base["trials"] < 1:
        raise ValueError(f"trials must be >= 1, got {base['trials']}")
    if base["population_size"] < 2:
        raise ValueError(f"population_size must be >= 2, got {base['population_size']}")
    return SearchPlan(budget=cfg.budget, **base)


def config_as_dict(cfg: SearchConfig) -> dict[str, Any]:
    """Plain-data copy of ``cfg`` (for YAML and the study's user attributes)."""
    return dataclasses.asdict(cfg)
