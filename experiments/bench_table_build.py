"""Building the quick search's latency table (the 7 per-op networks, then the 6-network
calibration, as ``nasfuse search --budget quick`` builds it) with a full garbage
collection before every measurement (the code before) and with the young generations
only (the current ``pause_collector``), in alternating rounds of one run.

The quick search builds its table in a process that holds the trained supernet; pass
``--hold-supernet`` to keep one alive here too, which makes each full collection dearer.

Run (about a minute):

    python experiments/bench_table_build.py
    python experiments/bench_table_build.py --rounds 3 --hold-supernet
"""

from __future__ import annotations

import argparse
import gc
import os
import time
import warnings
from unittest import mock

from _compare import print_comparison
from profile_quick import search_table_setup

import nasfuse.latency.measure as measure_module
import nasfuse.latency.ratio as ratio_module
from nasfuse.latency import LatencyTable


def full_collection_then_pause() -> None:
    """The code before: a collection of every generation."""
    gc.collect()
    gc.disable()


def build_seconds(space: object, options: object, calibration: dict) -> float:
    """Building and calibrating the table as the search does."""
    started = time.perf_counter()
    table = LatencyTable.build(space, options)
    table.calibrate(space, **calibration)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--hold-supernet", action="store_true")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="cmgm")
    load = os.getloadavg()
    # The quick search's space and table settings (its seed was 1 in the figures).
    space, options, calibration = search_table_setup("hrnet_lite", "quick", seed=1)
    held = None
    if args.hold_supernet:
        from nasfuse.supernet import Supernet

        held = Supernet(space, num_classes=10, in_chans=1)
    times: dict[str, list[float]] = {"full collection": [], "young generations": []}
    for _ in range(args.rounds):
        with (
            mock.patch.object(measure_module, "pause_collector", full_collection_then_pause),
            mock.patch.object(ratio_module, "pause_collector", full_collection_then_pause),
        ):
            times["full collection"].append(build_seconds(space, options, calibration))
        times["young generations"].append(build_seconds(space, options, calibration))
    print_comparison(
        load,
        f"hrnet_lite at the quick budget, 7 + 6 measurements; supernet held: {held is not None}",
        times,
        "full collection",
        "young generations",
    )


if __name__ == "__main__":
    main()
