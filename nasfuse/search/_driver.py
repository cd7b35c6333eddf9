"""``run_search``: the whole ``nasfuse search`` pipeline in one run directory.

Stages, each reused when the run directory already holds its output (the supernet and the
table, also when the config hands them over: :mod:`nasfuse.search._artifacts`)::

    <run>/search_config.yaml      the resolved config (budget filled in)
    <run>/supernet/supernet.pt    supernet training (or --supernet CKPT)
    <run>/latency_table.json      the latency lookup table of the space (or --latency-table)
    <run>/study.db                the Optuna study (or --storage URL)
    <run>/tensorboard/            trials, hypervolume, scatter, op choices
    <run>/ray/                    Ray Tune's own results
    <run>/pareto.csv, pareto/, best.yaml, report.md
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nasfuse.config import check_resumable
from nasfuse.files import atomic_write_text, read_yaml_mapping
from nasfuse.run_lock import lock_run_dir
from nasfuse.search._artifacts import (
    check_latency_table,
    ensure_few_shot,
    ensure_latency_table,
    ensure_supernet,
)
from nasfuse.search._config import SearchConfig, SearchPlan, resolve_plan
from nasfuse.search._engine import SearchStats, search_architectures
from nasfuse.search._export import CONFIG_FILE, export_search
from nasfuse.search._ray import local_ray, probe_ray_address
from nasfuse.search._sampling import Constraints
from nasfuse.search._study import (
    STUDY_FILE,
    TrialRecord,
    check_storage,
    front_records,
    load_search_study,
    masked_url,
    trial_records,
)
from nasfuse.search._verdict import Verdict
from nasfuse.spaces import budget_space_options, load_space

__all__ = ["SearchResult", "run_search", "default_run_dir", "search_space_options"]


@dataclass
class SearchResult:
    """What :func:`run_search` leaves behind."""

    run_dir: Path
    plan: SearchPlan
    stats: SearchStats
    front: list[TrialRecord]
    best_path: Path
    verdict: Verdict
    wall_seconds: float
    device: str


def default_run_dir(cfg: SearchConfig) -> Path:
    """``runs/<space>-<budget>``: fixed, so ``--resume`` finds it again (the space's name
    made one safe file name)."""
    from nasfuse.files import safe_file_name

    return Path("runs") / safe_file_name(f"{Path(cfg.space).stem}-{cfg.budget}")


def _resolved(cfg: SearchConfig, plan: SearchPlan) -> SearchConfig:
    return dataclasses.replace(
        cfg,
        trials=plan.trials,
        supernet_epochs=plan.supernet_epochs,
        width_mult=plan.width_mult,
        population_size=plan.population_size,
        calib_batches=plan.calib_batches,
        input_size=plan.input_size,
    )


def _adopt_supernet(cfg: SearchConfig) -> SearchConfig:
    """With ``supernet``, the checkpoint's space (and size) is what is searched.

    The space, its options (depth included), width, input size and supernet epochs are
    taken from the checkpoint, so ``search_config.yaml`` records what actually ran; one line
    says so when they differ from what the config asked for (a budget's width, another
    ``--space``).
    """
    if not cfg.supernet:
        return cfg
    from nasfuse.files import load_checkpoint
    from nasfuse.training.supernet_training import space_from_info

    checkpoint = load_checkpoint(cfg.supernet, kind="supernet")
    space = space_from_info(checkpoint, cfg.supernet)
    adopted = dataclasses.replace(
        cfg,
        space=str(checkpoint["space"]),
        space_options=dict(checkpoint["space_options"]),
        width_mult=float(space.config["width_mult"]),
        input_size=int(space.input_size),
        supernet_epochs=int(checkpoint["config"].get("epochs", 0)) or None,
    )
    asked = (Path(cfg.space).stem, cfg.width_mult, cfg.input_size, cfg.space_options)
    if asked != (space.name, adopted.width_mult, adopted.input_size, adopted.space_options):
        print(
            f"search: --supernet {cfg.supernet} is a supernet of {space.name} (options "
            f"{adopted.space_options}); searching that space, not {cfg.space!r} with the "
            "budget's size",
            flush=True,
        )
    return adopted


def _check_resume(path: Path, resolved: SearchConfig) -> None:
    """Refuse to resume the search of ``path`` (its ``search_config.yaml``) with settings
    that would change what is searched (:func:`nasfuse.config.check_resumable`)."""
    saved = read_yaml_mapping(path, "the saved search settings", allow_empty=True)
    check_resumable(saved, resolved, str(path), "resume with the same ones or start another --out")


def _check_study_storage(cfg: SearchConfig, resume: bool) -> None:
    """Before any training: ``--storage`` opens, and holds the study only with ``--resume``."""
    if cfg.storage is None:
        return  # the run's own SQLite file, checked above
    import optuna

    storage = check_storage(cfg.storage)
    names = {summary.study_name for summary in optuna.get_all_study_summaries(storage)}
    if cfg.study_name in names and not resume:
        raise ValueError(
            f"storage {masked_url(cfg.storage)} already holds study {cfg.study_name!r}; pass "
            "--resume to continue it (or to search it alongside its other drivers), or choose "
            "another --study-name"
        )


def search_space_options(cfg: SearchConfig, plan: SearchPlan) -> dict[str, Any]:
    """The space options a search runs with: a given supernet's exactly, else the user's
    with the plan's width and input size, then what the budget sets for the space's family
    (:func:`nasfuse.spaces.budget_space_options`) where the user set nothing."""
    if cfg.supernet:
        return dict(cfg.space_options)  # the checkpoint's, exactly
    options = {**cfg.space_options, "width_mult": plan.width_mult}
    if plan.input_size is not None:
        options["input_size"] = plan.input_size
    return {**options, **budget_space_options(load_space(cfg.space, options), plan.budget)}


def _holding_run_lock(search: Callable[..., SearchResult]) -> Callable[..., SearchResult]:
    """``search`` with its run directory locked from the start to the end
    (:func:`nasfuse.run_lock.lock_run_dir`): a second process is refused before any work."""

    @functools.wraps(search)
    def locked(
        cfg: SearchConfig, out_dir: str | Path | None = None, resume: bool = False
    ) -> SearchResult:
        if out_dir is None:
            cfg = _adopt_supernet(cfg)  # the default directory is named after its space
            out_dir = default_run_dir(cfg)
        with lock_run_dir(out_dir, "search"):
            return search(cfg, out_dir, resume=resume)

    return locked


def _start_run(cfg: SearchConfig, plan: SearchPlan, run_dir: Path, resume: bool) -> None:
    """Refuse what cannot run before any work, then record the resolved config.

    Refused: a run directory that holds a study without ``resume``, a storage that does not
    open or holds the study without ``resume``, a Ray address that does not answer, and a
    resume whose result-deciding settings differ from the run's.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume and cfg.storage is None and (run_dir / STUDY_FILE).is_file():
        raise ValueError(
            f"{run_dir} already holds a search ({STUDY_FILE}); pass --resume to continue it "
            "or --out for a new run"
        )
    _check_study_storage(cfg, resume)
    probe_ray_address(cfg.ray_address)
    resolved = _resolved(cfg, plan)
    config_path = run_dir / CONFIG_FILE
    if config_path.is_file() and resume:
        _check_resume(config_path, resolved)
    atomic_write_text(config_path, yaml.safe_dump(dataclasses.asdict(resolved), sort_keys=False))
    print(plan.describe(), flush=True)
    print(f"run directory: {run_dir}", flush=True)


def _concurrency(cfg: SearchConfig) -> int:
    """Trials in flight: one when latency is measured (two timings at once on shared cores
    would be wrong), else the config's, else one per CPU (at most 2 without a GPU)."""
    import torch

    if cfg.latency == "measured":
        return 1
    cpu_count = os.cpu_count() or 1
    on_gpu = torch.cuda.is_available()
    return cfg.concurrency or (cfg.num_cpus or (cpu_count if on_gpu else min(2, cpu_count)))


def _study_attrs(cfg: SearchConfig, space: Any, bundle: Any, table: Any) -> dict[str, Any]:
    """What an exported architecture needs to rebuild its network for this data."""
    from nasfuse.arch import data_fields

    source = str(space.source)
    if Path(source).is_file():
        source = str(Path(source).resolve())
    return {
        "data": data_fields(bundle),
        "space": source,
        "space_options": dict(space.options),
        "dataset": cfg.dataset,
        "sampler": cfg.sampler,
        "latency_source": cfg.latency,
        "latency_batch_size": table.batch_size,
    }


def _search_stage(
    cfg: SearchConfig,
    plan: SearchPlan,
    run_dir: Path,
    supernet: Any,
    table: Any,
    bundle: Any,
    resume: bool,
) -> tuple[SearchStats, str]:
    """Search the supernet's space with its inherited weights; the stats and the latency
    device. The search owns its Ray session: up (on 127.0.0.1, or joined) before the
    evaluator puts the supernet into the object store."""
    from nasfuse.search._supernet_eval import SupernetCosts, SupernetEvaluator

    space = supernet.space
    few_shot = ensure_few_shot(cfg, run_dir)
    with local_ray(cfg.ray_address, cfg.num_cpus):
        evaluator = SupernetEvaluator(
            supernet,
            bundle,
            plan.calib_batches,
            measure_latency=cfg.latency == "measured",
            latency_batch_size=table.batch_size,
            finetune_steps=cfg.finetune_steps,
            few_shot=few_shot,
        )
        costs = SupernetCosts(supernet, table)
        constraints = Constraints(
            max_latency_ms=cfg.max_latency_ms,
            max_params=int(cfg.max_params_m * 1e6) if cfg.max_params_m is not None else None,
        )
        stats = search_architectures(
            sites={name: list(site.ops) for name, site in space.sites.items()},
            evaluator=evaluator,
            costs=costs,
            run_dir=run_dir,
            n_trials=plan.trials,
            sampler=cfg.sampler,
            seed=cfg.seed,
            population_size=plan.population_size,
            constraints=constraints,
            storage=cfg.storage,
            study_name=cfg.study_name,
            space_hash=space.hash,
            study_attrs=_study_attrs(cfg, space, bundle, table),
            resume=resume,
            concurrency=_concurrency(cfg),
            cpus_per_trial=1.0,
            torch_threads=1,
            ray_address=cfg.ray_address,
            num_cpus=cfg.num_cpus,
            baseline_variants=cfg.baseline_variants,
        )
    return stats, costs.device


@_holding_run_lock
def run_search(
    cfg: SearchConfig, out_dir: str | Path | None = None, resume: bool = False
) -> SearchResult:
    """Train (or reuse) the supernet, build (or reuse) the latency table, search, export.

    Args:
        cfg: the search config; the budget fills what it leaves None. ``cfg.supernet`` and
            ``cfg.latency_table`` hand the run a trained supernet and a measured table.
        out_dir: the run directory; default :func:`default_run_dir`.
        resume: continue the study in ``out_dir`` until it holds ``trials`` counted trials.

    ``out_dir`` is locked for the whole run, and a latency table it already holds (or is
    given) is checked against this search's settings, both before any training.

    Returns:
        :class:`SearchResult`.
    """
    import torch

    from nasfuse.data import build_loaders

    started = time.perf_counter()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    cfg = _adopt_supernet(cfg)
    plan = resolve_plan(cfg)
    run_dir = Path(out_dir) if out_dir is not None else default_run_dir(cfg)
    _start_run(cfg, plan, run_dir, resume)
    space_options = search_space_options(cfg, plan)
    listed = ", ".join(f"{key}={value}" for key, value in space_options.items())
    print(f"space: {cfg.space} with {listed or 'its own options'}", flush=True)
    check_latency_table(cfg, run_dir, space_options)
    supernet = ensure_supernet(cfg, plan, run_dir, space_options)
    table = ensure_latency_table(cfg, supernet.space, run_dir, plan)
    bundle = build_loaders(
        cfg.dataset,
        supernet.space.input_size,
        cfg.batch_size,
        cfg.data_dir,
        download=cfg.download,
        seed=cfg.seed,
        train_subset=cfg.train_subset,
    )
    if bundle.num_classes != supernet.num_classes:
        raise ValueError(
            f"the supernet has {supernet.num_classes} classes, {bundle.name} has {bundle.num_classes}"
        )
    stats, device = _search_stage(cfg, plan, run_dir, supernet, table, bundle, resume)
    pick = cfg.pick or (f"max-latency={cfg.max_latency_ms:g}" if cfg.max_latency_ms else "knee")
    exported = export_search(run_dir, pick)
    study = load_search_study(run_dir, cfg.storage, cfg.study_name)
    return SearchResult(
        run_dir=run_dir,
        plan=plan,
        stats=stats,
        front=front_records(trial_records(study)),
        best_path=exported.best_path,
        verdict=exported.verdict,
        wall_seconds=time.perf_counter() - started,
        device=device,
    )
