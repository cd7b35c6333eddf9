"""``validate-supernet``: does the supernet rank architectures as training them would?

For a run directory with a trained supernet, :func:`validate_supernet` picks architectures
spread over the latency range (plus every uniform reference: all-add, all-aff, ...),
scores each with the supernet's inherited weights after BatchNorm recalibration, trains
each from scratch with one fixed short budget and several seeds (Ray Tune trials, see
:func:`~nasfuse.validation.train_standalone`), and compares the rankings.

The ground truth is noisy: the same architecture trained with another seed lands
elsewhere. So beside τ of the supernet against the seeds' mean accuracy, the report gives
the *noise ceiling*, τ between seed 0 and seed 1 (what the ground truth reaches against
itself; with 4 or more seeds also the mean of half the seeds against the other half's),
and two free predictors any supernet must beat: rank by predicted latency and
rank by parameter count. Every τ, ρ and top-k precision carries a bootstrap interval over
architectures. Outputs in ``<run>/validation/`` (or ``out_dir``):

- ``validation.json``: every architecture with its scores, and the statistics;
- ``tensorboard/``: the scatter image (supernet vs stand-alone accuracy) and the statistics;
- ``standalone/``: the trainings, reused by a rerun (unless ``standalone_dir`` points
  elsewhere, e.g. a cache shared by several validations of one space);
- ``latency_table.json``: only if the run had no latency table and one had to be built.
"""

from __future__ import annotations

import datetime
import json
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nasfuse.files import atomic_write_text
from nasfuse.training.evaluation import DEFAULT_FINETUNE_LR
from nasfuse.validation._picking import PickedArch, pick_archs_by_latency
from nasfuse.validation._ranking import RankingStats, ranking_stats
from nasfuse.validation._standalone import StandaloneJob, budget_key, train_standalone

__all__ = [
    "VALIDATION_FILE",
    "ValidationConfig",
    "ValidationResult",
    "find_supernet",
    "format_validation_table",
    "validate_supernet",
]

VALIDATION_FILE = "validation.json"
VALIDATION_FORMAT = "nasfuse-validation/1"
LATENCY_TABLE_FILE = "latency_table.json"


@dataclass
class ValidationConfig:
    """Settings of :func:`validate_supernet`.

    Attributes:
        archs: architectures spread over the latency range (the uniform ones come on top).
        include_ops: ops whose uniform architecture (``all-<op>``, with add where the op
            is not allowed) is always validated; None: every op the space offers.
        epochs: stand-alone training epochs (the same short budget for every architecture).
        seeds: stand-alone trainings per architecture (seeds ``seed``, ``seed + 1``, ...);
            the ground truth is their mean, the noise ceiling compares the first two (and,
            with 4 or more, the means of the two halves of the seeds).
        bootstrap: resamples of the architectures for the confidence intervals.
        train_subset: stand-alone training on a fixed stratified subset of this many images
            (None: the whole training split).
        seed: seeds the picks and the stand-alone trainings.
        top_k: k of the top-k precision; None: ``max(1, n // 4)`` of the n validated.
        calib_batches: BatchNorm recalibration batches per supernet score.
        finetune_steps: fine-tune each architecture's inherited weights this many steps
            before scoring it (:func:`~nasfuse.training.finetune`; 0: score them as they are).
        finetune_lr: the fine-tuning's learning rate.
        few_shot_epochs: score each architecture with the few-shot sub-supernet of its op
            at ``few_shot_site``, each trained this many epochs from the supernet's weights
            (:func:`~nasfuse.training.train_few_shot`; reused when the run has them);
            0: score with the one-shot supernet.
        few_shot_site: the split site; None: the last site.
        pool_size: random architectures to pick the spread ones from; None: automatic.
        retrain_options: other :class:`~nasfuse.training.RetrainConfig` fields of the
            stand-alone budget (``lr``, ``batch_size``, ...).
        standalone_dir: where the trainings live; None: ``<out>/standalone``.
        data_dir: where the run's dataset is now; None: where its supernet was trained from.
        ray_address: join this Ray cluster; None: start a local Ray.
        num_cpus: CPUs of the local Ray (one training per CPU); None: all of this machine's.
        gpus_per_training: GPUs (or a share) each stand-alone training asks Ray for.
    """

    archs: int = 10
    include_ops: list[str] | None = None
    epochs: int = 5
    seeds: int = 2
    bootstrap: int = 1000
    train_subset: int | None = None
    seed: int = 0
    top_k: int | None = None
    calib_batches: int = 20
    finetune_steps: int = 0
    finetune_lr: float = DEFAULT_FINETUNE_LR
    few_shot_epochs: int = 0
    few_shot_site: str | None = None
    pool_size: int | None = None
    retrain_options: dict[str, Any] = field(default_factory=dict)
    standalone_dir: str | None = None
    data_dir: str | None = None
    ray_address: str | None = None
    num_cpus: int | None = None
    gpus_per_training: float = 0.0


@dataclass
class ValidationResult:
    """What :func:`validate_supernet` found (also in ``validation.json``)."""

    path: Path
    ranking: RankingStats
    report: dict[str, Any]


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


def _latency_table(run_dir: Path, out_dir: Path, space: Any, dataset: str) -> tuple[Any, Path]:
    """The run's latency table, else one in ``out_dir``, else a quickly built one saved there."""
    from nasfuse.latency import LatencyTable

    for path in (run_dir / LATENCY_TABLE_FILE, out_dir / LATENCY_TABLE_FILE):
        if path.is_file():
            return LatencyTable.load(path, space=space), path
    path = out_dir / LATENCY_TABLE_FILE
    print(f"latency: no table in {run_dir}; building one -> {path}", flush=True)
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


def _score_on_supernet(
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


def _stats_or_none(first: Sequence[float], second: Sequence[float], k: int | None) -> Any:
    return ranking_stats(first, second, k).to_dict() if len(first) >= 2 else None


def validate_supernet(
    run_dir: str | Path, cfg: ValidationConfig | None = None, out_dir: str | Path | None = None
) -> ValidationResult:
    """Compare the supernet's ranking of architectures with their stand-alone ranking.

    Args:
        run_dir: a run with a supernet (see :func:`find_supernet`) and, if present, a
            ``latency_table.json``.
        cfg: the settings; default :class:`ValidationConfig`.
        out_dir: where the outputs go; default ``<run_dir>/validation``.

    Returns:
        :class:`ValidationResult`; ``report`` is what ``validation.json`` holds.

    Raises:
        FileNotFoundError: no supernet in ``run_dir``.
        ValueError: an ``include_ops`` op the space does not offer, too few architectures,
            fewer than 1 seed.
        RuntimeError: fewer than 2 architectures finished every seed's training. An
            architecture with a failed training (e.g. diverged) is left out of the
            statistics and listed in ``failed_trainings``; a rerun retries it.
    """
    from nasfuse.config import load_config
    from nasfuse.data import build_loaders
    from nasfuse.files import load_checkpoint
    from nasfuse.runtime import default_device, device_name
    from nasfuse.training import RetrainConfig, load_supernet

    started = time.perf_counter()
    cfg = cfg or ValidationConfig()
    if cfg.archs < 0:
        raise ValueError(f"archs must be >= 0, got {cfg.archs}")
    if cfg.seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {cfg.seeds}")
    from nasfuse.search._engine import probe_ray_address

    probe_ray_address(cfg.ray_address)  # before minutes of scoring, not after them
    run_dir = Path(run_dir)
    supernet_path = find_supernet(run_dir)
    if run_dir.is_file():
        run_dir = run_dir.parent
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "validation"
    out_dir.mkdir(parents=True, exist_ok=True)
    trained = load_checkpoint(supernet_path, kind="supernet")
    supernet_cfg: Mapping[str, Any] = trained.get("config", {})
    supernet_seconds = float(trained.get("wall_time") or 0.0)
    dataset = str(trained.get("dataset") or supernet_cfg.get("dataset", "digits"))
    data_dir = cfg.data_dir or supernet_cfg.get("data_dir")
    del trained
    supernet = load_supernet(supernet_path)
    space = supernet.space

    table, table_path = _latency_table(run_dir, out_dir, space, dataset)
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

    bundle = build_loaders(
        dataset,
        input_size=space.input_size,
        batch_size=int(supernet_cfg.get("batch_size", 64)),
        data_dir=data_dir,
        seed=int(supernet_cfg.get("seed", 0)),
    )
    few_shot = None
    if cfg.few_shot_epochs > 0:
        from nasfuse.training import train_few_shot

        few_shot = train_few_shot(supernet_path, cfg.few_shot_epochs, cfg.few_shot_site)
    scoring_started = time.perf_counter()
    supernet_scores = _score_on_supernet(
        few_shot.for_arch if few_shot else (lambda arch: supernet), picks, bundle, cfg
    )
    scoring_seconds = time.perf_counter() - scoring_started

    retrain_cfg = load_config(
        RetrainConfig,
        None,
        {
            "dataset": dataset,
            "data_dir": data_dir,
            **cfg.retrain_options,
            "epochs": cfg.epochs,
            "train_subset": cfg.train_subset,
            "seed": cfg.seed,
            "threads": 1,
            "progress": False,
        },
    )
    standalone_dir = Path(cfg.standalone_dir) if cfg.standalone_dir else out_dir / "standalone"
    training_started = time.perf_counter()
    seeds = [cfg.seed + i for i in range(cfg.seeds)]
    jobs = [[StandaloneJob.of(pick.arch, seed) for seed in seeds] for pick in picks]
    trained_metrics = train_standalone(
        space,
        [job for per_arch in jobs for job in per_arch],
        retrain_cfg,
        standalone_dir,
        cfg.ray_address,
        cfg.num_cpus,
        gpus_per_trial=cfg.gpus_per_training,
        allow_failures=True,
    )
    training_seconds = time.perf_counter() - training_started

    entries = []
    failed = []
    for pick, arch_jobs, (recalibrated, as_trained) in zip(
        picks, jobs, supernet_scores, strict=True
    ):
        runs = [trained_metrics.get(job) for job in arch_jobs]
        if any(metrics is None for metrics in runs):
            # Left out of the statistics, and named in the report.
            failed.append(
                {
                    "label": pick.label,
                    "arch_hash": pick.arch_hash,
                    "supernet_acc": recalibrated,
                    "failed_seeds": [
                        job.seed for job, m in zip(arch_jobs, runs, strict=True) if m is None
                    ],
                }
            )
            continue
        test_accs = [float(m["test_acc"]) for m in runs]
        val_accs = [float(m["val_acc"]) for m in runs]
        entries.append(
            {
                "label": pick.label,
                "arch_hash": pick.arch_hash,
                "latency_ms": pick.latency_ms,
                "supernet_acc": recalibrated,
                "supernet_acc_no_recalibration": as_trained,
                "standalone_test_acc": statistics.fmean(test_accs),
                "standalone_test_acc_std": statistics.stdev(test_accs) if len(runs) > 1 else 0.0,
                "standalone_test_acc_seeds": test_accs,
                "standalone_val_acc": statistics.fmean(val_accs),
                "params": int(runs[0]["params"]),
                "flops": int(runs[0]["flops"]),
                "train_wall_time_s": sum(float(m.get("wall_time_s", math.nan)) for m in runs),
                "arch": dict(pick.arch),
            }
        )
    if len(entries) < 2:
        raise RuntimeError(
            f"only {len(entries)} of {len(picks)} architectures finished every stand-alone "
            f"training; see {standalone_dir} (rerun to retry them)"
        )
    supernet_acc = [e["supernet_acc"] for e in entries]
    test_acc = [e["standalone_test_acc"] for e in entries]

    def compare(first: Sequence[float], k: int | None = cfg.top_k) -> RankingStats:
        return ranking_stats(first, test_acc, k, bootstrap=cfg.bootstrap, seed=cfg.seed)

    stats = compare(supernet_acc)
    seed_accs = [e["standalone_test_acc_seeds"] for e in entries]
    noise_ceiling = (
        ranking_stats(
            [a[0] for a in seed_accs],
            [a[1] for a in seed_accs],
            stats.top_k,
            bootstrap=cfg.bootstrap,
            seed=cfg.seed,
        ).to_dict()
        if cfg.seeds >= 2
        else None
    )
    halves = seed_halves(seed_accs)
    noise_ceiling_halves = (
        ranking_stats(*halves, stats.top_k, bootstrap=cfg.bootstrap, seed=cfg.seed).to_dict()
        if halves
        else None
    )
    report: dict[str, Any] = {
        "format": VALIDATION_FORMAT,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "run_dir": str(run_dir.resolve()),
        "supernet": str(supernet_path.resolve()),
        "space": space.name,
        "space_options": dict(space.options),
        "space_hash": space.hash,
        "dataset": dataset,
        "supernet_training": {
            key: supernet_cfg.get(key)
            for key in ("sampler", "epochs", "seed", "train_subset", "batch_size", "lr")
        },
        "standalone_budget": {
            "epochs": retrain_cfg.epochs,
            "train_subset": retrain_cfg.train_subset,
            "seed": retrain_cfg.seed,
            "batch_size": retrain_cfg.batch_size,
            "lr": retrain_cfg.lr,
            "options": dict(cfg.retrain_options),
            "budget_key": budget_key(space, retrain_cfg),
            "dir": str(standalone_dir.resolve()),
        },
        "latency": {
            "source": "table",
            "path": str(table_path.resolve()),
            "device": table.device,
            "batch_size": table.batch_size,
        },
        "calib_batches": cfg.calib_batches,
        "scoring": {
            "method": "+".join(
                name
                for name, used in (
                    ("few-shot", few_shot is not None),
                    ("finetune", cfg.finetune_steps > 0),
                )
                if used
            )
            or "inherited",
            "finetune_steps": cfg.finetune_steps,
            "finetune_lr": cfg.finetune_lr,
            "few_shot": (
                {
                    "site": few_shot.site,
                    "epochs": few_shot.manifest["epochs"],
                    "ops": list(few_shot.supernets),
                    # The sub-supernets' training time over the one-shot supernet's.
                    "cost_ratio": few_shot.manifest.get("cost_ratio"),
                }
                if few_shot
                else None
            ),
            # The extra cost of the scoring method, as a ratio to the supernet's training.
            "seconds": round(scoring_seconds, 2),
            "ratio_to_supernet_training": (
                round(scoring_seconds / supernet_seconds, 4) if supernet_seconds else None
            ),
        },
        "metric_pair": (
            f"supernet_acc (val, BN recalibrated) vs standalone_test_acc (mean of "
            f"{cfg.seeds} seed(s))"
        ),
        "seeds": seeds,
        "ranking": stats.to_dict(),
        "noise_ceiling": noise_ceiling,
        # With 4 or more seeds: the mean of one half of the seeds against the other's, the
        # ceiling of a ground truth that averages that many seeds.
        "noise_ceiling_halves": noise_ceiling_halves,
        "predictors": {
            # Free predictors: slower or larger networks are guessed to be more accurate.
            "latency": compare([e["latency_ms"] for e in entries], stats.top_k).to_dict(),
            "params": compare([float(e["params"]) for e in entries], stats.top_k).to_dict(),
        },
        "ranking_without_recalibration": _stats_or_none(
            [e["supernet_acc_no_recalibration"] for e in entries], test_acc, stats.top_k
        ),
        "ranking_against_standalone_val": _stats_or_none(
            supernet_acc, [e["standalone_val_acc"] for e in entries], stats.top_k
        ),
        "archs": entries,
        "failed_trainings": failed,
        "wall_time_s": {
            "supernet_scoring": round(scoring_seconds, 2),
            "standalone_training": round(training_seconds, 2),
            # Sum over the trainings' own wall times (also those reused from earlier runs).
            "standalone_trainings_sum": round(sum(e["train_wall_time_s"] for e in entries), 2),
            "total": round(time.perf_counter() - started, 2),
        },
        "machine": device_name(default_device()),
        "config": asdict(cfg),
    }
    path = out_dir / VALIDATION_FILE
    atomic_write_text(path, json.dumps(report, indent=2) + "\n")
    _write_tensorboard(out_dir / "tensorboard", report)
    return ValidationResult(path=path, ranking=stats, report=report)


def _write_tensorboard(log_dir: Path, report: Mapping[str, Any]) -> None:
    """Scatter image, statistics as scalars, and the table as text."""
    from torch.utils.tensorboard import SummaryWriter

    from nasfuse.plots import ChartSeries, chart_image

    entries = report["archs"]
    ranking = report["ranking"]
    title = (
        f"{report['space']}: supernet vs stand-alone accuracy, Kendall tau "
        f"{_number(ranking['kendall_tau'])}, Spearman rho {_number(ranking['spearman_rho'])}"
    )
    image = chart_image(
        [
            ChartSeries(
                "",
                [e["supernet_acc"] for e in entries],
                [e["standalone_test_acc"] for e in entries],
                labels=[e["label"].replace("spread-", "") for e in entries],
            )
        ],
        title=title,
        x_label="supernet accuracy (val, inherited weights, BN recalibrated)",
        y_label="stand-alone test accuracy",
    )
    with SummaryWriter(str(log_dir)) as writer:
        writer.add_image("validation/supernet_vs_standalone", image, 0, dataformats="HWC")
        for key in ("kendall_tau", "spearman_rho", "top_k_precision"):
            if ranking[key] is not None:
                writer.add_scalar(f"validation/{key}", ranking[key], 0)
        writer.add_text("validation/table", format_validation_table(report), 0)


def _number(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _interval(stats: Mapping[str, Any], key: str, digits: int = 2) -> str:
    interval = stats.get(f"{key}_ci")
    if not interval or interval[0] is None:
        return ""
    return f" [{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"


def _statistics_row(name: str, stats: Mapping[str, Any] | None) -> str:
    if not stats:
        return f"| {name} | n/a | n/a | n/a |"
    return (
        f"| {name} | {_number(stats['kendall_tau'])}{_interval(stats, 'kendall_tau')} | "
        f"{_number(stats['spearman_rho'])}{_interval(stats, 'spearman_rho')} | "
        f"{_number(stats['top_k_precision'], 2)}{_interval(stats, 'top_k_precision')} |"
    )


def seed_halves(
    seed_accs: Sequence[Sequence[float]],
) -> tuple[list[float], list[float]] | None:
    """Per architecture, the mean accuracy of the first half of its seeds and of the second.

    ``seed_accs[i]`` holds architecture i's accuracy for each seed. With n seeds (n >= 4)
    the halves are seeds ``0 .. n//2 - 1`` and ``n//2 .. 2*(n//2) - 1`` (an odd last seed is
    left out so both halves average as many). None with fewer than 4 seeds: a half of one
    seed is the seed-0-vs-seed-1 ceiling already.
    """
    count = min((len(accs) for accs in seed_accs), default=0)
    if count < 4:
        return None
    half = count // 2
    first = [statistics.fmean(accs[:half]) for accs in seed_accs]
    second = [statistics.fmean(accs[half : 2 * half]) for accs in seed_accs]
    return first, second


def _halves_label(seeds: int) -> str:
    half = seeds // 2
    return f"noise ceiling: mean of seeds 0–{half - 1} vs {half}–{2 * half - 1}"


def format_validation_table(report: Mapping[str, Any]) -> str:
    """Markdown tables of ``validation.json``: one row per architecture, then the statistics
    (the supernet, the noise ceiling and the free predictors, with their intervals)."""
    seeds = len(report.get("seeds") or [0])
    lines = [
        "| arch | hash | latency (ms) | supernet acc | supernet acc, no BN recal. | "
        f"stand-alone test acc (mean of {seeds} seed(s)) | ± std | params |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for entry in sorted(report["archs"], key=lambda e: e["latency_ms"]):
        lines.append(
            f"| {entry['label']} | {entry['arch_hash'][:8]} | {entry['latency_ms']:.3f} | "
            f"{entry['supernet_acc']:.4f} | {entry['supernet_acc_no_recalibration']:.4f} | "
            f"{entry['standalone_test_acc']:.4f} | "
            f"{entry.get('standalone_test_acc_std', 0.0):.4f} | {entry['params']:,} |"
        )
    ranking = report["ranking"]
    level = ranking.get("ci_level")
    predictors = report.get("predictors") or {}
    lines += [
        "",
        f"| ranking against the stand-alone mean ({ranking['count']} architectures"
        + (f", {level:.0%} bootstrap intervals" if level else "")
        + f") | Kendall τ | Spearman ρ | top-{ranking['top_k']} precision |",
        "|---|---|---|---|",
        _statistics_row("supernet, BN recalibrated", ranking),
        _statistics_row(
            "supernet, no BN recalibration", report.get("ranking_without_recalibration")
        ),
        _statistics_row("noise ceiling: seed 0 vs seed 1", report.get("noise_ceiling")),
        *(
            [_statistics_row(_halves_label(seeds), report["noise_ceiling_halves"])]
            if report.get("noise_ceiling_halves")
            else []
        ),
        _statistics_row("predicted latency (slower = better)", predictors.get("latency")),
        _statistics_row("parameter count (larger = better)", predictors.get("params")),
        "",
        f"Kendall τ p-value {_number(ranking['kendall_p'], 3)}. "
        f"Latency predicted by the table measured on {report['latency']['device']}.",
    ]
    ceiling = (report.get("noise_ceiling") or {}).get("kendall_tau")
    if ceiling is not None and ranking["kendall_tau"] is not None and ceiling > 0:
        lines.append(
            f"The supernet's τ is {ranking['kendall_tau'] / ceiling:.0%} of the noise ceiling."
        )
    failed = report.get("failed_trainings") or []
    if failed:
        lines.append(
            f"Stand-alone training did not finish for {', '.join(f['label'] for f in failed)} "
            "(left out of the statistics)."
        )
    return "\n".join(lines)
