"""``run_search``: the whole ``nasfuse search`` pipeline in one run directory.

Stages, each reused when the run directory already holds its output::

    <run>/search_config.yaml      the resolved config (budget filled in)
    <run>/supernet/supernet.pt    supernet training (or --supernet CKPT)
    <run>/latency_table.json      the latency lookup table of the space
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

from nasfuse.config import check_resumable, config_from_dict
from nasfuse.files import atomic_write_text, read_yaml_mapping
from nasfuse.run_lock import lock_run_dir
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
from nasfuse.spaces import load_space

__all__ = ["SearchResult", "run_search", "default_run_dir", "LATENCY_TABLE_FILE", "SUPERNET_DIR"]

LATENCY_TABLE_FILE = "latency_table.json"
SUPERNET_DIR = "supernet"


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
        hrnet_modules=plan.hrnet_modules,
    )


def _depth_options(
    space: str, space_options: dict[str, Any], hrnet_modules: int | None
) -> dict[str, Any]:
    """``stages.<i>.modules`` options that set an HRNet space's depth to the plan's.

    Nothing for other families, nor for a stage whose depth the user set with ``--set``.
    """
    if hrnet_modules is None:
        return {}
    loaded = load_space(space, space_options)
    if loaded.family != "hrnet":
        return {}
    return {
        f"stages.{index}.modules": hrnet_modules
        for index in range(len(loaded.config["stages"]))
        if f"stages.{index}.modules" not in space_options
    }


def _adopt_supernet(cfg: SearchConfig) -> SearchConfig:
    """With ``supernet``, the checkpoint's space (and size) is what is searched.

    The space, its options, width, input size, depth and supernet epochs are taken from the
    checkpoint, so ``search_config.yaml`` records what actually ran; one line says so when
    they differ from what the config asked for (a budget's width, another ``--space``).
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
        hrnet_modules=None,
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
    with the plan's width, input size and HRNet depth."""
    if cfg.supernet:
        return dict(cfg.space_options)  # the checkpoint's, exactly
    options = {**cfg.space_options, "width_mult": plan.width_mult}
    if plan.input_size is not None:
        options["input_size"] = plan.input_size
    options.update(_depth_options(cfg.space, options, plan.hrnet_modules))
    return options


def supernet_train_config(
    cfg: SearchConfig, plan: SearchPlan, space_options: dict[str, Any]
) -> Any:
    """The :class:`~nasfuse.training.SupernetTrainConfig` a search trains its supernet with."""
    from nasfuse.training import SupernetTrainConfig

    train_cfg = SupernetTrainConfig(
        space=cfg.space,
        space_options=space_options,
        dataset=cfg.dataset,
        data_dir=cfg.data_dir,
        download=cfg.download,
        train_subset=cfg.train_subset,
        epochs=plan.supernet_epochs,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        eval_archs=2,
        eval_calib_batches=plan.calib_batches,
        threads=cfg.threads,
    )
    return config_from_dict(
        SupernetTrainConfig,
        {**dataclasses.asdict(train_cfg), **cfg.supernet_options},
        "search config: supernet_options",
    )


def _supernet(cfg: SearchConfig, plan: SearchPlan, run_dir: Path, space_options: dict) -> Any:
    from nasfuse.training import load_supernet, train_supernet

    if cfg.supernet:
        return load_supernet(cfg.supernet)
    checkpoint = run_dir / SUPERNET_DIR / "supernet.pt"
    done_marker = run_dir / SUPERNET_DIR / "done"
    if checkpoint.is_file() and done_marker.is_file():
        return load_supernet(checkpoint)
    train_cfg = supernet_train_config(cfg, plan, space_options)
    print(f"supernet: training {plan.supernet_epochs} epochs -> {checkpoint}", flush=True)
    path = train_supernet(train_cfg, run_dir / SUPERNET_DIR, resume=checkpoint.is_file())
    atomic_write_text(done_marker, "trained\n")
    return load_supernet(path)


def _few_shot(cfg: SearchConfig, run_dir: Path) -> Any:
    """The few-shot sub-supernets the config asks for (trained, or reused), or None."""
    if cfg.few_shot_epochs <= 0:
        return None
    from nasfuse.training import train_few_shot
    from nasfuse.training.few_shot import FEW_SHOT_DIR

    checkpoint = Path(cfg.supernet) if cfg.supernet else run_dir / SUPERNET_DIR / "supernet.pt"
    return train_few_shot(
        checkpoint,
        cfg.few_shot_epochs,
        cfg.few_shot_site,
        out_dir=run_dir / SUPERNET_DIR / FEW_SHOT_DIR,
    )


def _latency_batch_size(cfg: SearchConfig) -> int:
    return 1 if cfg.dataset == "digits" else 32


def _load_latency_table(cfg: SearchConfig, space: Any, path: Path) -> Any:
    """The run's table, refused (as ``nasfuse latency`` refuses one) unless measured for
    this search: the space's hash and size, batch size, device, one thread, clock, memory
    format, dtype and torch version."""
    import torch

    from nasfuse.latency import LatencyTable
    from nasfuse.runtime import default_device

    return LatencyTable.load(
        path,
        space=space,
        batch_size=_latency_batch_size(cfg),
        device=default_device(),
        threads=1,
        channels_last=False,
        dtype=torch.float32,
        clock=cfg.latency_clock,
        remedy="delete it, and the search builds one for these settings, or start another --out",
    )


def _check_latency_table(cfg: SearchConfig, run_dir: Path, space_options: dict) -> None:
    """Before any training: a table the run already holds must fit this search."""
    path = run_dir / LATENCY_TABLE_FILE
    if path.is_file():
        _load_latency_table(cfg, load_space(cfg.space, space_options), path)


def _latency_table(cfg: SearchConfig, space: Any, run_dir: Path, plan: SearchPlan) -> Any:
    from nasfuse.latency import BuildOptions, LatencyTable

    path = run_dir / LATENCY_TABLE_FILE
    if path.is_file():
        return _load_latency_table(cfg, space, path)
    quick = plan.budget == "quick"
    print(f"latency: building the table of {space.name} -> {path}", flush=True)
    # Quick: fewer timed runs, one round; otherwise the table's own defaults.
    light = {"runs": 10, "rounds": 1} if quick else {}
    options = BuildOptions(
        batch_size=_latency_batch_size(cfg),
        threads=1,
        clock=cfg.latency_clock,
        **light,
    )
    table = LatencyTable.build(space, options)
    table.calibrate(space, samples=6 if quick else 20, seed=cfg.seed, **light)
    table.save(path)
    return table


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


@_holding_run_lock
def run_search(
    cfg: SearchConfig, out_dir: str | Path | None = None, resume: bool = False
) -> SearchResult:
    """Train (or reuse) the supernet, build (or reuse) the latency table, search, export.

    Args:
        cfg: the search config; the budget fills what it leaves None.
        out_dir: the run directory; default :func:`default_run_dir`.
        resume: continue the study in ``out_dir`` until it holds ``trials`` counted trials.

    ``out_dir`` is locked for the whole run, and a latency table it already holds is
    checked against this search's settings, both before any training.

    Returns:
        :class:`SearchResult`.
    """
    import torch

    from nasfuse.arch import data_fields
    from nasfuse.data import build_loaders
    from nasfuse.search._supernet_eval import SupernetCosts, SupernetEvaluator

    started = time.perf_counter()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    cfg = _adopt_supernet(cfg)
    plan = resolve_plan(cfg)
    if cfg.supernet:  # the checkpoint's depth, not the budget's
        plan = dataclasses.replace(plan, hrnet_modules=None)
    resolved = _resolved(cfg, plan)
    run_dir = Path(out_dir) if out_dir is not None else default_run_dir(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    config_path = run_dir / CONFIG_FILE
    if not resume and cfg.storage is None and (run_dir / STUDY_FILE).is_file():
        raise ValueError(
            f"{run_dir} already holds a search ({STUDY_FILE}); pass --resume to continue it "
            "or --out for a new run"
        )
    _check_study_storage(cfg, resume)
    probe_ray_address(cfg.ray_address)
    if config_path.is_file() and resume:
        _check_resume(config_path, resolved)
    atomic_write_text(config_path, yaml.safe_dump(dataclasses.asdict(resolved), sort_keys=False))
    print(plan.describe(), flush=True)
    print(f"run directory: {run_dir}", flush=True)

    space_options = search_space_options(cfg, plan)
    _check_latency_table(cfg, run_dir, space_options)
    supernet = _supernet(cfg, plan, run_dir, space_options)
    space = supernet.space
    table = _latency_table(cfg, space, run_dir, plan)
    bundle = build_loaders(
        cfg.dataset,
        space.input_size,
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

    few_shot = _few_shot(cfg, run_dir)
    cpu_count = os.cpu_count() or 1
    measured = cfg.latency == "measured"
    on_gpu = torch.cuda.is_available()
    if measured:
        concurrency = 1  # timings of two trials at once on shared cores would be wrong
    else:
        concurrency = cfg.concurrency or (
            cfg.num_cpus or (cpu_count if on_gpu else min(2, cpu_count))
        )
    # The search owns its Ray session: up (on 127.0.0.1, or joined) before the evaluator
    # puts the supernet into the object store.
    with local_ray(cfg.ray_address, cfg.num_cpus):
        evaluator = SupernetEvaluator(
            supernet,
            bundle,
            plan.calib_batches,
            measure_latency=measured,
            latency_batch_size=table.batch_size,
            finetune_steps=cfg.finetune_steps,
            few_shot=few_shot,
        )
        costs = SupernetCosts(supernet, table)
        constraints = Constraints(
            max_latency_ms=cfg.max_latency_ms,
            max_params=int(cfg.max_params_m * 1e6) if cfg.max_params_m is not None else None,
        )
        source = str(space.source)
        if Path(source).is_file():
            source = str(Path(source).resolve())
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
            study_attrs={
                # What an exported architecture needs to rebuild its network for this data.
                "data": data_fields(bundle),
                "space": source,
                "space_options": dict(space.options),
                "dataset": cfg.dataset,
                "sampler": cfg.sampler,
                "latency_source": cfg.latency,
                "latency_batch_size": table.batch_size,
            },
            resume=resume,
            concurrency=concurrency,
            cpus_per_trial=1.0,
            torch_threads=1,
            ray_address=cfg.ray_address,
            num_cpus=cfg.num_cpus,
            baseline_variants=cfg.baseline_variants,
        )
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
        device=costs.device,
    )
