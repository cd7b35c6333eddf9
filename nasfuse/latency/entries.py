"""The table's entries: what each op costs at each site shape, and how they are measured.

Sites of one input shape (C, K, H, W) share an entry (:class:`ShapeKey`). Entries are
measured in the network (:func:`network_entries`: one network per op, a timer around each
fusion module) or each op alone on random inputs (:func:`isolated_entries`). The records
of what was measured (:class:`TableSite`, :class:`NetworkTiming`, :class:`Reference`) are
what the table holds in memory; each writes itself as the table file has it.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import torch
from torch import nn

from nasfuse.latency.measure import ModelInputs
from nasfuse.latency.timing import (
    Measurements,
    SpaceNetworks,
    TimedFusion,
    Timing,
    measure_interleaved,
)
from nasfuse.ops import create_op

__all__ = [
    "Entries",
    "NetworkTiming",
    "Reference",
    "ShapeKey",
    "TableSite",
    "add_network",
    "correct_for_network_totals",
    "isolated_entries",
    "network_entries",
    "reference_arch",
    "table_sites",
]


class ShapeKey(NamedTuple):
    """The input shape the sites sharing an entry have; written ``"C40_K2_H16_W16"``."""

    channels: int
    num_inputs: int
    height: int
    width: int

    @classmethod
    def of(cls, site: Any) -> ShapeKey:
        """The shape of a space's site."""
        return cls(site.channels, site.num_inputs, site.height, site.width)

    @classmethod
    def parse(cls, text: str) -> ShapeKey:
        """The inverse of ``str()``: ``"C40_K2_H16_W16"`` -> ``ShapeKey(40, 2, 16, 16)``."""
        parts = text.split("_")
        if len(parts) != 4 or [part[:1] for part in parts] != ["C", "K", "H", "W"]:
            raise ValueError(f"not a site shape (C<c>_K<k>_H<h>_W<w>): {text!r}")
        return cls(*(int(part[1:]) for part in parts))

    def __str__(self) -> str:
        return f"C{self.channels}_K{self.num_inputs}_H{self.height}_W{self.width}"


class TableSite(NamedTuple):
    """What the table knows of a site: its shape (the entry it shares) and allowed ops."""

    shape: ShapeKey
    ops: tuple[str, ...]

    def fallback_op(self) -> str:
        """The op a per-op network uses here when this site does not allow that op."""
        return "add" if "add" in self.ops else self.ops[0]


#: Latency (ms) of each op at each site shape.
Entries = dict[ShapeKey, dict[str, float]]


@dataclass(frozen=True)
class NetworkTiming:
    """One per-op network of an in-network build: ``op`` wherever allowed, add elsewhere.

    Attributes:
        measured_ms: end-to-end latency (drift-corrected when the build was).
        uncorrected_ms: the same without drift correction.
        fusion_ms: the sum of the entries of all its sites.
        own_ms: the sum of the entries of the sites that run its op.
        correction: the factor :func:`correct_for_network_totals` scaled the op's entries
            by (None: not applied); only once ``corrected``.
        corrected: whether the entries were corrected (the file then has ``correction``).
    """

    measured_ms: float
    uncorrected_ms: float
    fusion_ms: float
    own_ms: float
    correction: float | None = None
    corrected: bool = False

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "measured_ms": self.measured_ms,
            "uncorrected_ms": self.uncorrected_ms,
            "fusion_ms": self.fusion_ms,
            "own_ms": self.own_ms,
        }
        if self.corrected:
            data["correction"] = self.correction
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NetworkTiming:
        return cls(
            measured_ms=data["measured_ms"],
            uncorrected_ms=data["uncorrected_ms"],
            fusion_ms=data["fusion_ms"],
            own_ms=data["own_ms"],
            correction=data.get("correction"),
            corrected="correction" in data,
        )


@dataclass(frozen=True)
class Reference:
    """The reference network a table's base is taken from (the file's ``reference``).

    Attributes:
        ops: the ops it uses.
        measured_ms: its measured end-to-end latency.
        entries_sum_ms: the sum of its entries (the base is the difference).
        networks: per op, its per-op network (``method="network"``; empty otherwise).
    """

    ops: list[str]
    measured_ms: float
    entries_sum_ms: float
    networks: dict[str, NetworkTiming]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ops": list(self.ops),
            "measured_ms": self.measured_ms,
            "entries_sum_ms": self.entries_sum_ms,
            "networks": {op: network.to_dict() for op, network in self.networks.items()},
        }

    @classmethod
    def from_dict(cls, data: Any) -> Reference | None:
        if not data:
            return None
        return cls(
            ops=list(data["ops"]),
            measured_ms=data["measured_ms"],
            entries_sum_ms=data["entries_sum_ms"],
            networks={
                op: NetworkTiming.from_dict(network)
                for op, network in (data.get("networks") or {}).items()
            },
        )


def table_sites(space: Any) -> dict[str, TableSite]:
    """Every site of ``space`` with its shape and allowed ops, in the space's order."""
    return {
        name: TableSite(ShapeKey.of(site), tuple(site.ops)) for name, site in space.sites.items()
    }


def shape_ops(sites: Mapping[str, TableSite]) -> dict[ShapeKey, list[str]]:
    """The entries to measure: each shape with the ops any of its sites allows."""
    ops_of: dict[ShapeKey, list[str]] = {}
    for site in sites.values():
        known = ops_of.setdefault(site.shape, [])
        known.extend(op for op in site.ops if op not in known)
    return ops_of


def add_network(sites: Mapping[str, TableSite]) -> dict[str, str]:
    """The all-``add`` architecture: ``add`` wherever allowed, a site's first op elsewhere.

    The table's reference network, and the one drift control times others against.
    """
    return {name: site.fallback_op() for name, site in sites.items()}


def reference_arch(sites: Mapping[str, TableSite], entries: Entries) -> dict[str, str]:
    """``add`` at every site that allows it, else the site's cheapest op."""
    return {
        name: "add"
        if "add" in site.ops
        else min(site.ops, key=lambda op, k=site.shape: entries[k][op])
        for name, site in sites.items()
    }


def correct_for_network_totals(
    entries: Entries, networks: Mapping[str, NetworkTiming], base: float
) -> dict[str, NetworkTiming]:
    """Scale each op's entries so that base + entries of its network == its measured time.

    The timers see an op's own time only; the network's end-to-end time also holds what
    the op changes around it. Ops used as a fallback (``add``) keep their entries, so the
    reference network stays exact. A factor outside [0.5, 2] is taken for noise and not
    applied (recorded as None). ``entries`` are scaled in place; returns the networks
    with their correction recorded.
    """
    corrected = {}
    for op, network in networks.items():
        own = network.own_ms
        others = network.fusion_ms - own
        factor = None if op == "add" or own <= 0 else (network.measured_ms - base - others) / own
        if factor is not None and not 0.5 <= factor <= 2.0:
            factor = None
        corrected[op] = replace(network, correction=factor, corrected=True)
        if factor is None:
            continue
        for ops in entries.values():
            if op in ops:
                ops[op] *= factor
    return corrected


def isolated_entries(
    sites: Mapping[str, TableSite], batch_size: int, dtype: torch.dtype, timing: Timing
) -> Entries:
    """Each op timed alone on K random ``(B, C, H, W)`` inputs: shape -> op -> ms."""
    jobs: list[tuple[nn.Module, ModelInputs]] = []
    labels: list[tuple[ShapeKey, str]] = []
    ops_of = shape_ops(sites)
    for key, ops in ops_of.items():
        shape = (batch_size, key.channels, key.height, key.width)

        def make_inputs(
            dev: torch.device, shape: tuple[int, ...] = shape, k: int = key.num_inputs
        ) -> list[torch.Tensor]:
            return [torch.randn(shape, dtype=dtype, device=dev) for _ in range(k)]

        for op in ops:
            jobs.append((create_op(op, key.channels, key.num_inputs).to(dtype), make_inputs))
            labels.append((key, op))
    medians = measure_interleaved(jobs, timing, "ops").ms
    entries: Entries = {key: {} for key in ops_of}
    for (key, op), median in zip(labels, medians, strict=True):
        entries[key][op] = median
    return entries


@dataclass
class _OpNetwork:
    """A per-op network with a timer at every site, and the timed calls seen per round."""

    op: str
    arch: dict[str, str]
    model: nn.Module
    timers: dict[str, TimedFusion]
    rounds_seen: list[dict[str, list[float]]]


def _op_networks(
    networks: SpaceNetworks, sites: Mapping[str, TableSite], timing: Timing
) -> list[_OpNetwork]:
    """One network per op (in the order the sites first allow them), timers at every site."""
    all_ops: list[str] = []
    for site in sites.values():
        all_ops.extend(op for op in site.ops if op not in all_ops)
    built = []
    for op in all_ops:
        arch = {name: op if op in site.ops else site.fallback_op() for name, site in sites.items()}
        timers: dict[str, TimedFusion] = {}

        def make_fusion(site: Any, arch: dict[str, str] = arch, timers: dict = timers) -> nn.Module:
            timer = TimedFusion(
                create_op(arch[site.name], site.channels, site.num_inputs),
                timing.device,
                timing.clock,
            )
            timers[site.name] = timer
            return timer

        built.append(_OpNetwork(op, arch, networks.with_fusions(make_fusion), timers, []))
    return built


def network_entries(
    networks: SpaceNetworks,
    sites: Mapping[str, TableSite],
    timing: Timing,
    reference: Mapping[str, str] | None,
) -> tuple[Entries, dict[str, NetworkTiming], float | None]:
    """Entries timed inside the network: one network per op, a timer around each site.

    With ``reference`` (an arch), each per-op network is timed against that network (built
    without timers), one forward pass of each in turn, to take out the machine's speed
    drift (see :func:`~nasfuse.latency.timing.measure_interleaved`); the site timers are
    corrected by the same factor as their network.

    Returns:
        ``entries`` (shape -> op -> ms, the mean over the sites of that shape of each
        site's median time); per op, its :class:`NetworkTiming`; and the reference's
        latency the times were brought to (None without a reference).
    """
    example = networks.example()
    op_networks = _op_networks(networks, sites, timing)

    def collect(index: int) -> None:
        timers = op_networks[index].timers
        # the warm-up calls come first
        op_networks[index].rounds_seen.append(
            {name: t.times_ms()[timing.warmup :] for name, t in timers.items()}
        )
        for timer in timers.values():
            timer.calls.clear()

    measured = measure_interleaved(
        [(network.model, example) for network in op_networks],
        timing,
        "networks",
        after_each=collect,
        reference=None if reference is None else networks.of(reference),
    )
    entries = _entries_from_timers(op_networks, measured, sites)
    timings = {}
    for network, network_ms, raw_ms in zip(op_networks, measured.ms, measured.raw_ms, strict=True):
        arch = network.arch
        timings[network.op] = NetworkTiming(
            measured_ms=network_ms,
            uncorrected_ms=raw_ms,
            fusion_ms=sum(entries[sites[name].shape][arch[name]] for name in sites),
            own_ms=sum(
                entries[sites[name].shape][network.op] for name in sites if arch[name] == network.op
            ),
        )
    return entries, timings, measured.reference_ms


def _entries_from_timers(
    op_networks: Sequence[_OpNetwork], measured: Measurements, sites: Mapping[str, TableSite]
) -> Entries:
    """Each (shape, op): the mean over its sites of each site's median drift-corrected time."""
    site_times: dict[tuple[str, str], list[float]] = {}
    for network, factors in zip(op_networks, measured.factors, strict=True):
        for times, factor in zip(network.rounds_seen, factors, strict=True):
            for name, calls in times.items():
                site_times.setdefault((name, network.arch[name]), []).extend(
                    t * factor for t in calls
                )
    per_shape: dict[ShapeKey, dict[str, list[float]]] = {}
    for (name, op), times in site_times.items():
        per_shape.setdefault(sites[name].shape, {}).setdefault(op, []).append(
            statistics.median(times)
        )
    return {
        key: {op: statistics.fmean(values) for op, values in ops.items()}
        for key, ops in per_shape.items()
    }
