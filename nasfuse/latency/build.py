"""Building a latency table: what to measure (:class:`BuildOptions`) and the measuring.

:func:`build_parts` measures the entries (in the network or each op alone) and the
reference network, and returns what :class:`~nasfuse.latency.LatencyTable` is made of.
"""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from nasfuse.latency.entries import (
    Entries,
    NetworkTiming,
    Reference,
    TableSite,
    add_network,
    isolated_entries,
    network_entries,
    reference_arch,
    table_sites,
)
from nasfuse.latency.measure import device_name_at, thread_count
from nasfuse.latency.table_file import TableContents, TableKey, dtype_name
from nasfuse.latency.timing import DEFAULT_RUNS, SpaceNetworks, Timing, measure_networks
from nasfuse.runtime import default_device

__all__ = ["METHODS", "BuildOptions", "build_parts"]

#: How entries are measured: inside per-op networks, or each op alone.
METHODS = ("network", "isolated")


@dataclass(frozen=True)
class BuildOptions:
    """How :meth:`LatencyTable.build <nasfuse.latency.LatencyTable.build>` measures.

    ``method="network"`` (default) times each op where it runs: for every op, the network
    with that op at every site that allows it (``add`` elsewhere) is run with a timer
    around each fusion module, so an entry includes the cache state and dispatch cost of
    the real network; one network per op. ``method="isolated"`` times each op alone on
    random inputs of the site's shape, one measurement per (shape, op). Both share an
    entry among the sites of one shape (the mean of their times).

    Attributes:
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
        clock: ``"wall"`` or ``"thread"`` (see :func:`measure_latency`); recorded in the
            key, and used again by ``calibrate`` and ``validate``.
        method: ``"network"`` or ``"isolated"``, see above.
        correct_entries: with ``method="network"``, scale each op's entries so that the
            table predicts each per-op network's measured end-to-end time exactly (what an
            op changes in the layers around it, such as cache contents, is then charged to
            the op). The factors are recorded under ``reference.networks.<op>.correction``.
            See ``LatencyTable.correct_entries``. Off by default;
            ``experiments/README.md`` compares the two.
        drift_control: with ``method="network"``, time the per-op networks, and later the
            architectures ``LatencyTable.measure`` times, against the reference network
            (``add`` wherever allowed), one forward pass of each in turn, so that a drift
            of the machine's speed during or after the build changes the figures as little
            as possible (see :func:`~nasfuse.latency.timing.measure_interleaved`);
            everything is then expressed at the speed the reference had while the table
            was built (``measurement.drift_reference_ms``).

    Example:
        >>> LatencyTable.build(space, BuildOptions(batch_size=32, threads=1))
    """

    batch_size: int = 32
    device: str | torch.device | None = None
    threads: int | None = None
    channels_last: bool = False
    dtype: torch.dtype = torch.float32
    warmup: int = DEFAULT_RUNS.warmup
    runs: int = DEFAULT_RUNS.runs
    rounds: int = DEFAULT_RUNS.rounds
    network_runs: int = DEFAULT_RUNS.network_runs
    num_classes: int = 10
    progress: bool = True
    clock: str = "wall"
    method: str = "network"
    correct_entries: bool = False
    drift_control: bool = True

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be 'network' or 'isolated', got {self.method!r}")

    def network_timing(self, device: torch.device, threads: int) -> Timing:
        """How every network is timed (``network_runs`` runs per round) on ``device``."""
        shared = ("warmup", "rounds", "channels_last", "clock", "progress")
        return Timing(
            device, threads, runs=self.network_runs, **{f: getattr(self, f) for f in shared}
        )


class _Measured(NamedTuple):
    entries: Entries
    reference_arch: dict[str, str]
    reference_ms: float
    networks: dict[str, NetworkTiming]
    measurements: int
    drift_reference_ms: float | None


def build_parts(space: Any, options: BuildOptions) -> TableContents:
    """Measure every (shape, op) entry and the base of ``space`` (see :class:`BuildOptions`)."""
    started = time.perf_counter()
    target = torch.device(options.device) if options.device is not None else default_device()
    with thread_count(options.threads) as used_threads:
        name = device_name_at(target, used_threads)
    sites = table_sites(space)
    timing = options.network_timing(target, used_threads)
    networks = SpaceNetworks(space, options.batch_size, options.dtype, options.num_classes)
    if options.method == "isolated":
        measured = _measure_isolated(networks, sites, timing, options)
    else:
        measured = _measure_in_network(networks, sites, timing, options.drift_control)

    entries = measured.entries
    entries_sum = sum(entries[sites[s].shape][op] for s, op in measured.reference_arch.items())
    return TableContents(
        key=TableKey(
            device=name,
            torch=torch.__version__,
            batch_size=int(options.batch_size),
            input_size=int(space.input_size),
            in_chans=int(space.in_chans),
            dtype=dtype_name(options.dtype),
            channels_last=bool(options.channels_last),
            threads=int(used_threads),
            clock=options.clock,
            space_hash=space.hash,
        ),
        space_info={
            "name": space.name,
            "source": str(space.source),
            "options": dict(space.options),
        },
        base_ms=measured.reference_ms - entries_sum,
        entries=entries,
        sites=sites,
        measurement={
            "warmup": options.warmup,
            "runs": options.runs,
            "rounds": options.rounds,
            "network_runs": options.network_runs,
            "num_classes": options.num_classes,
            "method": options.method,
            # the reference's latency every figure is expressed at (None: no drift control)
            "drift_reference_ms": measured.drift_reference_ms,
            "op_entries": sum(len(ops) for ops in entries.values()),
            "measurements": measured.measurements,
            "sites": len(sites),
            "built_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "build_seconds": round(time.perf_counter() - started, 2),
        },
        reference=Reference(
            ops=sorted(set(measured.reference_arch.values())),
            measured_ms=measured.reference_ms,
            entries_sum_ms=entries_sum,
            networks=measured.networks,
        ),
    )


def _measure_isolated(
    networks: SpaceNetworks, sites: dict[str, TableSite], timing: Timing, options: BuildOptions
) -> _Measured:
    """Each op alone, then the reference network (add, else each site's cheapest op)."""
    entries = isolated_entries(
        sites, options.batch_size, options.dtype, timing.with_runs(options.runs)
    )
    arch = reference_arch(sites, entries)
    (reference_ms,) = measure_networks(networks, [arch], timing, "measure archs").ms
    return _Measured(
        entries, arch, reference_ms, {}, 1 + sum(len(ops) for ops in entries.values()), None
    )


def _measure_in_network(
    networks: SpaceNetworks, sites: dict[str, TableSite], timing: Timing, drift_control: bool
) -> _Measured:
    """One network per op, timed against the add network with drift control; the add
    network is the reference (measured on its own if no site allows add)."""
    arch = add_network(sites)
    entries, timings, drift_reference_ms = network_entries(
        networks, sites, timing, arch if drift_control else None
    )
    if "add" in timings:  # the add network is the reference
        reference_ms = timings["add"].measured_ms
    else:
        (reference_ms,) = measure_networks(networks, [arch], timing, "measure archs").ms
    return _Measured(entries, arch, reference_ms, timings, len(timings), drift_reference_ms)
