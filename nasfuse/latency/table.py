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

Where the pieces live: :mod:`~nasfuse.latency.build` (what to measure, and measuring a
table), :mod:`~nasfuse.latency.entries` (the entries and their records),
:mod:`~nasfuse.latency.timing` (interleaved timing, drift control),
:mod:`~nasfuse.latency.calibration` (the statistics), :mod:`~nasfuse.latency.table_file`
(the file format, the key and its refusals), :mod:`~nasfuse.latency.sampling` (random
architectures), :mod:`~nasfuse.latency.checking` (calibrating and validating a table).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from nasfuse.latency.build import BuildOptions, build_parts
from nasfuse.latency.calibration import format_errors, latency_errors
from nasfuse.latency.checking import TableChecks
from nasfuse.latency.entries import (
    Entries,
    Reference,
    ShapeKey,
    TableSite,
    correct_for_network_totals,
)
from nasfuse.latency.sampling import random_arch
from nasfuse.latency.table_file import (
    BUILD_REMEDY,
    LatencyTableError,
    TableContents,
    TableKey,
    default_table_path,
    expected_key,
    read_table_file,
    refuse_mismatch,
    write_table_file,
)
from nasfuse.latency.timing import (
    Measurements,
    measure_archs,
)
from nasfuse.runtime import default_device

# The names this module had before it was split stay importable from it.
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


def shape_key(site: Any) -> str:
    """The key sites of one input shape share: ``"C40_K2_H16_W16"``."""
    return str(ShapeKey.of(site))


class LatencyTable(TableChecks):
    """Predicts an architecture's latency from a base and per-(site, op) entries.

    Build one with :meth:`build`, correct it with :meth:`calibrate`, check it with
    :meth:`validate`, store it with :meth:`save` and get it back with :meth:`load`
    (which refuses a table measured for another space, batch size, device or settings).

    Example:
        >>> table = LatencyTable.build(space, BuildOptions(batch_size=32, threads=1))
        >>> table.calibrate(space, samples=20, seed=0)
        >>> table.predict(space.uniform_arch("add"))  # ms on table.device
        >>> table.save(default_table_path(space, 32))
    """

    def __init__(
        self,
        key: TableKey,
        space_info: Mapping[str, Any],
        measurement: Mapping[str, Any] | None,
        base_ms: float,
        reference: Reference | None,
        entries: Entries,
        sites: Mapping[str, TableSite],
        calibration: Mapping[str, Any] | None = None,
        validation: Mapping[str, Any] | None = None,
    ) -> None:
        """The parts of :class:`~nasfuse.latency.table_file.TableContents`, in its order."""
        self.key = key
        self.space_info = dict(space_info)
        self.measurement = dict(measurement or {})
        self.base_ms = float(base_ms)
        self.reference = reference
        self.entries = {shape: dict(ops) for shape, ops in entries.items()}
        self.sites = dict(sites)
        self.calibration = dict(calibration) if calibration else None
        self.validation = dict(validation) if validation else None

    # -- what the table is for -------------------------------------------------------
    @property
    def device(self) -> str:
        """Readable name of the device the table was measured on."""
        return str(self.key.device)

    @property
    def batch_size(self) -> int:
        return int(self.key.batch_size)

    @property
    def threads(self) -> int:
        return int(self.key.threads)

    @property
    def clock(self) -> str:
        """``"wall"`` (latency) or ``"thread"`` (CPU time of the measuring thread)."""
        return str(self.key.clock or "wall")

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
    def build(cls, space: Any, options: BuildOptions | None = None) -> LatencyTable:
        """Measure every (shape, op) entry and the base of ``space`` (see :class:`BuildOptions`).

        Args:
            space: the :class:`~nasfuse.spaces.SearchSpace`.
            options: how to measure; default ``BuildOptions()``.
        """
        options = options if options is not None else BuildOptions()
        if not isinstance(options, BuildOptions):
            raise TypeError(
                "LatencyTable.build takes BuildOptions, e.g. BuildOptions(batch_size=32), "
                f"not {type(options).__name__}"
            )
        table = cls(*build_parts(space, options))
        if options.correct_entries:
            table.correct_entries()
        return table

    def correct_entries(self) -> None:
        """Scale each op's entries so that the table predicts its per-op network exactly.

        The timers see an op's own time only; what it changes in the layers around it
        (cache contents, say) is then charged to it too. The factors are recorded under
        ``reference.networks.<op>.correction``. Needs a table built with
        ``method="network"`` around the ``add`` network; refuses to correct twice.
        """
        if self.reference is None or "add" not in self.reference.networks:
            raise ValueError(
                "entries can only be corrected in a table built with method='network' whose "
                "spaces allow 'add'"
            )
        if self.measurement.get("entries_corrected"):
            raise ValueError("this table's entries are corrected already")
        networks = correct_for_network_totals(self.entries, self.reference.networks, self.base_ms)
        self.reference = replace(self.reference, networks=networks)
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
        if op not in info.ops:
            raise ValueError(
                f"op {op!r} is not allowed at site {site!r}; allowed: {', '.join(info.ops)}"
            )
        return self.entries[info.shape][op]

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

    # -- files -------------------------------------------------------------------------
    def contents(self) -> TableContents:
        """The table as its file holds it, typed."""
        return TableContents(
            self.key,
            self.space_info,
            self.measurement,
            self.base_ms,
            self.reference,
            self.entries,
            self.sites,
            self.calibration,
            self.validation,
        )

    def to_dict(self) -> dict[str, Any]:
        """The table as plain data (what :meth:`save` writes)."""
        return self.contents().to_data()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LatencyTable:
        """The inverse of :meth:`to_dict` (the format field is not checked here)."""
        return cls(*TableContents.from_data(data))

    def save(self, path: str | Path) -> Path:
        """Write the table as indented JSON (atomically); returns the path."""
        return write_table_file(Path(path), self.to_dict())

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
        remedy: str = BUILD_REMEDY,
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
            remedy: what the refusal tells the user to do.

        Raises:
            FileNotFoundError: no file at ``path``.
            LatencyTableError: the file is not a table, or a key field differs; the message
                names the field, the file's value and the expected one.
        """
        path = Path(path)
        data = read_table_file(path)
        try:
            table = cls.from_dict(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise LatencyTableError(
                f"latency table {path} is incomplete or malformed: {exc!r}"
            ) from exc
        expected = expected_key(
            table.threads,
            space=space,
            batch_size=batch_size,
            device=device,
            threads=threads,
            channels_last=channels_last,
            dtype=dtype,
            clock=clock,
        )
        refuse_mismatch(table.key, expected, path, table.space_info, remedy)
        return table

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

        ``build_options`` are the other fields of :class:`BuildOptions`. A table that exists
        but was measured for other settings is refused (see :meth:`load`), never silently
        rebuilt.
        """
        options = BuildOptions(
            batch_size=batch_size, device=device, progress=progress, **build_options
        )
        path = Path(path) if path is not None else default_table_path(space, batch_size)
        if path.is_file():
            return cls.load(
                path,
                space=space,
                batch_size=batch_size,
                device=device if device is not None else default_device(),
                threads=options.threads,
            )
        table = cls.build(space, options)
        if calibrate:
            table.calibrate(space, samples=calibrate, seed=seed, progress=progress)
        table.save(path)
        return table
