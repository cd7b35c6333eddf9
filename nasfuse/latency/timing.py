"""Timing many networks in one pass: interleaved rounds, drift control, timers around ops.

:func:`measure_interleaved` measures a list of models in ``rounds`` interleaved passes
(optionally each against a reference network, to take out the machine's speed drift);
:class:`TimedFusion` logs the time of every call of a fusion op where it sits in a network;
:class:`SpaceNetworks` builds a space's networks the way the latency table times them.
One forward pass is timed by :mod:`nasfuse.latency.measure`.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nasfuse.latency.measure import ModelInputs, measure_latency, measure_ratio
from nasfuse.progress import progress_bar
from nasfuse.runtime import default_device

__all__ = [
    "DEFAULT_RUNS",
    "Measurements",
    "RunCounts",
    "SpaceNetworks",
    "TimedFusion",
    "Timing",
    "measure_archs",
    "measure_interleaved",
    "measure_networks",
]


@dataclass(frozen=True)
class RunCounts:
    """How long the latency table measures: the one default of building and measuring.

    Attributes:
        warmup: untimed runs before each measurement.
        runs: timed runs per op and round (ops timed alone, ``method="isolated"``).
        rounds: interleaved rounds (a latency is the median of its round medians).
        network_runs: timed runs per network and round.
    """

    warmup: int = 2
    runs: int = 30
    rounds: int = 1
    network_runs: int = 8


#: What ``LatencyTable.build`` and ``LatencyTable.measure`` use unless told otherwise.
DEFAULT_RUNS = RunCounts()


@dataclass(frozen=True)
class Timing:
    """How every model of one interleaved pass is timed (see :func:`measure_interleaved`).

    ``runs`` are the timed runs per model and round; the other fields are those of
    :func:`~nasfuse.latency.measure_latency`, plus whether to show a progress bar.
    """

    device: torch.device
    threads: int | None
    warmup: int
    runs: int
    rounds: int
    channels_last: bool = False
    clock: str = "wall"
    progress: bool = False

    def with_runs(self, runs: int) -> Timing:
        """The same timing with ``runs`` timed runs per model and round."""
        return dataclasses.replace(self, runs=runs)


@dataclass
class Measurements:
    """Latencies measured in one interleaved pass (see :func:`measure_interleaved`).

    Attributes:
        ms: latency of each model (ms): the median of its round medians, each multiplied
            by its drift factor.
        factors: per model, per round, the factor its raw times were multiplied by (1
            without a reference).
        reference_ms: the reference's latency the times were brought to (None without one).
        raw_ms: each model's median of its uncorrected round medians.
    """

    ms: list[float]
    factors: list[list[float]]
    reference_ms: float | None
    raw_ms: list[float]


def measure_interleaved(
    jobs: Sequence[tuple[nn.Module, ModelInputs]],
    timing: Timing,
    desc: str,
    after_each: Callable[[int], None] | None = None,
    reference: nn.Module | None = None,
    reference_ms: float | None = None,
) -> Measurements:
    """Median latency (ms) of each job, measured in ``timing.rounds`` interleaved passes.

    A burst of load from another process then lands on a few runs of many jobs rather
    than on every run of one job; each job's latency is the median of its round medians.
    ``after_each(index)`` runs after every measurement of job ``index``.

    With a ``reference`` network (which must take every job's inputs), the machine's
    speed drift is taken out: each job is timed against it with :func:`measure_ratio`
    (one forward pass of each in turn), and its latency is its ratio times
    ``reference_ms`` (default: the median time of the reference over this pass). A
    shared host drifts: on the 2-core VM this was written on, one network's time wandered
    between 500 and 660 ms within a minute, with the thread's CPU time equal to its wall
    time (no preemption; the core itself ran slower).
    """
    options = {
        "device": timing.device,
        "warmup": timing.warmup,
        "runs": timing.runs,
        "channels_last": timing.channels_last,
        "threads": timing.threads,
        "clock": timing.clock,
    }
    raw: list[list[float]] = [[] for _ in jobs]
    ratios: list[list[float]] = [[] for _ in jobs]
    reference_medians: list[float] = []
    with progress_bar(
        total=timing.rounds * len(jobs), desc=desc, disable=not timing.progress, unit="meas"
    ) as bar:
        for _ in range(timing.rounds):
            for index, (model, inputs) in enumerate(jobs):
                if reference is None:
                    raw[index].append(measure_latency(model, inputs=inputs, **options).median_ms)
                else:
                    stats = measure_ratio(model, reference, inputs=inputs, **options)
                    raw[index].append(stats.model_ms)
                    ratios[index].append(stats.ratio)
                    reference_medians.append(stats.reference_ms)
                if after_each is not None:
                    after_each(index)
                bar.update()
    raw_ms = [statistics.median(values) for values in raw]
    if reference is None:
        return Measurements(raw_ms, [[1.0] * len(values) for values in raw], None, raw_ms)
    target = reference_ms if reference_ms is not None else statistics.median(reference_medians)
    # the factor that takes each measurement's median time to its corrected latency
    factors = [
        [target * ratio / ms for ratio, ms in zip(job_ratios, job_raw, strict=True)]
        for job_ratios, job_raw in zip(ratios, raw, strict=True)
    ]
    ms = [target * statistics.median(job_ratios) for job_ratios in ratios]
    return Measurements(ms, factors, float(target), raw_ms)


@dataclass(frozen=True)
class SpaceNetworks:
    """A space's networks as the latency table times them: ``dtype``, ``num_classes``
    outputs, on one random ``(batch_size, in_chans, input_size, input_size)`` batch."""

    space: Any
    batch_size: int
    dtype: torch.dtype
    num_classes: int

    def example(self) -> torch.Tensor:
        """A random input batch."""
        space = self.space
        return torch.randn(
            self.batch_size, space.in_chans, space.input_size, space.input_size, dtype=self.dtype
        )

    def of(self, arch: Mapping[str, str]) -> nn.Module:
        """``arch``'s network (``build_model``)."""
        from nasfuse.supernet import build_model

        return build_model(self.space, dict(arch), num_classes=self.num_classes).to(self.dtype)

    def with_fusions(self, make_fusion: Callable[[Any], nn.Module]) -> nn.Module:
        """The space's network with ``make_fusion(site)`` at every fusion site."""
        return self.space.build(make_fusion, self.num_classes, self.space.in_chans).to(self.dtype)


def measure_networks(
    networks: SpaceNetworks,
    archs: Sequence[Mapping[str, str]],
    timing: Timing,
    desc: str,
    reference_arch: Mapping[str, str] | None = None,
    reference_ms: float | None = None,
) -> Measurements:
    """Each arch's network on one shared random batch, through :func:`measure_interleaved`;
    ``reference_arch`` becomes its reference network."""
    example = networks.example()
    return measure_interleaved(
        [(networks.of(arch), example) for arch in archs],
        timing,
        desc,
        reference=None if reference_arch is None else networks.of(reference_arch),
        reference_ms=reference_ms,
    )


def measure_archs(
    space: Any,
    archs: Sequence[Mapping[str, str]],
    batch_size: int = 32,
    device: str | torch.device | None = None,
    threads: int | None = None,
    warmup: int = 3,
    runs: int = 10,
    rounds: int = 2,
    channels_last: bool = False,
    dtype: torch.dtype = torch.float32,
    num_classes: int = 10,
    progress: bool = False,
    desc: str = "measure archs",
    clock: str = "wall",
    reference_arch: Mapping[str, str] | None = None,
    reference_ms: float | None = None,
) -> list[float]:
    """End-to-end median latency (ms) of each architecture, built with ``build_model``.

    Every model is measured ``rounds`` times, ``runs`` timed runs each, the rounds
    interleaved across the architectures. With ``reference_arch``, each architecture is
    timed against that network, one forward pass of each in turn, which takes out the
    machine's speed drift (see :func:`measure_interleaved`); the latencies are then at the
    speed at which the reference takes ``reference_ms`` (default: its median over this
    pass).

    The arguments are flat on purpose: this is the keyword form for scripts and tests
    (``measure_archs(space, archs, **settings)``); inside the package the same
    measurement is :func:`measure_networks` with a :class:`SpaceNetworks` and a
    :class:`Timing`, which this builds.
    """
    timing = Timing(
        device=torch.device(device) if device is not None else default_device(),
        threads=threads,
        warmup=warmup,
        runs=runs,
        rounds=rounds,
        channels_last=channels_last,
        clock=clock,
        progress=progress,
    )
    networks = SpaceNetworks(space, batch_size, dtype, num_classes)
    return measure_networks(networks, archs, timing, desc, reference_arch, reference_ms).ms


class TimedFusion(nn.Module):
    """A fusion op that logs the time of every call, in ms, where it sits in a network.

    On CUDA it records a pair of events per call (read after the final synchronisation);
    on the CPU it reads the clock before and after.
    """

    def __init__(self, op: nn.Module, device: torch.device, clock: str) -> None:
        super().__init__()
        self.op = op
        self.on_cuda = device.type == "cuda"
        self.now = time.perf_counter_ns if clock == "wall" else time.thread_time_ns
        self.calls: list[Any] = []

    def forward(self, xs: Sequence[torch.Tensor]) -> torch.Tensor:
        if self.on_cuda:
            start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
            start.record()
            out = self.op(xs)
            end.record()
            self.calls.append((start, end))
            return out
        start_ns = self.now()
        out = self.op(xs)
        self.calls.append((self.now() - start_ns) / 1e6)
        return out

    def times_ms(self) -> list[float]:
        """The logged times (ms); on CUDA, call after synchronising."""
        return [c if isinstance(c, float) else c[0].elapsed_time(c[1]) for c in self.calls]
