"""What ``validate-supernet`` writes: ``validation.json``, its Markdown table, TensorBoard.

:func:`build_report` assembles ``validation.json`` from the stages' records,
:func:`write_report` writes it with the TensorBoard scatter image beside it, and
:func:`format_validation_table` turns a report (also one read back from disk) into tables.
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasfuse.files import atomic_write_text
from nasfuse.validation._stages import GroundTruth, LoadedRun, Picks, SupernetScores
from nasfuse.validation._standalone import budget_key

if TYPE_CHECKING:
    from nasfuse.validation._validate import ValidationConfig

__all__ = ["VALIDATION_FILE", "build_report", "format_validation_table", "write_report"]

VALIDATION_FILE = "validation.json"
VALIDATION_FORMAT = "nasfuse-validation/1"


def build_report(
    run: LoadedRun,
    cfg: ValidationConfig,
    picked: Picks,
    scored: SupernetScores,
    truth: GroundTruth,
    entries: list[dict[str, Any]],
    failed: list[dict[str, Any]],
    sections: Mapping[str, Any],
    started: float,
) -> dict[str, Any]:
    """The contents of ``validation.json``; ``sections`` are the statistics of
    :func:`~nasfuse.validation._statistics.validation_statistics`, ``started`` the
    :func:`time.perf_counter` at which the validation began (for the total wall time)."""
    from nasfuse.runtime import default_device, device_name

    space = run.space
    return {
        "format": VALIDATION_FORMAT,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "run_dir": str(run.run_dir.resolve()),
        "supernet": str(run.supernet_path.resolve()),
        "space": space.name,
        "space_options": dict(space.options),
        "space_hash": space.hash,
        "dataset": run.dataset,
        "supernet_training": {
            key: run.supernet_cfg.get(key)
            for key in ("sampler", "epochs", "seed", "train_subset", "batch_size", "lr")
        },
        "standalone_budget": _standalone_budget(space, cfg, truth),
        "latency": {
            "source": "table",
            "path": str(picked.table_path.resolve()),
            "device": picked.table.device,
            "batch_size": picked.table.batch_size,
        },
        "calib_batches": cfg.calib_batches,
        "scoring": _scoring(cfg, scored, run.supernet_seconds),
        "metric_pair": (
            f"supernet_acc (val, BN recalibrated) vs standalone_test_acc (mean of "
            f"{cfg.seeds} seed(s))"
        ),
        "seeds": truth.seeds,
        **sections,
        "archs": entries,
        "failed_trainings": failed,
        "wall_time_s": {
            "supernet_scoring": round(scored.seconds, 2),
            "standalone_training": round(truth.seconds, 2),
            # Sum over the trainings' own wall times (also those reused from earlier runs).
            "standalone_trainings_sum": round(sum(e["train_wall_time_s"] for e in entries), 2),
            "total": round(time.perf_counter() - started, 2),
        },
        "machine": device_name(default_device()),
        "config": asdict(cfg),
    }


def _standalone_budget(space: Any, cfg: ValidationConfig, truth: GroundTruth) -> dict[str, Any]:
    retrain_cfg = truth.retrain_cfg
    return {
        "epochs": retrain_cfg.epochs,
        "train_subset": retrain_cfg.train_subset,
        "seed": retrain_cfg.seed,
        "batch_size": retrain_cfg.batch_size,
        "lr": retrain_cfg.lr,
        "options": dict(cfg.retrain_options),
        "budget_key": budget_key(space, retrain_cfg),
        "dir": str(truth.standalone_dir.resolve()),
    }


def _scoring(
    cfg: ValidationConfig, scored: SupernetScores, supernet_seconds: float
) -> dict[str, Any]:
    few_shot = scored.few_shot
    return {
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
        "seconds": round(scored.seconds, 2),
        "ratio_to_supernet_training": (
            round(scored.seconds / supernet_seconds, 4) if supernet_seconds else None
        ),
    }


def write_report(out_dir: Path, report: Mapping[str, Any]) -> Path:
    """Write ``validation.json`` and the TensorBoard logs into ``out_dir``; the json's path."""
    path = out_dir / VALIDATION_FILE
    atomic_write_text(path, json.dumps(report, indent=2) + "\n")
    _write_tensorboard(out_dir / "tensorboard", report)
    return path


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
