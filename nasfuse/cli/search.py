"""``nasfuse search`` and ``nasfuse export``.

Precedence of settings, lowest first: :class:`~nasfuse.search.SearchConfig` defaults, the
budget (``--budget``), ``--config FILE`` (with ``--resume``, the run's own
``search_config.yaml`` when no ``--config`` is given), the explicit flags, then trailing
``key=value`` overrides of config keys. ``--set key=value`` sets a space option.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from nasfuse.cli._data_args import add_data_arguments
from nasfuse.cli._overrides_args import add_overrides_argument
from nasfuse.cli._space_args import add_space_arguments, space_options

__all__ = ["register"]

_FLAG_KEYS = {
    "space": "space",
    "dataset": "dataset",
    "data_dir": "data_dir",
    "download": "download",
    "train_subset": "train_subset",
    "budget": "budget",
    "trials": "trials",
    "epochs": "supernet_epochs",
    "sampler": "sampler",
    "latency": "latency",
    "max_latency": "max_latency_ms",
    "max_params": "max_params_m",
    "storage": "storage",
    "study_name": "study_name",
    "ray_address": "ray_address",
    "num_cpus": "num_cpus",
    "supernet": "supernet",
    "latency_table": "latency_table",
    "seed": "seed",
    "threads": "threads",
    "pick": "pick",
    "baseline_variants": "baseline_variants",
}


def _search_config(args: argparse.Namespace, out: Path) -> Any:
    from nasfuse.config import load_config, parse_overrides
    from nasfuse.search import SearchConfig
    from nasfuse.search._export import CONFIG_FILE

    config_file = args.config
    if config_file is None and args.resume and (out / CONFIG_FILE).is_file():
        config_file = out / CONFIG_FILE
    values: dict[str, Any] = {
        key: getattr(args, attr)
        for attr, key in _FLAG_KEYS.items()
        if getattr(args, attr) is not None
    }
    for name in ("supernet", "latency_table"):  # files the run reads again on --resume
        if getattr(args, name) is not None:
            values[name] = str(Path(getattr(args, name)).resolve())
    values.update(parse_overrides(args.overrides))
    cfg = load_config(SearchConfig, config_file, values)
    if args.space_overrides:
        cfg.space_options = {**cfg.space_options, **space_options(args)}
        if "width_mult" in cfg.space_options and "width_mult" not in values:
            cfg.width_mult = float(cfg.space_options["width_mult"])
    return cfg


def _run_search(args: argparse.Namespace) -> int:
    from nasfuse.search import SearchConfig, default_run_dir, run_search
    from nasfuse.search._verdict import verdict_lines

    out = args.out
    if out is None:
        probe = SearchConfig(space=args.space or "hrnet_lite", budget=args.budget or "default")
        out = default_run_dir(probe)
    cfg = _search_config(args, Path(out))
    result = run_search(cfg, out, resume=args.resume)
    statuses = ", ".join(f"{n} {s}" for s, n in sorted(result.stats.statuses.items()))
    print(f"search: {statuses}; whole run {result.wall_seconds:.0f} s (wall)")
    print(result.stats.describe())
    print(f"Pareto front ({len(result.front)} architectures; latency on {result.device}):")
    for record in result.front:
        print(
            f"  trial {record.number:4d}  accuracy {record.accuracy:.4f}  "
            f"latency {record.latency_ms:.3f} ms  params {record.params}"
        )
    print(f"best: {result.best_path}")
    print("\n".join(verdict_lines(result.verdict)))
    print(
        f"report: {result.run_dir / 'report.md'}; "
        f"TensorBoard: tensorboard --logdir {result.run_dir / 'tensorboard'}"
    )
    return 0


def _run_export(args: argparse.Namespace) -> int:
    from nasfuse.search._export import export_search
    from nasfuse.search._verdict import verdict_lines

    exported = export_search(args.run, args.pick, args.out)
    print(f"{args.pick}: {exported.best_path}")
    print("\n".join(verdict_lines(exported.verdict)))
    print(f"front: {Path(args.run) / 'pareto.csv'}; report: {Path(args.run) / 'report.md'}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``search`` and ``export``."""
    _add_search(subparsers)
    _add_export(subparsers)


def _add_search(subparsers: argparse._SubParsersAction) -> None:
    search = subparsers.add_parser(
        "search",
        help="search fusion ops: supernet, latency table, Optuna-in-Ray-Tune search, export",
        description=(
            "Train (or reuse) a supernet, build (or reuse) a latency table, search with an "
            "Optuna sampler inside Ray Tune for accuracy (max) and latency (min), and export "
            "the Pareto front, best.yaml and report.md into the run directory."
        ),
    )
    add_space_arguments(search, default_hint="hrnet_lite")
    add_data_arguments(search)
    search.add_argument(
        "--budget",
        choices=["quick", "default", "full"],
        default=None,
        help="quick: <10 min on 2 CPU cores; default: <30 min; full: for GPUs",
    )
    search.add_argument("--trials", type=int, default=None, help="number of trials (budget's)")
    search.add_argument("--epochs", type=int, default=None, help="supernet epochs (budget's)")
    search.add_argument(
        "--sampler", choices=["nsga2", "tpe", "random"], default=None, help="nsga2 (default)"
    )
    search.add_argument(
        "--baseline-variants",
        type=int,
        default=None,
        metavar="N",
        help="one-group variants of all-add enqueued after the uniform architectures "
        "(default: fill NSGA-II's first generation)",
    )
    _add_objective_arguments(search)
    _add_scaling_arguments(search)
    search.add_argument("--supernet", default=None, metavar="CKPT", help="reuse this supernet.pt")
    search.add_argument(
        "--latency-table",
        default=None,
        metavar="JSON",
        help="start from this latency table (nasfuse latency build, or another run's) "
        "instead of building one; checked against the search's settings, copied into the run",
    )
    search.add_argument(
        "--pick", default=None, help="best.yaml rule: knee, max-acc, max-latency=MS, within-noise"
    )
    search.add_argument("--seed", type=int, default=None, help="seed (0)")
    search.add_argument(
        "--threads", type=int, default=None, help="torch threads of the driver (torch's default)"
    )
    search.add_argument(
        "--out", type=Path, default=None, help="run directory (runs/<space>-<budget>)"
    )
    search.add_argument("--config", type=Path, default=None, help="YAML SearchConfig")
    search.add_argument("--resume", action="store_true", help="continue the search in --out")
    add_overrides_argument(search, "SearchConfig overrides, e.g. calib_batches=8")
    search.set_defaults(func=_run_search)


def _add_objective_arguments(search: argparse.ArgumentParser) -> None:
    """The latency objective and the constraints."""
    search.add_argument(
        "--latency", choices=["lut", "measured"], default=None, help="latency objective (lut)"
    )
    search.add_argument(
        "--max-latency", type=float, default=None, metavar="MS", help="latency bound (ms)"
    )
    search.add_argument(
        "--max-params", type=float, default=None, metavar="M", help="params bound (millions)"
    )


def _add_scaling_arguments(search: argparse.ArgumentParser) -> None:
    """Where the study lives and where trials run."""
    search.add_argument(
        "--storage",
        default=None,
        metavar="URL",
        help="Optuna storage: default SQLite RUN/study.db (one driver); several drivers (each "
        "with --resume after the first) can share postgresql://USER:PASSWORD@HOST:PORT/DB "
        "(pip install 'nasfuse[postgres]') or a journal file given as a path ending in .log",
    )
    search.add_argument("--study-name", default=None, help="Optuna study name (nasfuse)")
    search.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="join this Ray cluster (HOST:PORT of its head; default: $RAY_ADDRESS, else a "
        "local Ray on 127.0.0.1)",
    )
    search.add_argument(
        "--num-cpus", type=int, default=None, help="CPUs of a local Ray (default: all)"
    )


def _add_export(subparsers: argparse._SubParsersAction) -> None:
    export = subparsers.add_parser(
        "export",
        help="write pareto.csv, arch YAMLs, best.yaml and report.md from a search run",
    )
    export.add_argument("--run", type=Path, required=True, help="the search run directory")
    export.add_argument(
        "--pick", default="knee", help="knee (default), max-acc, max-latency=MS, within-noise"
    )
    export.add_argument(
        "--out", type=Path, default=None, help="where to write the pick (RUN/best.yaml)"
    )
    export.set_defaults(func=_run_export)
