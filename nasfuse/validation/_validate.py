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

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasfuse.training.evaluation import DEFAULT_FINETUNE_LR
from nasfuse.validation._ranking import RankingStats
from nasfuse.validation._report import (
    VALIDATION_FILE,
    build_report,
    format_validation_table,
    write_report,
)
from nasfuse.validation._stages import (
    find_supernet,
    load_run,
    pick_archs,
    score_on_supernet,
    train_ground_truth,
)
from nasfuse.validation._statistics import (
    collect_entries,
    validation_statistics,
)
from nasfuse.validation._statistics import (
    seed_halves as seed_halves,  # importable from here as before (the tests use it)
)

__all__ = [
    "VALIDATION_FILE",
    "ValidationConfig",
    "ValidationResult",
    "find_supernet",
    "format_validation_table",
    "validate_supernet",
]


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
        latency_table: the latency table that places the picks (checked against the
            space); None: the supernet run's, else one in ``<out>``, else one built there.
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
    latency_table: str | None = None
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
    started = time.perf_counter()
    cfg = cfg or ValidationConfig()
    run = load_run(run_dir, cfg, out_dir)
    picked = pick_archs(run, cfg)
    scored = score_on_supernet(run, picked.picks, cfg)
    truth = train_ground_truth(run, picked.picks, cfg)
    entries, failed = collect_entries(picked.picks, truth.jobs, scored.scores, truth.metrics)
    if len(entries) < 2:
        raise RuntimeError(
            f"only {len(entries)} of {len(picked.picks)} architectures finished every "
            f"stand-alone training; see {truth.standalone_dir} (rerun to retry them)"
        )
    ranking, sections = validation_statistics(
        entries, cfg.seeds, cfg.top_k, cfg.bootstrap, cfg.seed
    )
    report = build_report(run, cfg, picked, scored, truth, entries, failed, sections, started)
    path = write_report(run.out_dir, report)
    return ValidationResult(path=path, ranking=ranking, report=report)
