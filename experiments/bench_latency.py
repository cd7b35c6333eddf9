"""Benchmark of the latency lookup table on this machine.

Builds the table for a space (timed), calibrates it on ``--calibrate`` random
architectures, then validates it on ``--validate`` fresh random architectures (another
seed; calibration archs excluded) and prints median absolute % error, the share within
±10%, Kendall tau, the device, torch version, thread count and build time. A second
measurement of a few validation archs gives the measurement noise to compare the errors
with. Results go to ``<out>/bench_latency.json`` and the table to ``<out>/table.json``.

Run (about 8.5 minutes with the defaults on a quiet 2-core CPU: 504 s; ``--clock thread``
measures CPU time of the measuring thread instead of latency, for a machine busy with
other work):

    python experiments/bench_latency.py

Targets (issue 5): median |error| <= 5%, >= 90% within ±10%, Kendall tau >= 0.8.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import random
import statistics
import time
from pathlib import Path

import torch

from nasfuse.config import parse_overrides
from nasfuse.latency import BuildOptions, LatencyTable, format_errors, latency_errors
from nasfuse.spaces import load_space

TARGETS = {"median_abs_pct_error": 5.0, "within_10pct": 0.9, "kendall_tau": 0.8}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", default="hrnet_lite")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--calibrate", type=int, default=12, help="calibration archs")
    parser.add_argument("--validate", type=int, default=30, help="fresh validation archs")
    parser.add_argument("--calibration-seed", type=int, default=0)
    parser.add_argument("--validation-seed", type=int, default=1)
    parser.add_argument("--method", choices=("network", "isolated"), default="network")
    parser.add_argument(
        "--runs", type=int, default=30, help="timed runs per op and round (isolated)"
    )
    parser.add_argument(
        "--network-runs", type=int, default=8, help="timed runs per network and round"
    )
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs per measurement")
    parser.add_argument(
        "--clock",
        choices=("wall", "thread"),
        default="wall",
        help="wall: latency (default); thread: CPU time of the measuring thread (busy machines)",
    )
    parser.add_argument(
        "--separate",
        action="store_true",
        help="measure the calibration sample, then the validation sample (default: both "
        "interleaved in one shuffled pass)",
    )
    parser.add_argument(
        "--no-drift-control",
        action="store_true",
        help="do not measure the reference network between the others (see BuildOptions.drift_control)",
    )
    parser.add_argument(
        "--noise-archs", type=int, default=6, help="validation archs measured twice"
    )
    parser.add_argument("--out", type=Path, default=Path("runs/latency/bench"))
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    started = time.perf_counter()
    space = load_space(args.space, parse_overrides(args.overrides))
    print(
        f"space {space.name} ({len(space.sites)} sites, hash {space.hash}), input "
        f"{space.input_size}x{space.input_size}, batch {args.batch_size}; torch {torch.__version__}, "
        f"python {platform.python_version()}, {args.threads} thread(s), clock {args.clock}, "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    options = BuildOptions(
        batch_size=args.batch_size,
        threads=args.threads,
        runs=args.runs,
        rounds=args.rounds,
        network_runs=args.network_runs,
        warmup=args.warmup,
        method=args.method,
        clock=args.clock,
        drift_control=not args.no_drift_control,
    )
    table = LatencyTable.build(space, options)
    build_seconds = table.measurement["build_seconds"]
    print(
        f"table built in {build_seconds:.1f} s: {table.measurement['op_entries']} op entries for "
        f"{len(table.sites)} sites, base {table.base_ms:.2f} ms, all-add "
        f"{table.reference.measured_ms:.2f} ms on {table.device}"
    )

    calibration_archs = table.sample_archs(
        space, args.calibrate, random.Random(args.calibration_seed)
    )
    validation_archs = table.sample_archs(
        space, args.validate, random.Random(args.validation_seed), exclude=calibration_archs
    )
    measuring_started = time.perf_counter()
    if args.separate:
        calibration = table.measure(space, calibration_archs, desc="calibrate")
        validation = table.measure(space, validation_archs, desc="validate")
        calibration_ms, validation_ms = calibration.ms, validation.ms
        calibration_raw, validation_raw = calibration.raw_ms, validation.raw_ms
    else:
        # Both samples in one interleaved pass, in shuffled order: a change of the
        # machine's load during the run then shifts both alike instead of separating them.
        both = calibration_archs + validation_archs
        order = list(range(len(both)))
        random.Random(args.validation_seed + 1).shuffle(order)
        shuffled = table.measure(space, [both[i] for i in order], desc="calibrate+validate")
        corrected_both, raw_both = [0.0] * len(both), [0.0] * len(both)
        for position, index in enumerate(order):
            corrected_both[index] = shuffled.ms[position]
            raw_both[index] = shuffled.raw_ms[position]
        calibration_ms, validation_ms = (
            corrected_both[: args.calibrate],
            corrected_both[args.calibrate :],
        )
        calibration_raw, validation_raw = raw_both[: args.calibrate], raw_both[args.calibrate :]
    measuring_seconds = time.perf_counter() - measuring_started
    drift = table.measurement.get("drift_reference_ms") is not None

    # Without drift correction first (the same measurements, uncorrected), for comparison.
    uncorrected = None
    if drift:
        table.fit_calibration(calibration_archs, calibration_raw, seed=args.calibration_seed)
        uncorrected = table.score(validation_archs, validation_raw, seed=args.validation_seed)
        print(f"  uncorrected measurements, calibrated table: {format_errors(uncorrected)}")
    record = table.fit_calibration(calibration_archs, calibration_ms, seed=args.calibration_seed)
    print(
        f"calibrated on {args.calibrate} archs: form {record['form']}, scale "
        f"{record['scale']:.3f}, offset {record['offset_ms']:+.2f} ms; in-sample "
        f"{format_errors(record['before'])} before, {format_errors(record['after'])} after"
    )
    result = table.score(validation_archs, validation_ms, seed=args.validation_seed)
    table.save(args.out / "table.json")
    measured = result["measured_ms"]
    spread = statistics.pstdev(measured) / statistics.mean(measured) * 100
    print(
        f"validated on {args.validate} fresh archs (measured {min(measured):.1f}-"
        f"{max(measured):.1f} ms, spread {spread:.1f}% of the mean); measuring both samples "
        f"took {measuring_seconds:.0f} s"
    )
    print(f"  raw table:        {format_errors(result['raw'])}")
    print(f"  calibrated table: {format_errors(result)}")
    corrected = None
    if args.method == "network":
        # The same table with corrected entries (LatencyTable.correct_entries), calibrated on
        # the same sample and scored on the same measurements.
        variant = copy.deepcopy(table)
        variant.correct_entries()
        variant.fit_calibration(calibration_archs, calibration_ms, seed=args.calibration_seed)
        corrected = variant.score(validation_archs, validation_ms, seed=args.validation_seed)
        print(f"  corrected entries, raw:        {format_errors(corrected['raw'])}")
        print(f"  corrected entries, calibrated: {format_errors(corrected)}")

    noise = noise_uncorrected = None
    if args.noise_archs:
        again = table.measure(space, validation_archs[: args.noise_archs], desc="re-measure")
        noise = latency_errors(again.ms, measured[: args.noise_archs])
        noise_uncorrected = latency_errors(again.raw_ms, validation_raw[: args.noise_archs])
        print(
            f"  measurement noise (same {len(again.ms)} archs measured twice): median "
            f"{noise['median_abs_pct_error']:.2f}%, max {noise['max_abs_pct_error']:.2f}%"
            + (
                f" (uncorrected: median {noise_uncorrected['median_abs_pct_error']:.2f}%, "
                f"max {noise_uncorrected['max_abs_pct_error']:.2f}%)"
                if drift
                else ""
            )
        )

    met = {
        "median_abs_pct_error": result["median_abs_pct_error"] <= TARGETS["median_abs_pct_error"],
        "within_10pct": result["within_10pct"] >= TARGETS["within_10pct"],
        "kendall_tau": (result["kendall_tau"] or -1) >= TARGETS["kendall_tau"],
    }
    print(
        "targets (median <= 5%, >= 90% within ±10%, tau >= 0.8): "
        + ", ".join(f"{name} {'met' if ok else 'MISSED'}" for name, ok in met.items())
        + f"; measured on {table.device}"
    )
    summary = {
        "device": table.device,
        "torch": torch.__version__,
        "threads": args.threads,
        "clock": args.clock,
        "load_average_end": os.getloadavg(),
        "space": space.name,
        "space_hash": space.hash,
        "input_size": space.input_size,
        "batch_size": args.batch_size,
        "build_seconds": build_seconds,
        "measuring_seconds": measuring_seconds,
        "interleaved_samples": not args.separate,
        "total_seconds": time.perf_counter() - started,
        "calibration": {k: record[k] for k in ("scale", "offset_ms", "samples", "before", "after")},
        "validation": {k: v for k, v in result.items() if k not in ("archs",)},
        "noise": noise,
        "corrected_entries": corrected
        and {
            "raw": corrected["raw"],
            "calibrated": {k: v for k, v in corrected.items() if k not in ("archs", "raw")},
        },
        "drift_control": drift,
        "uncorrected_validation": uncorrected
        and {k: v for k, v in uncorrected.items() if k not in ("archs",)},
        "noise_uncorrected": noise_uncorrected if drift else None,
        "targets_met": met,
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_latency.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(
        f"wrote {args.out / 'bench_latency.json'} and {args.out / 'table.json'}; "
        f"total {summary['total_seconds']:.0f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
