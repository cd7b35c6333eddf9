"""The per-architecture rows of ``validation.json`` and the statistics computed from them.

:func:`collect_entries` joins each pick's supernet scores with its stand-alone trainings
(an architecture with a failed training goes to ``failed_trainings`` instead);
:func:`validation_statistics` compares the rankings: the supernet against the seeds' mean,
the noise ceilings of the ground truth against itself, and the free predictors.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from nasfuse.validation._picking import PickedArch
from nasfuse.validation._ranking import RankingStats, ranking_stats
from nasfuse.validation._standalone import StandaloneJob

__all__ = ["collect_entries", "seed_halves", "validation_statistics"]


def collect_entries(
    picks: Sequence[PickedArch],
    jobs: Sequence[Sequence[StandaloneJob]],
    supernet_scores: Sequence[tuple[float, float]],
    trained_metrics: Mapping[StandaloneJob, Mapping[str, Any] | None],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(entries, failed)``: one entry per architecture whose every seed finished, and one
    record per architecture with a failed training (left out of the statistics, and named
    in the report so that a rerun's retry can be checked)."""
    entries = []
    failed = []
    for pick, arch_jobs, (recalibrated, as_trained) in zip(
        picks, jobs, supernet_scores, strict=True
    ):
        runs = [trained_metrics.get(job) for job in arch_jobs]
        if any(metrics is None for metrics in runs):
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
        entries.append(_entry(pick, recalibrated, as_trained, runs))
    return entries, failed


def _entry(
    pick: PickedArch, recalibrated: float, as_trained: float, runs: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """One architecture's row: its supernet scores and its seeds' stand-alone metrics."""
    test_accs = [float(m["test_acc"]) for m in runs]
    val_accs = [float(m["val_acc"]) for m in runs]
    return {
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


def validation_statistics(
    entries: Sequence[Mapping[str, Any]],
    seeds: int,
    top_k: int | None,
    bootstrap: int,
    seed: int,
) -> tuple[RankingStats, dict[str, Any]]:
    """``(ranking, sections)``: the supernet's ranking against the seeds' mean accuracy, and
    the report's statistics sections in the order ``validation.json`` lists them.

    Args:
        entries: the rows of :func:`collect_entries` (at least 2).
        seeds: stand-alone trainings per architecture.
        top_k: k of the top-k precision; None: the default of :func:`ranking_stats`.
        bootstrap: resamples for the intervals.
        seed: seeds the resampling.
    """
    supernet_acc = [e["supernet_acc"] for e in entries]
    test_acc = [e["standalone_test_acc"] for e in entries]

    def compare(first: Sequence[float], k: int | None = top_k) -> RankingStats:
        return ranking_stats(first, test_acc, k, bootstrap=bootstrap, seed=seed)

    stats = compare(supernet_acc)
    seed_accs = [e["standalone_test_acc_seeds"] for e in entries]
    noise_ceiling = (
        ranking_stats(
            [a[0] for a in seed_accs],
            [a[1] for a in seed_accs],
            stats.top_k,
            bootstrap=bootstrap,
            seed=seed,
        ).to_dict()
        if seeds >= 2
        else None
    )
    halves = seed_halves(seed_accs)
    noise_ceiling_halves = (
        ranking_stats(*halves, stats.top_k, bootstrap=bootstrap, seed=seed).to_dict()
        if halves
        else None
    )
    sections = {
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
    }
    return stats, sections


def _stats_or_none(first: Sequence[float], second: Sequence[float], k: int | None) -> Any:
    return ranking_stats(first, second, k).to_dict() if len(first) >= 2 else None


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
