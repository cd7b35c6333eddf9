"""Timing a model against a reference network, one forward pass of each in turn.

A host whose speed drifts (a shared VM: here, the thread's CPU time equalled its wall time
while one network's forward pass wandered between 500 and 660 ms) defeats both clocks of
:func:`~nasfuse.latency.measure.measure_latency`. :func:`measure_ratio` reports the ratio
of the model's time to the reference's, which neighbouring runs share even when the speed
drifts; the latency table measures every network that way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from nasfuse.latency.passes import (
    ModelInputs,
    check_options,
    device_name_at,
    example_inputs,
    measuring,
    pause_collector,
    time_runs,
)

__all__ = ["RatioStats", "measure_ratio"]


@dataclass(frozen=True)
class RatioStats:
    """How much longer a model's forward pass takes than a reference's, timed alternately.

    Attributes:
        ratio: median over the runs of ``model time / mean of the reference times either
            side of it``.
        p10, p90: 10th and 90th percentiles of those ratios.
        model_ms: median time of the model's runs (ms, not corrected).
        reference_ms: median time of the reference's runs (ms).
        runs: timed runs of the model (the reference ran one more).
        device, threads, clock: as in :class:`LatencyStats`.
    """

    ratio: float
    p10: float
    p90: float
    model_ms: float
    reference_ms: float
    runs: int
    device: str
    threads: int
    clock: str = "wall"


def measure_ratio(
    model: nn.Module,
    reference: nn.Module,
    input_shape: Sequence[int] | None = None,
    device: str | torch.device | None = None,
    warmup: int = 2,
    runs: int = 8,
    channels_last: bool = False,
    threads: int | None = None,
    inputs: ModelInputs | None = None,
    dtype: torch.dtype = torch.float32,
    clock: str = "wall",
) -> RatioStats:
    """Time ``model`` against ``reference``, one forward pass of each in turn.

    The order is ``R M R M ... M R``: every model run is divided by the mean of the
    reference runs just before and after it. On a host whose speed drifts (a shared
    VM, frequency scaling) neighbouring runs see nearly the same speed, so the ratio
    stays steady while the times themselves wander: on the 2-core VM this was written
    on, while its speed drifted, the same six networks measured three times differed by
    5% (median) in time and by 0.7% in ratio to the all-``add`` network, at 8 runs each
    (on the steady machine, both by about 1%). Both models take the same inputs; the
    other arguments are those of :func:`~nasfuse.latency.measure.measure_latency`, so that
    one set of keywords times a model either way (as
    :func:`~nasfuse.latency.timing.measure_interleaved` does).
    """
    target = check_options(runs, warmup, device, clock)
    name = device_name_at(target, threads)
    with measuring([model, reference], target, threads, channels_last, clock) as used_threads:
        example = example_inputs(input_shape, inputs, dtype, target, channels_last)
        for _ in range(warmup):
            model(example)
            reference(example)
        pause_collector()

        def time_once(which: nn.Module) -> float:
            (elapsed,) = time_runs(lambda: which(example), 1, target, clock)
            return elapsed

        reference_ms = [time_once(reference)]
        model_ms = []
        for _ in range(runs):
            model_ms.append(time_once(model))
            reference_ms.append(time_once(reference))
        example = None  # drop the device copies before the cache is emptied

    neighbours = (np.asarray(reference_ms[:-1]) + np.asarray(reference_ms[1:])) / 2
    ratios = np.asarray(model_ms) / neighbours
    p10, median, p90 = np.percentile(ratios, [10, 50, 90])
    return RatioStats(
        ratio=float(median),
        p10=float(p10),
        p90=float(p90),
        model_ms=float(np.median(model_ms)),
        reference_ms=float(np.median(reference_ms)),
        runs=runs,
        device=name,
        threads=used_threads,
        clock=clock,
    )
