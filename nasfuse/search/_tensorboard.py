"""TensorBoard for a search, written by the driver with ``torch.utils.tensorboard``.

Under ``<run>/tensorboard``:
- ``trial/accuracy``, ``trial/latency_ms``, ``trial/params``, ``trial/flops`` per trial
  (step = Optuna trial number) for every trial with objective values;
- ``search/hypervolume`` (normalised, see :func:`nasfuse.search._pareto.hypervolume`) and
  ``search/front_size`` after every counted trial (step = trials counted so far);
- one HParams session per trial (sub-run ``trials/<number>``), its hparams the site -> op
  choices plus ``status``, its metrics ``hparam/accuracy``, ``hparam/latency_ms``,
  ``hparam/params``, ``hparam/flops`` (NaN for failed and infeasible trials);
- ``pareto/scatter``: an image of accuracy vs latency, the front in red;
- ``op_choice/<site>``: a histogram of the op index chosen at each site over evaluated trials,
  and ``op_choice/front`` text: op counts per site across the front.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import optuna

from nasfuse.search._pareto import hypervolume, pareto_front
from nasfuse.search._study import TrialRecord, front_records, record_from_trial

__all__ = ["SearchRecorder", "draw_scatter", "TENSORBOARD_DIR"]

TENSORBOARD_DIR = "tensorboard"


def draw_scatter(
    points: Sequence[tuple[float, float]],
    front: Sequence[int],
    infeasible: Sequence[tuple[float, float]] = (),
    size: tuple[int, int] = (640, 440),
    title: str = "",
) -> np.ndarray:
    """Accuracy (y) vs latency (x) as an RGB image; front points red and joined.

    Args:
        points: ``(accuracy, latency_ms)`` of the evaluated architectures.
        front: indices into ``points`` of the Pareto front.
        infeasible: latencies (with sentinel accuracy) of infeasible suggestions, drawn
            grey on the lowest accuracy shown.

    Returns:
        uint8 array of shape (H, W, 3).
    """
    from nasfuse.plots import ChartSeries, chart_image

    series = []
    if points:
        floor = min(acc for acc, _ in points)
        if infeasible:
            series.append(
                ChartSeries(
                    "infeasible",
                    [lat for _, lat in infeasible],
                    [floor] * len(infeasible),
                    color=(150, 150, 150),
                )
            )
        series.append(
            ChartSeries(
                "evaluated",
                [lat for _, lat in points],
                [acc for acc, _ in points],
                color=(70, 110, 200),
            )
        )
        front_points = [points[i] for i in front]
        front_lat = [lat for _, lat in front_points]
        front_acc = [acc for acc, _ in front_points]
        series.append(ChartSeries("", front_lat, front_acc, lines=True, color=(220, 40, 40)))
        series.append(ChartSeries("Pareto front", front_lat, front_acc, color=(220, 40, 40)))
    return chart_image(
        series,
        title=title or "accuracy vs latency (red: Pareto front)",
        x_label="latency (ms)",
        y_label="accuracy",
        size=size,
    )


def op_counts(
    records: Sequence[TrialRecord], sites: Mapping[str, Sequence[str]]
) -> dict[str, Counter]:
    """Per site, how often each op was chosen among ``records``."""
    counts = {site: Counter() for site in sites}
    for record in records:
        for site, op in record.arch.items():
            counts.setdefault(site, Counter())[op] += 1
    return counts


class SearchRecorder:
    """Listener of :class:`~nasfuse.search._searcher.FusionSearcher`: writes TensorBoard.

    Args:
        run_dir: the run directory (events go to ``run_dir/tensorboard``).
        sites: site -> allowed ops (the order fixes the histogram's op indices).
        reference_latency_ms: the hypervolume's reference latency.
        existing: trials already in the study (resume), so curves continue.
        image_every: write the scatter and histograms every this many counted trials.
    """

    def __init__(
        self,
        run_dir: str | Path,
        sites: Mapping[str, Sequence[str]],
        reference_latency_ms: float,
        existing: Sequence[optuna.trial.FrozenTrial] = (),
        image_every: int = 5,
    ) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(run_dir) / TENSORBOARD_DIR
        self.writer = SummaryWriter(log_dir=str(self.log_dir))
        self.sites = {k: list(v) for k, v in sites.items()}
        self.reference_latency_ms = float(reference_latency_ms)
        self.image_every = max(1, image_every)
        self.records: list[TrialRecord] = [record_from_trial(t) for t in existing]
        self.counted = sum(r.status != "interrupted" for r in self.records)

    def __call__(self, trial: optuna.trial.FrozenTrial) -> None:
        record = record_from_trial(trial)
        self.records.append(record)
        self.counted += 1
        if record.on_objectives:
            self.writer.add_scalar("trial/accuracy", record.accuracy, record.number)
            self.writer.add_scalar("trial/latency_ms", record.latency_ms, record.number)
            if record.params is not None:
                self.writer.add_scalar("trial/params", record.params, record.number)
            if record.flops is not None:
                self.writer.add_scalar("trial/flops", record.flops, record.number)
        self._write_hparams(record)
        points = self._points()
        self.writer.add_scalar(
            "search/hypervolume", hypervolume(points, self.reference_latency_ms), self.counted
        )
        self.writer.add_scalar("search/front_size", len(pareto_front(points)), self.counted)
        if self.counted % self.image_every == 0:
            self.write_images()
        self.writer.flush()

    def _points(self) -> list[tuple[float, float]]:
        return [(r.accuracy, r.latency_ms) for r in self.records if r.on_objectives]  # type: ignore[misc]

    def _write_hparams(self, record: TrialRecord) -> None:
        def metric(value: float | int | None) -> float:
            return float(value) if value is not None and record.on_objectives else math.nan

        hparams: dict[str, str | float] = {site: record.arch.get(site, "") for site in self.sites}
        hparams["status"] = record.status
        hparams["trial"] = float(record.number)
        metrics = {
            "hparam/accuracy": metric(record.accuracy),
            "hparam/latency_ms": metric(record.latency_ms),
            "hparam/params": float(record.params) if record.params is not None else math.nan,
            "hparam/flops": metric(record.flops),
        }
        domains = {site: list(ops) for site, ops in self.sites.items()}
        domains["status"] = ["evaluated", "cached", "infeasible", "failed"]
        self.writer.add_hparams(
            hparams,
            metrics,
            hparam_domain_discrete=domains,
            run_name=f"trials/{record.number:05d}",
            global_step=record.number,
        )

    def write_images(self) -> None:
        """The scatter, the op-choice histograms and the front's op-count table, now."""
        step = self.counted
        evaluated = [r for r in self.records if r.on_objectives]
        points = self._points()
        infeasible = [(0.0, r.latency_ms) for r in self.records if r.status == "infeasible"]
        scatter = draw_scatter(points, pareto_front(points), infeasible)  # type: ignore[arg-type]
        self.writer.add_image("pareto/scatter", scatter, step, dataformats="HWC")
        counts = op_counts(evaluated, self.sites)
        for site, ops in self.sites.items():
            bucket_counts = [counts[site][op] for op in ops]
            total = sum(bucket_counts)
            if total == 0:
                continue
            indices = np.repeat(np.arange(len(ops), dtype=float), bucket_counts)
            self.writer.add_histogram_raw(
                f"op_choice/{site}",
                min=float(indices.min()),
                max=float(indices.max()),
                num=total,
                sum=float(indices.sum()),
                sum_squares=float((indices**2).sum()),
                bucket_limits=[i + 0.5 for i in range(len(ops))],
                bucket_counts=bucket_counts,
                global_step=step,
            )
        front = front_records(self.records)
        front_counts = op_counts(front, self.sites)
        lines = ["| site | " + " | ".join(["op counts across the front"]) + " |", "|---|---|"]
        for site in self.sites:
            text = ", ".join(f"{op} {n}" for op, n in front_counts[site].most_common())
            lines.append(f"| {site} | {text} |")
        self.writer.add_text("op_choice/front", "\n".join(lines), step)

    def close(self) -> None:
        self.write_images()
        self.writer.flush()
        self.writer.close()
