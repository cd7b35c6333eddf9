"""The stages of :func:`~nasfuse.validation.validate_supernet` up to the trainings.

Each stage takes what the earlier ones produced and returns a small record of its own:
:func:`load_run` (the supernet and where its data is), :func:`pick_archs` (the
architectures over the latency range), :func:`score_on_supernet` (their supernet
accuracies) and :func:`train_ground_truth` (their stand-alone trainings).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasfuse.validation._picking import PickedArch, pick_archs_by_latency
from nasfuse.validation._standalone import StandaloneJob, train_standalone

if TYPE_CHECKING:
    from nasfuse.validation._validate import ValidationConfig

__all__ = [
    "LATENCY_TABLE_FILE",
    "GroundTruth",
    "LoadedRun",
    "Picks",
    "SupernetScores",
    "find_supernet",
    "load_run",
    "pick_archs",
    "score_on_supernet",
    "train_ground_truth",
]

LATENCY_TABLE_FILE = "latency_table.json"


def find_supernet(run_dir: str | Path) -> Path:
    """The supernet checkpoint of a run: ``<run>/supernet.pt`` (``train-supernet``) or
    ``<run>/supernet/supernet.pt`` (``search``); a checkpoint file is returned as it is."""
    run_dir = Path(run_dir)
    if run_dir.is_file():
        return run_dir
    for candidate in (run_dir / "supernet.pt", run_dir / "supernet" / "supernet.pt"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{run_dir}: no supernet checkpoint (looked for supernet.pt and supernet/supernet.pt); "
        "train one with `nasfuse train-supernet --out DIR` or `nasfuse search`"
    )


@dataclass
class LoadedRun:
    """The run being validated: its supernet, how it was trained, where the outputs go."""

    run_dir: Path
    out_dir: Path
    supernet_path: Path
    supernet_cfg: Mapping[str, Any]
    supernet_seconds: float
    dataset: str
    data_dir: str | None
    supernet: Any

    @property
    def space(self) -> Any:
        return self.supernet.space


def load_run(run_dir: str | Path, cfg: ValidationConfig, out_dir: str | Path | None) -> LoadedRun:
    """Check ``cfg``, find and load the run's supernet, and make the output directory.

    The Ray address is probed here, before minutes of scoring, not after them.
    """
    from nasfuse.files import load_checkpoint
    from nasfuse.search._ray import probe_ray_address
    from nasfuse.training import load_supernet

    if cfg.archs < 0:
        raise ValueError(f"archs must be >= 0, got {cfg.archs}")
    if cfg.seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {cfg.seeds}")
    probe_ray_address(cfg.ray_address)
    run_dir = Path(run_dir)
    supernet_path = find_supernet(run_dir)
    if run_dir.is_file():
        run_dir = run_dir.parent
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "validation"
    out_dir.mkdir(parents=True, exist_ok=True)
    trained = load_checkpoint(supernet_path, kind="supernet")
    supernet_cfg: Mapping[str, Any] = trained.get("config", {})
    loaded = LoadedRun(
        run_dir=run_dir,
        out_dir=out_dir,
        supernet_path=supernet_path,
        supernet_cfg=supernet_cfg,
        supernet_seconds=float(trained.get("wall_time") or 0.0),
        dataset=str(trained.get("dataset") or supernet_cfg.get("dataset", "digits")),
        data_dir=cfg.data_dir or supernet_cfg.get("data_dir"),
        supernet=None,
    )
    del trained  # the raw checkpoint is not kept beside the loaded supernet
    loaded.supernet = load_supernet(supernet_path)
    return loaded


@dataclass
class Picks:
    """The architectures to validate and the latency table that placed them."""

    picks: list[PickedArch]
    table: Any
    table_path: Path


def pick_archs(run: LoadedRun, cfg: ValidationConfig) -> Picks:
    """Architectures spread over the predicted latency range, plus the uniform ones."""
    space = run.space
    table, table_path = _latency_table(run, cfg.latency_table)
    picks = pick_archs_by_latency(
        space, cfg.archs, table.predict, cfg.include_ops, cfg.pool_size, cfg.seed
    )
    count = len(picks)
    if cfg.top_k is not None and not 1 <= cfg.top_k <= count:
        raise ValueError(f"top_k must be between 1 and {count} (the archs validated)")
    print(
        f"validating {count} architectures of {space.name} ({', '.join(p.label for p in picks)}); "
        f"predicted latency {min(p.latency_ms for p in picks):.3f} to "
        f"{max(p.latency_ms for p in picks):.3f} ms on {table.device}",
        flush=True,
    )
    return Picks(picks=picks, table=table, table_path=table_path)


def _latency_table(run: LoadedRun, given: str | None) -> tuple[Any, Path]:
    """The ``given`` latency table, else the run's, else one in the output directory, else a
    quickly built one saved there; refused unless it describes the run's space."""
    from nasfuse.latency import LatencyTable

    space, dataset = run.space, run.dataset
    if given:  # a missing file is refused, not replaced by another table
        return LatencyTable.load(given, space=space), Path(given)
    for path in (run.run_dir / LATENCY_TABLE_FILE, run.out_dir / LATENCY_TABLE_FILE):
        if path.is_file():
            return LatencyTable.load(path, space=space), path
    path = run.out_dir / LATENCY_TABLE_FILE
    print(f"latency: no table in {run.run_dir}; building one -> {path}", flush=True)
    # Same batch size as a search's table: one image on digits, 32 on real datasets.
    table = LatencyTable.load_or_build(
        space,
        batch_size=1 if dataset == "digits" else 32,
        path=path,
        calibrate=6,
        threads=1,
        runs=10,
        rounds=2,
        network_runs=5,
    )
    return table, path


@dataclass
class SupernetScores:
    """Per pick ``(accuracy after BN recalibration, accuracy with the supernet's own BN
    statistics)``, the few-shot sub-supernets that scored them (None: the one-shot
    supernet did), and the scoring's wall time."""

    scores: list[tuple[float, float]]
    few_shot: Any
    seconds: float


def score_on_supernet(
    run: LoadedRun, picks: Sequence[PickedArch], cfg: ValidationConfig
) -> SupernetScores:
    """Score every pick on the supernet (or, with ``cfg.few_shot_epochs``, on the few-shot
    sub-supernet of its op, trained first or reused from the run)."""
    from nasfuse.data import build_loaders

    bundle = build_loaders(
        run.dataset,
        input_size=run.space.input_size,
        batch_size=int(run.supernet_cfg.get("batch_size", 64)),
        data_dir=run.data_dir,
        seed=int(run.supernet_cfg.get("seed", 0)),
    )
    few_shot = None
    if cfg.few_shot_epochs > 0:
        from nasfuse.training import train_few_shot

        few_shot = train_few_shot(run.supernet_path, cfg.few_shot_epochs, cfg.few_shot_site)
    started = time.perf_counter()
    scores = _scores(
        few_shot.for_arch if few_shot else (lambda arch: run.supernet), picks, bundle, cfg
    )
    return SupernetScores(scores=scores, few_shot=few_shot, seconds=time.perf_counter() - started)


def _scores(
    supernets: Callable[[Mapping[str, str]], Any],
    picks: Sequence[PickedArch],
    bundle: Any,
    cfg: ValidationConfig,
) -> list[tuple[float, float]]:
    """``(accuracy after BN recalibration, accuracy with the supernet's own BN statistics)``;
    the first after ``cfg.finetune_steps`` of fine-tuning, if any. ``supernets`` gives the
    supernet that scores an architecture (the one-shot one, or its few-shot sub-supernet)."""
    from nasfuse.progress import progress_bar
    from nasfuse.training import evaluate_arch, preserved_bn_stats

    scores = []
    for pick in progress_bar(picks, desc="supernet scores", unit="arch"):
        supernet = supernets(pick.arch)
        with preserved_bn_stats(supernet):
            recalibrated = evaluate_arch(
                supernet,
                pick.arch,
                bundle,
                cfg.calib_batches,
                finetune_steps=cfg.finetune_steps,
                finetune_lr=cfg.finetune_lr,
            )
        # Outside the block the statistics are the trained supernet's again.
        as_trained = evaluate_arch(supernet, pick.arch, bundle, recalibrate=False)
        scores.append((recalibrated, as_trained))
    return scores


@dataclass
class GroundTruth:
    """The stand-alone trainings: their budget, where they live, one job per pick and seed
    (``jobs[i]`` are pick i's), the metrics of those that finished, and the wall time."""

    retrain_cfg: Any
    standalone_dir: Path
    seeds: list[int]
    jobs: list[list[StandaloneJob]]
    metrics: Mapping[StandaloneJob, Mapping[str, Any] | None]
    seconds: float


def train_ground_truth(
    run: LoadedRun, picks: Sequence[PickedArch], cfg: ValidationConfig
) -> GroundTruth:
    """Train every pick from scratch with each seed (Ray Tune trials; finished ones are
    reused from the standalone directory, failed ones are missing from ``metrics``)."""
    from nasfuse.config import load_config
    from nasfuse.training import RetrainConfig

    retrain_cfg = load_config(
        RetrainConfig,
        None,
        {
            "dataset": run.dataset,
            "data_dir": run.data_dir,
            **cfg.retrain_options,
            "epochs": cfg.epochs,
            "train_subset": cfg.train_subset,
            "seed": cfg.seed,
            "threads": 1,
            "progress": False,
        },
    )
    standalone_dir = Path(cfg.standalone_dir) if cfg.standalone_dir else run.out_dir / "standalone"
    started = time.perf_counter()
    seeds = [cfg.seed + i for i in range(cfg.seeds)]
    jobs = [[StandaloneJob.of(pick.arch, seed) for seed in seeds] for pick in picks]
    metrics = train_standalone(
        run.space,
        [job for per_arch in jobs for job in per_arch],
        retrain_cfg,
        standalone_dir,
        cfg.ray_address,
        cfg.num_cpus,
        gpus_per_trial=cfg.gpus_per_training,
        allow_failures=True,
    )
    return GroundTruth(
        retrain_cfg=retrain_cfg,
        standalone_dir=standalone_dir,
        seeds=seeds,
        jobs=jobs,
        metrics=metrics,
        seconds=time.perf_counter() - started,
    )
