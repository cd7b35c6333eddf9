"""Latency: measured on the target device, and a lookup table that predicts it.

Example:
    >>> from nasfuse.latency import LatencyTable, measure_latency
    >>> stats = measure_latency(model, (32, 3, 32, 32), threads=1)
    >>> table = LatencyTable.load_or_build(space, batch_size=32, calibrate=20)
    >>> table.predict(arch)  # ms on table.device
"""

from __future__ import annotations

from nasfuse.latency.build import BuildOptions
from nasfuse.latency.calibration import format_errors, latency_errors
from nasfuse.latency.measure import LatencyStats, RatioStats, measure_latency, measure_ratio
from nasfuse.latency.sampling import random_arch
from nasfuse.latency.table import LatencyTable
from nasfuse.latency.table_file import LatencyTableError, TableKey, default_table_path
from nasfuse.latency.timing import Measurements, measure_archs

__all__ = [
    "BuildOptions",
    "LatencyStats",
    "LatencyTable",
    "LatencyTableError",
    "Measurements",
    "RatioStats",
    "TableKey",
    "default_table_path",
    "format_errors",
    "latency_errors",
    "measure_archs",
    "measure_latency",
    "measure_ratio",
    "random_arch",
]
