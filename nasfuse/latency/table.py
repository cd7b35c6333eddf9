"""The latency lookup table (LUT): a base plus one entry per (site, op), and its calibration.

An architecture's latency is predicted as::

    raw(arch)  = base_ms + sum over sites s of entry[shape(s)][arch[s]]
    pred(arch) = scale * raw(arch) + offset_ms        # after calibrate(); 1 and 0 before

Entries are measured where the ops run (``method="network"``, the default): for every op,
the network with that op at every site that allows it (``add`` elsewhere) runs with a
timer around each fusion module, so an entry includes the cache state and dispatch cost
of the real network. ``method="isolated"`` times each op alone on K random
``(B, C, H, W)`` inputs instead. Either way the sites of one shape (C, K, H, W) share an
entry, so a space with dozens of sites needs few measurements. The base is the backbone
without its fusion ops: the all-``add`` network (``add`` wherever allowed) measured end to
end, less its add entries, so that ``predict(all-add) == base + sum of add entries`` is
the measured all-add latency. What per-op timing still misses is corrected by
:meth:`LatencyTable.calibrate`: random architectures are measured end to end and a scale
and offset fitted by least squares (or only one of them, whichever predicts left-out
samples best); the errors before and after are recorded. :meth:`LatencyTable.validate`
reports the same errors on a fresh sample that excludes every calibration architecture.

Drift control (on by default with ``method="network"``): every network the table measures,
while building and afterwards in :meth:`LatencyTable.measure`, is timed against the
all-``add`` network, one forward pass of each in turn (:func:`measure_ratio`), and its
latency is that ratio times the all-``add`` latency while the table was built
(``measurement.drift_reference_ms``). The machine's speed drifting between the build and a
later measurement then moves neither.

File format (JSON, ``format: nasfuse-latency-table/1``): ``key`` (what the table is only
valid for: device, torch, batch_size, input_size, in_chans, dtype, channels_last, threads,
clock, space_hash), ``space`` (name, source, options), ``measurement`` (how it was measured, how
long it took), ``base_ms``, ``reference``, ``entries`` (shape -> op -> ms), ``sites``
(site -> shape and allowed ops), ``calibration`` and ``validation``.
"""

from __future__ import annotations

import datetime
import json
import random
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nasfuse.files import atomic_write_text
from nasfuse.latency.calibration import calibration_record, format_errors, latency_errors
from nasfuse.latency.measure import (
    ModelInputs,
    device_name_at,
    measure_latency,
    measure_ratio,
    thread_count,
)
from nasfuse.latency.sampling import arch_signature, random_arch, sample_archs
from nasfuse.ops import create_op
from nasfuse.progress import progress_bar
from nasfuse.runtime import default_device

__all__ = [
    "LatencyTable",
    "LatencyTableError",
    "Measurements",
    "default_table_path",
    "format_errors",
    "latency_errors",
    "measure_archs",
    "random_arch",
    "shape_key",
]

TABLE_FORMAT = "nasfuse-latency-table/1"

# The key fields in the order a refusal checks them: the first difference is reported.
KEY_FIELDS = (
    "space_hash",
    "input_size",
    "in_chans",
    "batch_size",
    "device",
    "threads",
    "dtype",
    "channels_last",
    "clock",
    "torch",
)


class LatencyTableError(ValueError):
    """A table file that does not fit the space, device or settings it is loaded for."""


def shape_key(site: Any) -> str:
    """The key sites of one input shape share: ``"C40_K2_H16_W16"``."""
    return f"C{site.channels}_K{site.num_inputs}_H{site.height}_W{site.width}"


def _parse_shape_key(key: str) -> tuple[int, int, int, int]:
    channels, inputs, height, width = (int(part[1:]) for part in key.split("_"))
    return channels, inputs, height, width


def default_table_path(space: Any, batch_size: int, root: str | Path = "runs/latency") -> Path:
    """Where a table lives unless told otherwise: ``runs/latency/<space>-<hash>-b<B>.json``
    (the space's name made a safe file name: a name such as ``../x`` stays in ``root``)."""
    from nasfuse.files import safe_file_name

    return Path(root) / f"{safe_file_name(space.name)}-{space.hash}-b{batch_size}.json"


@dataclass
class Measurements:
    """Latencies measured in one interleaved pass (see :func:`_measure_interleaved`).

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


def _measure_interleaved(
    jobs: Sequence[tuple[nn.Module, ModelInputs]],
    rounds: int,
    runs: int,
    warmup: int,
    device: torch.device,
    threads: int | None,
    channels_last: bool,
    progress: bool,
    desc: str,
    clock: str = "wall",
    after_each: Callable[[int], None] | None = None,
    reference: nn.Module | None = None,
    reference_ms: float | None = None,
) -> Measurements:
    """Median latency (ms) of each job, measured in ``rounds`` interleaved passes.

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
        "device": device,
        "warmup": warmup,
        "runs": runs,
        "channels_last": channels_last,
        "threads": threads,
        "clock": clock,
    }
    raw: list[list[float]] = [[] for _ in jobs]
    ratios: list[list[float]] = [[] for _ in jobs]
    reference_medians: list[float] = []
    with progress_bar(
        total=rounds * len(jobs), desc=desc, disable=not progress, unit="meas"
    ) as bar:
        for _ in range(rounds):
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


def _network_input(space: Any, batch_size: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.randn(batch_size, space.in_chans, space.input_size, space.input_size, dtype=dtype)


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
    machine's speed drift (see :func:`_measure_interleaved`); the latencies are then at the
    speed at which the reference takes ``reference_ms`` (default: its median over this
    pass).
    """
    return _measure_networks(
        space,
        archs,
        reference_arch,
        reference_ms,
        batch_size=batch_size,
        dtype=dtype,
        num_classes=num_classes,
        rounds=rounds,
        runs=runs,
        warmup=warmup,
        device=torch.device(device) if device is not None else default_device(),
        threads=threads,
        channels_last=channels_last,
        progress=progress,
        desc=desc,
        clock=clock,
    ).ms


def _arch_network(
    space: Any, arch: Mapping[str, str], num_classes: int, dtype: torch.dtype
) -> nn.Module:
    """``arch``'s network (``build_model``) in ``dtype``."""
    from nasfuse.supernet import build_model

    return build_model(space, dict(arch), num_classes=num_classes).to(dtype)


def _measure_networks(
    space: Any,
    archs: Sequence[Mapping[str, str]],
    reference_arch: Mapping[str, str] | None,
    reference_ms: float | None,
    batch_size: int,
    dtype: torch.dtype,
    num_classes: int,
    **options: Any,
) -> Measurements:
    """Each arch's network on one shared random batch, through :func:`_measure_interleaved`.

    ``options`` are that function's (rounds, runs, warmup, device, threads, channels_last,
    progress, desc, clock); ``reference_arch`` becomes its reference network.
    """
    example = _network_input(space, batch_size, dtype)
    return _measure_interleaved(
        [(_arch_network(space, arch, num_classes, dtype), example) for arch in archs],
        reference=None
        if reference_arch is None
        else _arch_network(space, reference_arch, num_classes, dtype),
        reference_ms=reference_ms,
        **options,
    )


def _add_network(sites: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """The all-``add`` architecture: ``add`` wherever allowed, a site's first op elsewhere.

    The table's reference network, and the one drift control times others against.
    """
    return {name: _fallback_op(info) for name, info in sites.items()}


def _reference_arch(
    sites: Mapping[str, Mapping[str, Any]], entries: Mapping[str, Mapping[str, float]]
) -> dict[str, str]:
    """``add`` at every site that allows it, else the site's cheapest op."""
    return {
        name: "add"
        if "add" in info["ops"]
        else min(info["ops"], key=lambda op, k=info["shape"]: entries[k][op])
        for name, info in sites.items()
    }


def _match_network_totals(
    entries: dict[str, dict[str, float]], networks: dict[str, dict[str, float]], base: float
) -> None:
    """Scale each op's entries so that base + entries of its network == its measured time.

    The timers see an op's own time only; the network's end-to-end time also holds what
    the op changes around it. Ops used as a fallback (``add``) keep their entries, so the
    reference network stays exact. A factor outside [0.5, 2] is taken for noise and not
    applied (recorded as None).
    """
    for op, network in networks.items():
        own = network["own_ms"]
        others = network["fusion_ms"] - own
        if op == "add" or own <= 0:
            network["correction"] = None
            continue
        factor = (network["measured_ms"] - base - others) / own
        if not 0.5 <= factor <= 2.0:
            network["correction"] = None
            continue
        network["correction"] = factor
        for ops in entries.values():
            if op in ops:
                ops[op] *= factor


def _fallback_op(site_info: Mapping[str, Any]) -> str:
    """The op a per-op network uses at a site that does not allow that op."""
    return "add" if "add" in site_info["ops"] else site_info["ops"][0]


def _isolated_entries(
    shape_ops: Mapping[str, Sequence[str]],
    batch_size: int,
    runs: int,
    dtype: torch.dtype,
    **options: Any,
) -> dict[str, dict[str, float]]:
    """Each op timed alone on K random ``(B, C, H, W)`` inputs: shape -> op -> ms."""
    jobs: list[tuple[nn.Module, ModelInputs]] = []
    labels: list[tuple[str, str]] = []
    for key, ops in shape_ops.items():
        channels, num_inputs, height, width = _parse_shape_key(key)
        shape = (batch_size, channels, height, width)

        def make_inputs(
            dev: torch.device, shape: tuple[int, ...] = shape, k: int = num_inputs
        ) -> list[torch.Tensor]:
            return [torch.randn(shape, dtype=dtype, device=dev) for _ in range(k)]

        for op in ops:
            jobs.append((create_op(op, channels, num_inputs).to(dtype), make_inputs))
            labels.append((key, op))
    medians = _measure_interleaved(jobs, runs=runs, desc="ops", **options).ms
    entries: dict[str, dict[str, float]] = {key: {} for key in shape_ops}
    for (key, op), median in zip(labels, medians, strict=True):
        entries[key][op] = median
    return entries


class _TimedFusion(nn.Module):
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


def _network_entries(
    space: Any,
    sites: Mapping[str, Mapping[str, Any]],
    batch_size: int,
    device: torch.device,
    threads: int | None,
    warmup: int,
    runs: int,
    rounds: int,
    channels_last: bool,
    dtype: torch.dtype,
    num_classes: int,
    progress: bool,
    clock: str,
    reference_arch: Mapping[str, str] | None,
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]], float | None]:
    """Entries timed inside the network: one network per op, a timer around each site.

    With ``reference_arch``, each per-op network is timed against that network (built
    without timers), one forward pass of each in turn, to take out the machine's speed
    drift (see :func:`_measure_interleaved`); the site timers are corrected by the same
    factor as their network.

    Returns:
        ``entries`` (shape -> op -> ms, the mean over the sites of that shape of each
        site's median time); per op, the network's end-to-end median, the same without
        drift correction and the sum of its sites' times (``measured_ms``,
        ``uncorrected_ms``, ``fusion_ms``, ``own_ms``); and the reference's latency the
        times were brought to (None without a reference).
    """

    all_ops: list[str] = []
    for info in sites.values():
        all_ops.extend(op for op in info["ops"] if op not in all_ops)
    example = _network_input(space, batch_size, dtype)
    networks = []
    for op in all_ops:
        arch = {
            name: op if op in info["ops"] else _fallback_op(info) for name, info in sites.items()
        }
        timers: dict[str, _TimedFusion] = {}

        def make_fusion(site: Any, arch: dict[str, str] = arch, timers: dict = timers) -> nn.Module:
            timer = _TimedFusion(
                create_op(arch[site.name], site.channels, site.num_inputs), device, clock
            )
            timers[site.name] = timer
            return timer

        model = space.build(make_fusion, num_classes, space.in_chans).to(dtype)
        networks.append((op, arch, model, timers))

    # per network, per round: each site's timed calls (ms, not yet drift-corrected)
    rounds_seen: list[list[dict[str, list[float]]]] = [[] for _ in networks]

    def collect(index: int) -> None:
        timers = networks[index][3]
        # the warm-up calls come first
        rounds_seen[index].append({name: t.times_ms()[warmup:] for name, t in timers.items()})
        for timer in timers.values():
            timer.calls.clear()

    jobs = [(model, example) for _, _, model, _ in networks]
    measured = _measure_interleaved(
        jobs,
        rounds,
        runs,
        warmup,
        device,
        threads,
        channels_last,
        progress,
        "networks",
        clock,
        after_each=collect,
        reference=None
        if reference_arch is None
        else _arch_network(space, reference_arch, num_classes, dtype),
    )
    site_times: dict[tuple[str, str], list[float]] = {}
    for (_, arch, _, _), seen, factors in zip(networks, rounds_seen, measured.factors, strict=True):
        for times, factor in zip(seen, factors, strict=True):
            for name, calls in times.items():
                site_times.setdefault((name, arch[name]), []).extend(t * factor for t in calls)

    per_shape: dict[str, dict[str, list[float]]] = {}
    for (name, op), times in site_times.items():
        per_shape.setdefault(sites[name]["shape"], {}).setdefault(op, []).append(
            statistics.median(times)
        )
    entries = {
        key: {op: statistics.fmean(values) for op, values in ops.items()}
        for key, ops in per_shape.items()
    }
    summary = {}
    for (op, arch, _, _), network_ms, raw_ms in zip(
        networks, measured.ms, measured.raw_ms, strict=True
    ):
        fusion = sum(entries[sites[name]["shape"]][arch[name]] for name in sites)
        own = sum(entries[sites[name]["shape"]][op] for name in sites if arch[name] == op)
        summary[op] = {
            "measured_ms": network_ms,
            "uncorrected_ms": raw_ms,
            "fusion_ms": fusion,
            "own_ms": own,
        }
    return entries, summary, measured.reference_ms


class LatencyTable:
    """Predicts an architecture's latency from a base and per-(site, op) entries.

    Build one with :meth:`build`, correct it with :meth:`calibrate`, check it with
    :meth:`validate`, store it with :meth:`save` and get it back with :meth:`load`
    (which refuses a table measured for another space, batch size, device or settings).

    Example:
        >>> table = LatencyTable.build(space, batch_size=32, threads=1)
        >>> table.calibrate(space, samples=20, seed=0)
        >>> table.predict(space.uniform_arch("add"))  # ms on table.device
        >>> table.save(default_table_path(space, 32))
    """

    def __init__(
        self,
        key: Mapping[str, Any],
        space_info: Mapping[str, Any],
        base_ms: float,
        entries: Mapping[str, Mapping[str, float]],
        sites: Mapping[str, Mapping[str, Any]],
        measurement: Mapping[str, Any] | None = None,
        reference: Mapping[str, Any] | None = None,
        calibration: Mapping[str, Any] | None = None,
        validation: Mapping[str, Any] | None = None,
    ) -> None:
        self.key = dict(key)
        self.space_info = dict(space_info)
        self.base_ms = float(base_ms)
        self.entries = {shape: dict(ops) for shape, ops in entries.items()}
        self.sites = {name: dict(info) for name, info in sites.items()}
        self.measurement = dict(measurement or {})
        self.reference = dict(reference or {})
        self.calibration = dict(calibration) if calibration else None
        self.validation = dict(validation) if validation else None

    # -- what the table is for -------------------------------------------------------
    @property
    def device(self) -> str:
        """Readable name of the device the table was measured on."""
        return str(self.key["device"])

    @property
    def batch_size(self) -> int:
        return int(self.key["batch_size"])

    @property
    def threads(self) -> int:
        return int(self.key["threads"])

    @property
    def clock(self) -> str:
        """``"wall"`` (latency) or ``"thread"`` (CPU time of the measuring thread)."""
        return str(self.key.get("clock", "wall"))

    @property
    def scale(self) -> float:
        """Calibration scale (1 before calibration)."""
        return float(self.calibration["scale"]) if self.calibration else 1.0

    @property
    def offset_ms(self) -> float:
        """Calibration offset in ms (0 before calibration)."""
        return float(self.calibration["offset_ms"]) if self.calibration else 0.0

    # -- building ----------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        space: Any,
        batch_size: int = 32,
        device: str | torch.device | None = None,
        threads: int | None = None,
        channels_last: bool = False,
        dtype: torch.dtype = torch.float32,
        warmup: int = 2,
        runs: int = 30,
        rounds: int = 1,
        network_runs: int = 8,
        num_classes: int = 10,
        progress: bool = True,
        clock: str = "wall",
        method: str = "network",
        correct_entries: bool = False,
        drift_control: bool = True,
    ) -> LatencyTable:
        """Measure every (shape, op) entry and the base of ``space``.

        ``method="network"`` (default) times each op where it runs: for every op, the
        network with that op at every site that allows it (``add`` elsewhere) is run with a
        timer around each fusion module, so an entry includes the cache state and dispatch
        cost of the real network; one network per op. ``method="isolated"`` times each op
        alone on random inputs of the site's shape, one measurement per (shape, op). Both
        share an entry among the sites of one shape (the mean of their times).

        Args:
            space: the :class:`~nasfuse.spaces.SearchSpace`.
            batch_size: B of every measurement.
            device: target device; default ``default_device()``.
            threads: torch threads during measurement (CPU); default the current count.
            channels_last: measure in ``torch.channels_last`` memory format.
            dtype: parameter and input dtype.
            warmup: untimed runs before each measurement.
            runs: timed runs per op and round (``method="isolated"``).
            rounds: interleaved rounds (each entry is the median of its round medians).
            network_runs: timed runs per network and round.
            num_classes: classifier width of the networks measured end to end.
            progress: show tqdm progress bars.
            clock: ``"wall"`` or ``"thread"`` (see :func:`measure_latency`); recorded in
                the key, and used again by :meth:`calibrate` and :meth:`validate`.
            method: ``"network"`` or ``"isolated"``, see above.
            correct_entries: with ``method="network"``, scale each op's entries so that
                the table predicts each per-op network's measured end-to-end time exactly
                (what an op changes in the layers around it, such as cache contents, is
                then charged to the op). The factors are recorded under
                ``reference.networks.<op>.correction``. See :meth:`correct_entries`.
                Off by default; ``experiments/README.md`` compares the two.
            drift_control: with ``method="network"``, time the per-op networks, and later
                the architectures :meth:`measure` times, against the reference network
                (``add`` wherever allowed), one forward pass of each in turn, so that a drift of the machine's speed
                during or after the build changes the figures as little as possible (see
                :func:`_measure_interleaved`); everything is then expressed at the speed the
                reference had while the table was built (``measurement.drift_reference_ms``).
        """
        started = time.perf_counter()
        target = torch.device(device) if device is not None else default_device()
        with thread_count(threads) as used_threads:
            name = device_name_at(target, used_threads)
        # One entry per (shape, op): sites of one shape share it.
        shape_ops: dict[str, list[str]] = {}
        sites: dict[str, dict[str, Any]] = {}
        for site_name, site in space.sites.items():
            key = shape_key(site)
            sites[site_name] = {"shape": key, "ops": list(site.ops)}
            known = shape_ops.setdefault(key, [])
            known.extend(op for op in site.ops if op not in known)

        options = {
            "batch_size": batch_size,
            "device": target,
            "threads": used_threads,
            "warmup": warmup,
            "rounds": rounds,
            "channels_last": channels_last,
            "dtype": dtype,
            "progress": progress,
            "clock": clock,
        }
        if method == "isolated":
            entries = _isolated_entries(shape_ops, runs=runs, **options)
            reference_arch = _reference_arch(sites, entries)
            (reference_ms,) = measure_archs(
                space, [reference_arch], runs=network_runs, num_classes=num_classes, **options
            )
            networks: dict[str, dict[str, float]] = {}
            measurements = sum(len(ops) for ops in shape_ops.values()) + 1
            drift_reference_ms = None
        elif method == "network":
            reference_arch = _add_network(sites)
            entries, networks, drift_reference_ms = _network_entries(
                space,
                sites,
                runs=network_runs,
                num_classes=num_classes,
                reference_arch=reference_arch if drift_control else None,
                **options,
            )
            if "add" in networks:  # the add network is the reference
                reference_ms = networks["add"]["measured_ms"]
            else:
                (reference_ms,) = measure_archs(
                    space, [reference_arch], runs=network_runs, num_classes=num_classes, **options
                )
            measurements = len(networks)
        else:
            raise ValueError(f"method must be 'network' or 'isolated', got {method!r}")

        entries_sum = sum(entries[sites[s]["shape"]][op] for s, op in reference_arch.items())
        ops_used = sorted(set(reference_arch.values()))
        table = cls(
            key={
                "device": name,
                "torch": torch.__version__,
                "batch_size": int(batch_size),
                "input_size": int(space.input_size),
                "in_chans": int(space.in_chans),
                "dtype": str(dtype).replace("torch.", ""),
                "channels_last": bool(channels_last),
                "threads": int(used_threads),
                "clock": clock,
                "space_hash": space.hash,
            },
            space_info={
                "name": space.name,
                "source": str(space.source),
                "options": dict(space.options),
            },
            base_ms=reference_ms - entries_sum,
            entries=entries,
            sites=sites,
            measurement={
                "warmup": warmup,
                "runs": runs,
                "rounds": rounds,
                "network_runs": network_runs,
                "num_classes": num_classes,
                "method": method,
                # the reference's latency every figure is expressed at (None: no drift control)
                "drift_reference_ms": drift_reference_ms,
                "op_entries": sum(len(ops) for ops in entries.values()),
                "measurements": measurements,
                "sites": len(sites),
                "built_at": datetime.datetime.now(datetime.timezone.utc).isoformat(
                    timespec="seconds"
                ),
                "build_seconds": round(time.perf_counter() - started, 2),
            },
            reference={
                "ops": ops_used,
                "measured_ms": reference_ms,
                "entries_sum_ms": entries_sum,
                "networks": networks,
            },
        )
        if correct_entries:
            table.correct_entries()
        return table

    def correct_entries(self) -> None:
        """Scale each op's entries so that the table predicts its per-op network exactly.

        The timers see an op's own time only; what it changes in the layers around it
        (cache contents, say) is then charged to it too. The factors are recorded under
        ``reference.networks.<op>.correction``. Needs a table built with
        ``method="network"`` around the ``add`` network; refuses to correct twice.
        """
        networks = self.reference.get("networks") or {}
        if "add" not in networks:
            raise ValueError(
                "entries can only be corrected in a table built with method='network' whose "
                "spaces allow 'add'"
            )
        if self.measurement.get("entries_corrected"):
            raise ValueError("this table's entries are corrected already")
        _match_network_totals(self.entries, networks, self.base_ms)
        self.measurement["entries_corrected"] = True

    # -- predicting ----------------------------------------------------------------------
    def entry(self, site: str, op: str) -> float:
        """Latency (ms) of ``op`` at ``site`` (shared by the sites of its shape)."""
        try:
            info = self.sites[site]
        except KeyError:
            raise ValueError(
                f"site {site!r} is not in the latency table of space {self.space_info['name']!r}"
            ) from None
        if op not in info["ops"]:
            raise ValueError(
                f"op {op!r} is not allowed at site {site!r}; allowed: {', '.join(info['ops'])}"
            )
        return self.entries[info["shape"]][op]

    def predict_raw(self, arch: Mapping[str, str]) -> float:
        """Uncalibrated prediction (ms): ``base_ms`` plus the entries of the chosen ops."""
        missing = [site for site in self.sites if site not in arch]
        if missing:
            raise ValueError(
                f"architecture lacks {len(missing)} site(s) of the table, e.g. {missing[0]!r}"
            )
        return self.base_ms + sum(self.entry(site, op) for site, op in arch.items())

    def predict(self, arch: Mapping[str, str], calibrated: bool = True) -> float:
        """Predicted latency of ``arch`` (ms) on :attr:`device`, calibrated when possible."""
        raw = self.predict_raw(arch)
        return self.scale * raw + self.offset_ms if calibrated else raw

    def encode_arch(self, arch: Mapping[str, str]) -> str:
        """``arch`` as one line for the table file: its ops in the order of :attr:`sites`."""
        return " ".join(arch[site] for site in self.sites)

    def decode_arch(self, line: str) -> dict[str, str]:
        """The inverse of :meth:`encode_arch`."""
        ops = line.split()
        if len(ops) != len(self.sites):
            raise ValueError(f"an encoded arch needs {len(self.sites)} ops, got {len(ops)}")
        return dict(zip(self.sites, ops, strict=True))

    # -- calibration and validation ----------------------------------------------------
    def sample_archs(
        self,
        space: Any,
        samples: int,
        rng: random.Random,
        exclude: Sequence[Mapping[str, str]] = (),
    ) -> list[dict[str, str]]:
        """``samples`` distinct random architectures of ``space``, none of ``exclude``."""
        self._check_space(space)
        return sample_archs(space, samples, rng, exclude)

    def measure(
        self,
        space: Any,
        archs: Sequence[Mapping[str, str]],
        runs: int | None = None,
        rounds: int | None = None,
        progress: bool = True,
        desc: str = "measure archs",
    ) -> Measurements:
        """End-to-end latency of ``archs``, measured the way this table was built.

        Same device, threads, clock, batch size, dtype and memory format; ``runs`` and
        ``rounds`` default to the table's ``network_runs`` and ``rounds``. A table built
        with drift control times each architecture against its reference network and
        gives the latencies at the speed the reference had while the table was built.

        Returns:
            :class:`Measurements`: ``.ms`` holds the latencies (ms), ``.raw_ms`` the
            times without drift correction.
        """
        self._check_space(space)
        drift_reference_ms = self.measurement.get("drift_reference_ms")
        return _measure_networks(
            space,
            archs,
            None if drift_reference_ms is None else _add_network(self.sites),
            drift_reference_ms,
            batch_size=self.batch_size,
            dtype=getattr(torch, self.key["dtype"]),
            num_classes=int(self.measurement.get("num_classes", 10)),
            rounds=rounds if rounds is not None else int(self.measurement.get("rounds", 2)),
            runs=runs if runs is not None else int(self.measurement.get("network_runs", 5)),
            warmup=int(self.measurement.get("warmup", 2)),
            device=self._torch_device(),
            threads=self.threads,
            channels_last=bool(self.key["channels_last"]),
            progress=progress,
            desc=desc,
            clock=self.clock,
        )

    def calibration_archs(self) -> list[dict[str, str]]:
        """The architectures the table was calibrated on (none before calibration)."""
        return [self.decode_arch(line) for line in (self.calibration or {}).get("archs", [])]

    def calibrate(
        self,
        space: Any,
        samples: int = 20,
        seed: int = 0,
        rng: random.Random | None = None,
        runs: int | None = None,
        rounds: int | None = None,
        progress: bool = True,
    ) -> dict[str, Any]:
        """Measure ``samples`` random architectures end to end and :meth:`fit_calibration`.

        Returns:
            The calibration record (also stored in the table).
        """
        if samples < 2:
            raise ValueError(f"calibration needs at least 2 architectures, got {samples}")
        archs = self.sample_archs(space, samples, rng if rng is not None else random.Random(seed))
        measured = self.measure(space, archs, runs, rounds, progress, "calibrate").ms
        return self.fit_calibration(archs, measured, seed=seed if rng is None else None)

    def fit_calibration(
        self,
        archs: Sequence[Mapping[str, str]],
        measured: Sequence[float],
        seed: int | None = None,
    ) -> dict[str, Any]:
        """Fit ``measured ~ scale * raw + offset`` by least squares.

        Three forms are fitted: offset only (scale 1), scale only (offset 0), and both.
        The one with the smallest leave-one-out median absolute % error on this sample is
        kept, so that a small noisy sample cannot produce a wild scale; the raw table
        ("none") competes too, with its plain error, and wins when no fit predicts held-out
        samples better (a noisy sample once gave scale 11.3, offset -248 ms and negative
        predictions). The errors before
        and after (on this same sample), the leave-one-out errors, the measurements and
        the architectures (so that :meth:`validate` can exclude them) are recorded in
        :attr:`calibration`, which is returned.
        """
        raw = [self.predict_raw(arch) for arch in archs]
        lines = [self.encode_arch(arch) for arch in archs]
        self.calibration = calibration_record(raw, measured, lines, seed)
        return self.calibration

    def validate(
        self,
        space: Any,
        samples: int = 30,
        seed: int = 1,
        runs: int | None = None,
        rounds: int | None = None,
        progress: bool = True,
    ) -> dict[str, Any]:
        """Errors of :meth:`predict` on ``samples`` fresh random architectures.

        Architectures used for calibration are never drawn. See :meth:`score`.
        """
        archs = self.sample_archs(
            space, samples, random.Random(seed), exclude=self.calibration_archs()
        )
        measured = self.measure(space, archs, runs, rounds, progress, "validate").ms
        return self.score(archs, measured, seed=seed)

    def score(
        self,
        archs: Sequence[Mapping[str, str]],
        measured: Sequence[float],
        seed: int | None = None,
    ) -> dict[str, Any]:
        """Errors of :meth:`predict` against ``measured`` ms, stored in :attr:`validation`.

        Raises ``ValueError`` if one of ``archs`` was used for calibration: validation
        figures come from architectures the calibration never saw.
        """
        calibrated = {arch_signature(arch) for arch in self.calibration_archs()}
        if any(arch_signature(arch) in calibrated for arch in archs):
            raise ValueError("an architecture to validate on was used for calibration")
        predicted = [self.predict(arch) for arch in archs]
        raw = [self.predict_raw(arch) for arch in archs]
        result = {
            "device": self.device,
            "clock": self.clock,
            "seed": seed,
            **latency_errors(predicted, measured),
            "raw": latency_errors(raw, measured),
            "calibrated": self.calibration is not None,
            "predicted_ms": predicted,
            "measured_ms": [float(value) for value in measured],
            "archs": [self.encode_arch(arch) for arch in archs],
            "validated_at": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"
            ),
        }
        self.validation = result
        return result

    # -- files -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The table as plain data (what :meth:`save` writes)."""
        return {
            "format": TABLE_FORMAT,
            "key": self.key,
            "space": self.space_info,
            "measurement": self.measurement,
            "base_ms": self.base_ms,
            "reference": self.reference,
            "entries": self.entries,
            "sites": self.sites,
            "calibration": self.calibration,
            "validation": self.validation,
        }

    def save(self, path: str | Path) -> Path:
        """Write the table as indented JSON (atomically); returns the path."""
        path = Path(path)
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")
        return path

    @classmethod
    def load(
        cls,
        path: str | Path,
        space: Any = None,
        batch_size: int | None = None,
        device: str | torch.device | None = None,
        threads: int | None = None,
        channels_last: bool | None = None,
        dtype: torch.dtype | None = None,
        clock: str | None = None,
    ) -> LatencyTable:
        """Read a table, refusing one whose key differs from what it is loaded for.

        Args:
            path: the JSON file.
            space: the space it must describe (hash, input size, input channels).
            batch_size, channels_last, dtype: settings it must have been measured with.
            device: the device it must have been measured on (name compared at the table's
                thread count, or at ``threads`` when given). ``None`` checks nothing.
            threads: the thread count it must have been measured with.
            clock: the clock it must have been measured with (``"wall"``, ``"thread"``).

        Raises:
            FileNotFoundError: no file at ``path``.
            LatencyTableError: the file is not a table, or a key field differs; the message
                names the field, the file's value and the expected one.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"no latency table at {path}; build one with `nasfuse latency build`"
            )
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise LatencyTableError(f"latency table {path} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict) or data.get("format") != TABLE_FORMAT:
            raise LatencyTableError(
                f"{path} is not a latency table (format {TABLE_FORMAT!r} expected)"
            )
        try:
            table = cls(
                key=data["key"],
                space_info=data["space"],
                base_ms=data["base_ms"],
                entries=data["entries"],
                sites=data["sites"],
                measurement=data.get("measurement"),
                reference=data.get("reference"),
                calibration=data.get("calibration"),
                validation=data.get("validation"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise LatencyTableError(
                f"latency table {path} is incomplete or malformed: {exc!r}"
            ) from exc
        expected: dict[str, Any] = {"torch": torch.__version__}
        if space is not None:
            expected.update(
                space_hash=space.hash, input_size=space.input_size, in_chans=space.in_chans
            )
        if batch_size is not None:
            expected["batch_size"] = int(batch_size)
        if threads is not None:
            expected["threads"] = int(threads)
        if device is not None:
            expected["device"] = device_name_at(
                device, threads if threads is not None else table.threads
            )
        if channels_last is not None:
            expected["channels_last"] = bool(channels_last)
        if dtype is not None:
            expected["dtype"] = str(dtype).replace("torch.", "")
        if clock is not None:
            expected["clock"] = clock
        table._refuse_mismatch(expected, path)
        return table

    def _refuse_mismatch(self, expected: Mapping[str, Any], path: Path | str) -> None:
        for field in KEY_FIELDS:
            if field in expected and self.key.get(field) != expected[field]:
                what = ""
                if field == "space_hash":
                    what = f" (space {self.space_info.get('name')!r} with options {self.space_info.get('options')})"
                raise LatencyTableError(
                    f"latency table {path} was measured for {field}={self.key.get(field)!r}{what}, "
                    f"expected {field}={expected[field]!r}; build a table for these settings "
                    "with `nasfuse latency build`"
                )

    def _check_space(self, space: Any) -> None:
        self._refuse_mismatch(
            {"space_hash": space.hash, "input_size": space.input_size, "in_chans": space.in_chans},
            "(in memory)",
        )

    def _torch_device(self) -> torch.device:
        return torch.device("cuda") if self.device.startswith("cuda") else torch.device("cpu")

    @classmethod
    def load_or_build(
        cls,
        space: Any,
        batch_size: int = 32,
        device: str | torch.device | None = None,
        path: str | Path | None = None,
        calibrate: int = 0,
        seed: int = 0,
        progress: bool = True,
        **build_options: Any,
    ) -> LatencyTable:
        """The table at ``path`` (default :func:`default_table_path`), built and saved if absent.

        A table that exists but was measured for other settings is refused (see
        :meth:`load`), never silently rebuilt.
        """
        path = Path(path) if path is not None else default_table_path(space, batch_size)
        if path.is_file():
            return cls.load(
                path,
                space=space,
                batch_size=batch_size,
                device=device if device is not None else default_device(),
                threads=build_options.get("threads"),
            )
        table = cls.build(
            space, batch_size=batch_size, device=device, progress=progress, **build_options
        )
        if calibrate:
            table.calibrate(space, samples=calibrate, seed=seed, progress=progress)
        table.save(path)
        return table
