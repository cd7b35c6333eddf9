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
        infeasible: latencies (with sentinel accuracy) of infeasible suggestions, drawn as
            grey crosses on the x axis.

    Returns:
        uint8 array of shape (H, W, 3).
    """
    from PIL import Image, ImageDraw

    width, height = size
    left, right, top, bottom = 64, 16, 28, 44
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    all_lat = [p[1] for p in points] + [p[1] for p in infeasible]
    accs = [p[0] for p in points]
    if not all_lat:
        draw.text((left, top), "no evaluated trials yet", fill="black")
        return np.asarray(image)
    lat_lo, lat_hi = min(all_lat), max(all_lat)
    acc_lo, acc_hi = (min(accs), max(accs)) if accs else (0.0, 1.0)
    lat_pad = (lat_hi - lat_lo) * 0.05 or max(lat_hi * 0.05, 1e-3)
    acc_pad = (acc_hi - acc_lo) * 0.05 or 0.01
    lat_lo, lat_hi = lat_lo - lat_pad, lat_hi + lat_pad
    acc_lo, acc_hi = acc_lo - acc_pad, acc_hi + acc_pad

    def to_xy(acc: float, lat: float) -> tuple[float, float]:
        x = left + (lat - lat_lo) / (lat_hi - lat_lo) * (width - left - right)
        y = height - bottom - (acc - acc_lo) / (acc_hi - acc_lo) * (height - top - bottom)
        return x, y

    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    for i in range(5):
        lat = lat_lo + (lat_hi - lat_lo) * i / 4
        acc = acc_lo + (acc_hi - acc_lo) * i / 4
        x, _ = to_xy(acc_lo, lat)
        _, y = to_xy(acc, lat_lo)
        draw.line([x, height - bottom, x, height - bottom + 4], fill="black")
        draw.text((x - 14, height - bottom + 6), f"{lat:.3g}", fill="black")
        draw.line([left - 4, y, left, y], fill="black")
        draw.text((4, y - 6), f"{acc:.3f}", fill="black")
    draw.text((width // 2 - 40, height - 16), "latency (ms)", fill="black")
    draw.text((left, 8), title or "accuracy vs latency (red: Pareto front)", fill="black")
    for _acc, lat in infeasible:
        x, y = to_xy(acc_lo, lat)
        draw.line([x - 3, y - 3, x + 3, y + 3], fill=(150, 150, 150))
        draw.line([x - 3, y + 3, x + 3, y - 3], fill=(150, 150, 150))
    for acc, lat in points:
        x, y = to_xy(acc, lat)
        draw.ellipse([x - 3, y - 3, x + 3, y + 3], outline=(70, 110, 200))
    front_xy = [to_xy(*points[i]) for i in front]
    if len(front_xy) > 1:
        steps = []
        for (x0, y0), (x1, _y1) in zip(front_xy, front_xy[1:], strict=False):
            steps += [(x0, y0), (x1, y0)]
        steps.append(front_xy[-1])
        draw.line(steps, fill=(220, 40, 40), width=1)
    for x, y in front_xy:
        draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=(220, 40, 40))
    return np.asarray(image)


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
