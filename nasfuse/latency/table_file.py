"""The latency table file and its key: what a table is valid for, and the refusals.

File format (JSON, ``format: nasfuse-latency-table/1``): ``key`` (what the table is only
valid for: device, torch, batch_size, input_size, in_chans, dtype, channels_last, threads,
clock, space_hash), ``space`` (name, source, options), ``measurement`` (how it was measured,
how long it took), ``base_ms``, ``reference``, ``entries`` (shape -> op -> ms), ``sites``
(site -> shape and allowed ops), ``calibration`` and ``validation``.

:class:`TableContents` is a table file in memory, typed; :class:`TableKey` is the one place that says whether a table fits what it is used for:
:meth:`TableKey.mismatches` lists the differences, :func:`refuse_mismatch` raises on the
first.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch

from nasfuse.files import atomic_write_text, safe_file_name
from nasfuse.latency.entries import Entries, Reference, ShapeKey, TableSite
from nasfuse.latency.measure import device_name_at

__all__ = [
    "KEY_FIELDS",
    "TABLE_FORMAT",
    "KeyMismatch",
    "LatencyTableError",
    "TableContents",
    "TableKey",
    "default_table_path",
    "dtype_name",
    "expected_key",
    "read_table_file",
    "refuse_mismatch",
    "space_key",
    "write_table_file",
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


class KeyMismatch(NamedTuple):
    """One key field whose value in the table differs from the expected one."""

    field: str
    found: Any
    expected: Any


@dataclass(frozen=True)
class TableKey:
    """What a latency table is only valid for (the file's ``key``, in its order).

    ``clock`` is None only in a table written before clocks were recorded (wall clock).
    """

    device: str
    torch: str
    batch_size: int
    input_size: int
    in_chans: int
    dtype: str
    channels_last: bool
    threads: int
    clock: str | None
    space_hash: str

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.clock is None:
            del data["clock"]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TableKey:
        return cls(**{"clock": None, **data})

    def mismatches(self, expected: Mapping[str, Any]) -> list[KeyMismatch]:
        """The fields of ``expected`` (see :func:`expected_key`) whose value differs, in
        :data:`KEY_FIELDS` order; fields ``expected`` leaves out are not checked.

        Example:
            >>> table.key.mismatches({"device": device_name_at("cpu", 1), "threads": 1})
            []
        """
        found = asdict(self)
        return [
            KeyMismatch(field, found[field], expected[field])
            for field in KEY_FIELDS
            if field in expected and found[field] != expected[field]
        ]


class TableContents(NamedTuple):
    """A table file in memory (the arguments of ``LatencyTable``), sections in file order
    but ``format`` (see :data:`TABLE_FORMAT`)."""

    key: TableKey
    space_info: dict[str, Any]
    measurement: dict[str, Any]
    base_ms: float
    reference: Reference | None
    entries: Entries
    sites: dict[str, TableSite]
    calibration: dict[str, Any] | None = None
    validation: dict[str, Any] | None = None

    def to_data(self) -> dict[str, Any]:
        """The plain data of the file."""
        return {
            "format": TABLE_FORMAT,
            "key": self.key.to_dict(),
            "space": self.space_info,
            "measurement": self.measurement,
            "base_ms": self.base_ms,
            "reference": self.reference.to_dict() if self.reference is not None else {},
            "entries": {str(shape): ops for shape, ops in self.entries.items()},
            "sites": {
                name: {"shape": str(site.shape), "ops": list(site.ops)}
                for name, site in self.sites.items()
            },
            "calibration": self.calibration,
            "validation": self.validation,
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> TableContents:
        """The inverse of :meth:`to_data` (the format field is checked by
        :func:`read_table_file`); raises KeyError, TypeError or ValueError on bad data."""
        return cls(
            key=TableKey.from_dict(data["key"]),
            space_info=dict(data["space"]),
            measurement=dict(data.get("measurement") or {}),
            base_ms=float(data["base_ms"]),
            reference=Reference.from_dict(data.get("reference")),
            entries={ShapeKey.parse(shape): dict(ops) for shape, ops in data["entries"].items()},
            sites={
                name: TableSite(ShapeKey.parse(info["shape"]), tuple(info["ops"]))
                for name, info in data["sites"].items()
            },
            calibration=data.get("calibration"),
            validation=data.get("validation"),
        )


def dtype_name(dtype: torch.dtype) -> str:
    """How a dtype is written in the key: ``"float32"``."""
    return str(dtype).replace("torch.", "")


def space_key(space: Any) -> dict[str, Any]:
    """The key fields a space fixes: its hash, input size and input channels."""
    return {"space_hash": space.hash, "input_size": space.input_size, "in_chans": space.in_chans}


def expected_key(
    table_threads: int,
    space: Any = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    threads: int | None = None,
    channels_last: bool | None = None,
    dtype: torch.dtype | None = None,
    clock: str | None = None,
) -> dict[str, Any]:
    """The key fields a table loaded for these settings must have; None checks nothing.

    Always this torch version. The device is named at ``threads``, else at the table's
    thread count ``table_threads`` (a CPU's name carries it).
    """
    expected: dict[str, Any] = {"torch": torch.__version__}
    if space is not None:
        expected.update(space_key(space))
    if batch_size is not None:
        expected["batch_size"] = int(batch_size)
    if threads is not None:
        expected["threads"] = int(threads)
    if device is not None:
        expected["device"] = device_name_at(
            device, threads if threads is not None else table_threads
        )
    if channels_last is not None:
        expected["channels_last"] = bool(channels_last)
    if dtype is not None:
        expected["dtype"] = dtype_name(dtype)
    if clock is not None:
        expected["clock"] = clock
    return expected


#: What a refused table tells the user to do, unless the caller knows better.
BUILD_REMEDY = "build a table for these settings with `nasfuse latency build`"


def refuse_mismatch(
    key: TableKey,
    expected: Mapping[str, Any],
    where: Path | str,
    space_info: Mapping[str, Any],
    remedy: str = BUILD_REMEDY,
) -> None:
    """Raise :class:`LatencyTableError` naming the first field of ``expected`` that differs,
    and ``remedy``."""
    for field, found, wanted in key.mismatches(expected)[:1]:
        what = ""
        if field == "space_hash":
            what = f" (space {space_info.get('name')!r} with options {space_info.get('options')})"
        raise LatencyTableError(
            f"latency table {where} was measured for {field}={found!r}{what}, "
            f"expected {field}={wanted!r}; {remedy}"
        )


def read_table_file(path: Path) -> dict[str, Any]:
    """The plain data of a table file, refusing what is not one."""
    if not path.is_file():
        raise FileNotFoundError(
            f"no latency table at {path}; build one with `nasfuse latency build`"
        )
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise LatencyTableError(f"latency table {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != TABLE_FORMAT:
        raise LatencyTableError(f"{path} is not a latency table (format {TABLE_FORMAT!r} expected)")
    return data


def write_table_file(path: Path, data: Mapping[str, Any]) -> Path:
    """Write a table's plain data as indented JSON (atomically); returns the path."""
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")
    return path


def default_table_path(space: Any, batch_size: int, root: str | Path = "runs/latency") -> Path:
    """Where a table lives unless told otherwise: ``runs/latency/<space>-<hash>-b<B>.json``
    (the space's name made a safe file name: a name such as ``../x`` stays in ``root``)."""
    return Path(root) / f"{safe_file_name(space.name)}-{space.hash}-b{batch_size}.json"
