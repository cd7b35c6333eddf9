"""``nasfuse latency``: build a latency table, measure an architecture, validate a table.

Every printed figure names the device it was measured on.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nasfuse.cli._space_args import add_space_arguments, load_space_from_args

__all__ = ["register"]


def _add_measurement_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=int, default=32, help="batch size (default 32)")
    parser.add_argument(
        "--device", default=None, help="target device (default: GPU if any, else CPU)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads while measuring on the CPU (default: the current count)",
    )


def _add_clock_option(parser: argparse.ArgumentParser, default: str | None = "wall") -> None:
    parser.add_argument(
        "--clock",
        choices=("wall", "thread"),
        default=default,
        help="wall: latency (default); thread: CPU time of the measuring thread, steadier "
        "on a busy shared CPU (needs --threads 1)",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``nasfuse latency {build,measure,validate}``."""
    parser = subparsers.add_parser(
        "latency",
        help="measure latency and build/validate the latency lookup table",
        description="Latency on the target device: a lookup table per (site, op), "
        "end-to-end measurement of one architecture, and validation of the table.",
    )
    commands = parser.add_subparsers(dest="latency_command", metavar="ACTION", required=True)
    _register_build(commands)
    _register_measure(commands)
    _register_validate(commands)


def _register_build(commands: argparse._SubParsersAction) -> None:
    build = commands.add_parser("build", help="measure a latency table for a space and save it")
    add_space_arguments(build, required=True)
    _add_measurement_options(build)
    build.add_argument(
        "--out",
        type=Path,
        default=None,
        help="table file (default runs/latency/<space>-<hash>-b<B>.json)",
    )
    build.add_argument(
        "--calibrate",
        type=int,
        default=0,
        metavar="N",
        help="calibrate on N random archs (default 0: no calibration)",
    )
    build.add_argument(
        "--seed", type=int, default=0, help="seed of the calibration sample (default 0)"
    )
    _add_run_count_options(build)
    build.add_argument(
        "--method",
        choices=("network", "isolated"),
        default="network",
        help="time ops inside per-op networks (default) or alone at each site's shape",
    )
    build.add_argument(
        "--channels-last", action="store_true", help="measure in channels_last memory format"
    )
    build.add_argument(
        "--no-drift-control",
        dest="drift_control",
        action="store_false",
        help="time networks alone, not against the all-add network in turn (see README)",
    )
    _add_clock_option(build)
    build.set_defaults(func=_build)


def _add_run_count_options(build: argparse.ArgumentParser) -> None:
    """``latency build``'s run counts, defaulting to those the table uses everywhere."""
    from nasfuse.latency.timing import DEFAULT_RUNS

    for flag, default, what in (
        ("--runs", DEFAULT_RUNS.runs, "timed runs per op and round"),
        ("--network-runs", DEFAULT_RUNS.network_runs, "timed runs per network and round"),
        ("--rounds", DEFAULT_RUNS.rounds, "interleaved rounds"),
        ("--warmup", DEFAULT_RUNS.warmup, "untimed runs per measurement"),
    ):
        build.add_argument(flag, type=int, default=default, help=f"{what} (default {default})")


def _register_measure(commands: argparse._SubParsersAction) -> None:
    measure = commands.add_parser("measure", help="measure one architecture end to end")
    measure.add_argument("arch", type=Path, help="architecture YAML (as written by export)")
    _add_measurement_options(measure)
    measure.add_argument("--warmup", type=int, default=10, help="untimed runs first (default 10)")
    measure.add_argument("--runs", type=int, default=50, help="timed runs (default 50)")
    measure.add_argument("--channels-last", action="store_true", help="channels_last memory format")
    measure.add_argument(
        "--table",
        type=Path,
        default=None,
        help="also print this table's prediction (measuring with its threads and clock)",
    )
    measure.add_argument("--json", action="store_true", help="print one JSON object")
    _add_clock_option(measure, default=None)
    measure.set_defaults(func=_measure)


def _register_validate(commands: argparse._SubParsersAction) -> None:
    validate = commands.add_parser(
        "validate", help="compare a table's predictions with measurements of fresh random archs"
    )
    add_space_arguments(validate, required=True)
    _add_measurement_options(validate)
    validate.add_argument(
        "--samples", type=int, default=30, help="random archs to measure (default 30)"
    )
    validate.add_argument("--seed", type=int, default=1, help="seed of the sample (default 1)")
    validate.add_argument(
        "--table", type=Path, default=None, help="table file (default: the build location)"
    )
    validate.add_argument("--json", action="store_true", help="print one JSON object")
    validate.set_defaults(func=_validate)


def _clock_note(clock: str) -> str:
    return "" if clock == "wall" else " (thread CPU time, not wall-clock latency)"


def _build(args: argparse.Namespace) -> int:
    from nasfuse.latency import BuildOptions, LatencyTable, default_table_path, format_errors

    space = load_space_from_args(args)
    out = args.out if args.out is not None else default_table_path(space, args.batch_size)
    options = BuildOptions(
        batch_size=args.batch_size,
        device=args.device,
        threads=args.threads,
        channels_last=args.channels_last,
        runs=args.runs,
        rounds=args.rounds,
        network_runs=args.network_runs,
        warmup=args.warmup,
        method=args.method,
        clock=args.clock,
        drift_control=args.drift_control,
    )
    table = LatencyTable.build(space, options)
    print(
        f"latency table for {space.name} ({len(table.sites)} sites, "
        f"{table.measurement['op_entries']} op entries) built in "
        f"{table.measurement['build_seconds']:.1f} s on {table.device}{_clock_note(table.clock)}, "
        f"batch {table.batch_size}; "
        f"base {table.base_ms:.2f} ms"
    )
    if args.calibrate:
        record = table.calibrate(space, samples=args.calibrate, seed=args.seed)
        print(
            f"calibrated on {record['samples']} archs ({record['form']}): scale "
            f"{record['scale']:.3f}, offset "
            f"{record['offset_ms']:+.2f} ms; {format_errors(record['before'])} before, "
            f"{format_errors(record['after'])} after (in-sample), on {table.device}"
        )
    table.save(out)
    print(f"wrote {out}")
    return 0


def _measure(args: argparse.Namespace) -> int:
    from nasfuse.arch import load_arch
    from nasfuse.latency import LatencyTable, measure_latency
    from nasfuse.runtime import default_device
    from nasfuse.supernet import build_model

    arch, space = load_arch(args.arch)
    table = None
    threads, clock = args.threads, args.clock
    if args.table is not None:
        # Measure the way the table was measured unless told otherwise.
        table = LatencyTable.load(
            args.table,
            space=space,
            batch_size=args.batch_size,
            device=args.device if args.device is not None else default_device(),
            threads=args.threads,
            clock=args.clock,
        )
        threads = table.threads if threads is None else threads
        clock = table.clock if clock is None else clock
    model = build_model(space, arch)
    shape = (args.batch_size, space.in_chans, space.input_size, space.input_size)
    stats = measure_latency(
        model,
        shape,
        device=args.device,
        warmup=args.warmup,
        runs=args.runs,
        channels_last=args.channels_last,
        threads=threads,
        clock=clock or "wall",
    )
    predicted = table.predict(arch) if table is not None else None
    # A table with drift control predicts latency at the machine's speed while it was
    # built; measured against its reference network, the arch is on the same footing.
    at_table_speed = None
    if table is not None and table.measurement.get("drift_reference_ms") is not None:
        (at_table_speed,) = table.measure(space, [arch], progress=False).ms
    if args.json:
        print(
            json.dumps(
                {
                    **stats.to_dict(),
                    "arch": str(args.arch),
                    "predicted_ms": predicted,
                    "at_table_speed_ms": at_table_speed,
                }
            )
        )
        return 0
    print(f"{args.arch}: {stats}")
    if predicted is not None:
        compared = at_table_speed if at_table_speed is not None else stats.median_ms
        error = (predicted - compared) / compared * 100
        if at_table_speed is not None:
            print(
                f"against the table's reference network, at the speed it had while the table "
                f"was built: {at_table_speed:.3f} ms"
            )
        print(f"table {args.table} predicts {predicted:.3f} ms ({error:+.1f}%) on {stats.device}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from nasfuse.latency import LatencyTable, default_table_path, format_errors
    from nasfuse.runtime import default_device

    space = load_space_from_args(args)
    path = args.table if args.table is not None else default_table_path(space, args.batch_size)
    table = LatencyTable.load(
        path,
        space=space,
        batch_size=args.batch_size,
        device=args.device if args.device is not None else default_device(),
        threads=args.threads,
    )
    result = table.validate(space, samples=args.samples, seed=args.seed)
    table.save(path)
    if args.json:
        keys = ("device", "median_abs_pct_error", "within_10pct", "kendall_tau", "samples", "clock")
        print(json.dumps({key: result[key] for key in keys}))
        return 0
    state = "calibrated" if result["calibrated"] else "uncalibrated"
    print(
        f"{state} table {path} on {result['samples']} fresh archs (seed {args.seed}), "
        f"batch {table.batch_size}: {format_errors(result)}; measured on {result['device']}"
        f"{_clock_note(table.clock)}"
    )
    return 0
