"""What the A/B benchmarks print: the machine, the load before, each path's median, the
ratio of the current path to the old one (both measured in alternating rounds of one run).
"""

from __future__ import annotations

import os
import statistics

import torch

from nasfuse.runtime import device_name


def print_comparison(
    load: tuple[float, float, float],
    setting: str,
    times: dict[str, list[float]],
    old: str,
    new: str,
    unit: str = "s",
) -> None:
    """Print ``times`` (seconds per round of each path) under the machine and ``setting``."""
    print(f"machine: {device_name('cpu')}, {os.cpu_count()} cores, torch {torch.__version__}")
    print(f"load average before (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in load)}")
    rounds = len(times[new])
    print(f"{setting}; median of {rounds} alternating rounds")
    medians = {name: statistics.median(values) for name, values in times.items()}
    width = max(len(name) for name in medians)
    for name, median in medians.items():
        print(f"  {name:{width}s} {median:7.3f} {unit}")
    print(f"  {new} / {old}: {medians[new] / medians[old]:.2f}x")
