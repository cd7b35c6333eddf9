"""Measuring how long one forward pass takes, the way a careful engineer would.

Eval mode, ``torch.inference_mode()``, warm-up runs first, then many timed runs whose
median and spread are reported. On CUDA each run is timed with a pair of CUDA events and
the device is synchronised before the times are read; on the CPU each run is timed with
the monotonic ``time.perf_counter_ns`` under a fixed, recorded thread count.

On a CPU shared with other busy processes, wall-clock times mostly measure the others'
load. ``clock="thread"`` times the CPU time of the measuring thread instead
(``time.thread_time_ns``; one torch thread only, so that all the work runs in it): not
the latency a user sees, but a far steadier estimate of the work, for comparing
predictions with measurements on a busy machine. Wall clock is the default everywhere.

A host whose speed drifts defeats both clocks: :func:`~nasfuse.latency.ratio.measure_ratio`
times a model against a reference network instead. The setup both share is in
:mod:`nasfuse.latency.passes`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

# The setup and the ratio benchmark live in their own modules; their names stay
# importable from this one, where they were first.
from nasfuse.latency.passes import (
    CLOCKS,
    ModelInputs,
    check_options,
    device_name_at,
    example_inputs,
    first_shape,
    measuring,
    pause_collector,
    thread_count,
    time_runs,
)
from nasfuse.latency.ratio import RatioStats, measure_ratio

__all__ = [
    "CLOCKS",
    "LatencyStats",
    "ModelInputs",
    "RatioStats",
    "measure_latency",
    "measure_ratio",
    "thread_count",
    "device_name_at",
]


@dataclass(frozen=True)
class LatencyStats:
    """Latency of one forward pass, over ``runs`` timed runs.

    Attributes:
        median_ms: median time of one forward pass, in milliseconds.
        p10_ms: 10th percentile (ms).
        p90_ms: 90th percentile (ms).
        mean_ms: mean (ms); pulled up by outliers, so prefer the median.
        runs: number of timed runs.
        batch_size: B of the input(s).
        input_shape: shape of the (first) input, ``(B, C, H, W)``.
        device: readable name of the hardware (``nasfuse.runtime.device_name``).
        threads: torch intra-op threads in use while measuring.
        clock: ``"wall"`` (elapsed time; CUDA events on a GPU) or ``"thread"`` (CPU time
            of the measuring thread).
    """

    median_ms: float
    p10_ms: float
    p90_ms: float
    mean_ms: float
    runs: int
    batch_size: int
    input_shape: tuple[int, ...]
    device: str
    threads: int
    clock: str = "wall"

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON/YAML."""
        data = asdict(self)
        data["input_shape"] = list(self.input_shape)
        return data

    def __str__(self) -> str:
        return (
            f"{self.median_ms:.3f} ms median (p10 {self.p10_ms:.3f}, p90 {self.p90_ms:.3f}; "
            f"{self.runs} runs, batch {self.batch_size}"
            f"{'' if self.clock == 'wall' else ', thread CPU time'}) on {self.device}"
        )


def measure_latency(
    model: nn.Module,
    input_shape: Sequence[int] | None = None,
    device: str | torch.device | None = None,
    warmup: int = 10,
    runs: int = 50,
    channels_last: bool = False,
    threads: int | None = None,
    inputs: ModelInputs | None = None,
    dtype: torch.dtype = torch.float32,
    clock: str = "wall",
) -> LatencyStats:
    """Time ``model``'s forward pass on ``device``.

    The model is moved to ``device``, put in eval mode, run ``warmup`` times, then timed
    ``runs`` times under ``torch.inference_mode()``; afterwards it goes back to the device
    and train/eval mode it came with, so only one model occupies the target device at a
    time. Python's garbage collector is paused during the timed runs.

    Args:
        model: the module; called as ``model(x)``.
        input_shape: ``(B, C, H, W)`` of a random input, when ``inputs`` is not given.
        device: target device; default ``nasfuse.runtime.default_device()``.
        warmup: untimed runs first (allocator, caches, cuDNN autotuning).
        runs: timed runs.
        channels_last: run model and 4-D inputs in ``torch.channels_last`` memory format.
        threads: torch intra-op threads while measuring (restored afterwards); default the
            current count. Recorded in the result and in the device name on the CPU.
        inputs: instead of ``input_shape``: a tensor, a list of tensors (a fusion op
            takes K tensors of ``(B, C, H, W)``), or a factory ``f(device)`` returning one.
        dtype: dtype of the random input made from ``input_shape``.
        clock: ``"wall"`` (default) or ``"thread"``: CPU time of the measuring thread, for
            a busy shared CPU; needs ``device`` CPU and one thread.

    Returns:
        :class:`LatencyStats` in milliseconds.

    Example:
        >>> stats = measure_latency(model, (32, 3, 32, 32), runs=30, threads=1)
        >>> print(stats)  # 12.345 ms median (p10 ..., p90 ...; 30 runs, batch 32) on cpu:...
    """
    target = check_options(runs, warmup, device, clock)
    name = device_name_at(target, threads)
    with measuring([model], target, threads, channels_last, clock) as used_threads:
        example = example_inputs(input_shape, inputs, dtype, target, channels_last)
        shape = first_shape(example)

        def forward() -> Any:
            return model(example)

        for _ in range(warmup):
            forward()
        pause_collector()
        times_ms = time_runs(forward, runs, target, clock)
        example = None  # drop the device copies before the cache is emptied

    times = np.asarray(times_ms, dtype=np.float64)
    p10, median, p90 = np.percentile(times, [10, 50, 90])
    return LatencyStats(
        median_ms=float(median),
        p10_ms=float(p10),
        p90_ms=float(p90),
        mean_ms=float(times.mean()),
        runs=runs,
        batch_size=int(shape[0]) if shape else 1,
        input_shape=shape,
        device=name,
        threads=used_threads,
        clock=clock,
    )
