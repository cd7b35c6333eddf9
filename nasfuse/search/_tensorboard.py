"""TensorBoard for a search, written by the driver with ``torch.utils.tensorboard``.

Under ``<run>/tensorboard``:
- ``trial/accuracy``, ``trial/latency_ms``, ``trial/params``, ``trial/flops`` per trial
  (step = Optuna trial number) for every trial with objective values;
- ``search/hypervolume`` (normalised, see :func:`nasfuse.search._pareto.hypervolume`) and
  ``search/front_size`` after every counted trial (step = trials counted so far);
- one HParams session per trial (sub-run ``trials/<number>``), its hparams the site -> op
  choices plus ``status``, its metrics ``hparam/accuracy``, ``hparam/latency_ms``,
  ``hparam/params``, ``hparam/flops`` (NaN for failed and infeasible trials);
- ``pareto/scatter``: an image (960x640) of accuracy vs latency, the front in red, the
  uniform networks labelled, and after export the pick (``best.yaml``) as a green star;
- ``op_choice/evaluated`` and ``op_choice/front``: text tables, a row per site and a column
  per op named, of how often each op was chosen over the evaluated trials and the front;
- ``verdict`` (written by the export): is fusion worth it here? (see
  :mod:`nasfuse.search._verdict`).

Ray Tune's own TensorBoard logger is switched off while the search runs
(:func:`nasfuse.search._ray.without_ray_tensorboard`), so ``tensorboard --logdir runs/``
shows these alone.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import optuna

from nasfuse.plots import ChartSeries, chart_image
from nasfuse.search._pareto import hypervolume, pareto_front
from nasfuse.search._study import COUNTED_STATUSES, TrialRecord, front_records, record_from_trial

__all__ = [
    "SearchRecorder",
    "draw_scatter",
    "op_count_markdown",
    "scatter_of",
    "write_verdict",
    "TENSORBOARD_DIR",
]

TENSORBOARD_DIR = "tensorboard"


def draw_scatter(
    points: Sequence[tuple[float, float]],
    front: Sequence[int],
    infeasible: Sequence[tuple[float, float]] = (),
    size: tuple[int, int] = (960, 640),
    title: str = "",
    baselines: Sequence[tuple[str, float, float]] = (),
    pick: tuple[float, float] | None = None,
) -> np.ndarray:
    """Accuracy (y) vs latency (x) as an RGB image; the front red and joined.

    Args:
        points: ``(accuracy, latency_ms)`` of the evaluated architectures.
        front: indices into ``points`` of the Pareto front.
        infeasible: latencies (with sentinel accuracy) of infeasible suggestions, drawn
            grey on the lowest accuracy shown.
        size: ``(width, height)``; TensorBoard shows the image at this size.
        baselines: ``(name, accuracy, latency_ms)`` of the uniform networks, drawn as
            labelled black squares.
        pick: ``(accuracy, latency_ms)`` of ``best.yaml``, drawn as a green star.

    Returns:
        uint8 array of shape (H, W, 3).
    """
    series = []
    if points:
        series = _front_series(points, front, infeasible)
        if baselines:
            series.append(_baseline_series(baselines))
        if pick is not None:
            series.append(_pick_series(pick))
    return chart_image(
        series,
        title=title or "accuracy vs latency: Pareto front (red), uniform networks, pick",
        x_label="latency (ms)",
        y_label="accuracy",
        size=size,
    )


def _front_series(
    points: Sequence[tuple[float, float]],
    front: Sequence[int],
    infeasible: Sequence[tuple[float, float]],
) -> list[ChartSeries]:
    """The infeasible suggestions (grey, on the lowest accuracy shown), the evaluated
    architectures (blue) and the Pareto front (red, joined), bottom to top."""
    series = []
    if infeasible:
        floor = min(acc for acc, _ in points)
        series.append(
            ChartSeries(
                "infeasible (not evaluated)",
                [lat for _, lat in infeasible],
                [floor] * len(infeasible),
                color=(160, 160, 160),
                marker="diamond",
            )
        )
    series.append(
        ChartSeries(
            "evaluated",
            [lat for _, lat in points],
            [acc for acc, _ in points],
            color=(70, 110, 200),
            marker_size=3.5,
        )
    )
    front_points = [points[i] for i in front]
    front_lat = [lat for _, lat in front_points]
    front_acc = [acc for acc, _ in front_points]
    series.append(ChartSeries("", front_lat, front_acc, lines=True, color=(220, 40, 40)))
    series.append(
        ChartSeries(
            "Pareto front", front_lat, front_acc, color=(220, 40, 40), marker_size=5, filled=True
        )
    )
    return series


def _baseline_series(baselines: Sequence[tuple[str, float, float]]) -> ChartSeries:
    """The uniform networks: labelled black squares."""
    return ChartSeries(
        "uniform networks",
        [lat for _, _, lat in baselines],
        [acc for _, acc, _ in baselines],
        labels=[name for name, _, _ in baselines],
        color=(0, 0, 0),
        marker="square",
        marker_size=5,
    )


def _pick_series(pick: tuple[float, float]) -> ChartSeries:
    """The pick (``best.yaml``): a green star."""
    return ChartSeries(
        "pick (best.yaml)",
        [pick[1]],
        [pick[0]],
        color=(20, 150, 40),
        marker="star",
        marker_size=6,
        filled=True,
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


def op_count_markdown(records: Sequence[TrialRecord], sites: Mapping[str, Sequence[str]]) -> str:
    """A markdown table: one row per site, one column per op, how often it was chosen."""
    ops: list[str] = []
    for allowed in sites.values():
        ops.extend(op for op in allowed if op not in ops)
    counts = op_counts(records, sites)
    lines = ["| site | " + " | ".join(ops) + " |", "|---|" + "---:|" * len(ops)]
    for site, allowed in sites.items():
        cells = [str(counts[site][op]) if op in allowed else "·" for op in ops]
        lines.append(f"| {site} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def scatter_of(records: Sequence[TrialRecord], pick: TrialRecord | None = None) -> np.ndarray:
    """:func:`draw_scatter` of a study's records: front, infeasible ones, uniform networks."""
    unique: dict[str, TrialRecord] = {}
    for record in records:
        if record.on_objectives:
            unique.setdefault(record.arch_hash, record)
    scored = list(unique.values())
    points = [(r.accuracy, r.latency_ms) for r in scored]
    infeasible = [(0.0, r.latency_ms) for r in records if r.status == "infeasible"]
    baselines = [
        (r.baseline, r.accuracy, r.latency_ms) for r in scored if r.baseline_kind == "uniform"
    ]
    return draw_scatter(
        points,  # type: ignore[arg-type]
        pareto_front(points),  # type: ignore[arg-type]
        infeasible,  # type: ignore[arg-type]
        baselines=baselines,  # type: ignore[arg-type]
        pick=(pick.accuracy, pick.latency_ms) if pick is not None else None,  # type: ignore[arg-type]
    )


def write_verdict(
    run_dir: str | Path, records: Sequence[TrialRecord], pick: TrialRecord, verdict_md: str
) -> None:
    """After export: the verdict as text and the scatter with the pick, at the last step."""
    from torch.utils.tensorboard import SummaryWriter

    step = sum(r.status in COUNTED_STATUSES for r in records)
    with SummaryWriter(log_dir=str(Path(run_dir) / TENSORBOARD_DIR)) as writer:
        writer.add_text("verdict", verdict_md, step)
        writer.add_image("pareto/scatter", scatter_of(records, pick), step, dataformats="HWC")


class SearchRecorder:
    """Listener of :class:`~nasfuse.search._searcher.FusionSearcher`: writes TensorBoard.

    Args:
        run_dir: the run directory (events go to ``run_dir/tensorboard``).
        sites: site -> allowed ops (the order of the op-choice tables' columns).
        reference_latency_ms: the hypervolume's reference latency.
        existing: trials already in the study (resume), so curves continue.
        image_every: write the scatter and op-choice tables every this many counted trials.
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
        self.counted = sum(r.status in COUNTED_STATUSES for r in self.records)

    def __call__(self, trial: optuna.trial.FrozenTrial) -> None:
        record = record_from_trial(trial)
        if record.status not in COUNTED_STATUSES:  # cut short or surplus: re-run or dropped
            return
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
        """The scatter and the op-choice tables (evaluated trials, the front), now."""
        step = self.counted
        evaluated = [r for r in self.records if r.on_objectives]
        self.writer.add_image("pareto/scatter", scatter_of(self.records), step, dataformats="HWC")
        front = front_records(self.records)
        for tag, chosen, what in (
            ("op_choice/evaluated", evaluated, f"{len(evaluated)} evaluated architectures"),
            ("op_choice/front", front, f"the {len(front)} architectures on the Pareto front"),
        ):
            table = op_count_markdown(chosen, self.sites)
            self.writer.add_text(tag, f"Ops chosen per site across {what}.\n\n{table}", step)

    def close(self) -> None:
        self.write_images()
        self.writer.flush()
        self.writer.close()
