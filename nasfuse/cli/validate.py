"""``nasfuse validate-supernet``: the supernet's ranking against stand-alone training.

Example::

    nasfuse validate-supernet --run runs/supernet-resnet20-digits --archs 10 --epochs 5 \\
        --train-subset 300
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register"]


def _validate_supernet(args: argparse.Namespace) -> int:
    from nasfuse.config import parse_overrides
    from nasfuse.validation import ValidationConfig, format_validation_table, validate_supernet

    include = [op.strip() for op in args.include.split(",") if op.strip()]
    cfg = ValidationConfig(
        archs=args.archs,
        include_ops=include,
        epochs=args.epochs,
        train_subset=args.train_subset,
        seed=args.seed,
        top_k=args.top_k,
        calib_batches=args.calib_batches,
        retrain_options=parse_overrides(args.overrides),
        standalone_dir=str(args.standalone_dir) if args.standalone_dir else None,
        ray_address=args.ray_address,
        num_cpus=args.num_cpus,
        gpus_per_training=args.gpus_per_training,
    )
    result = validate_supernet(args.run, cfg, args.out)
    print(format_validation_table(result.report))
    budget = result.report["standalone_budget"]
    print(
        f"stand-alone budget: {budget['epochs']} epochs, training subset "
        f"{budget['train_subset'] or 'all'}, seed {budget['seed']}; wall time "
        f"{result.report['wall_time_s']['total']:.0f} s on {result.report['machine']}"
    )
    print(f"written: {result.path}")
    print(f"tensorboard --logdir {result.path.parent / 'tensorboard'}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``validate-supernet``."""
    parser = subparsers.add_parser(
        "validate-supernet",
        help="rank correlation between supernet scores and stand-alone training",
        description=(
            "Pick architectures spread over the latency range (plus all-add and all-aff), "
            "score each with the supernet's inherited weights after BatchNorm "
            "recalibration, train each from scratch with a short fixed budget (one Ray Tune "
            "trial each), and report Kendall tau, Spearman rho and top-k precision. Writes "
            "validation.json and a TensorBoard scatter image; finished trainings are reused "
            "by a rerun."
        ),
    )
    parser.add_argument(
        "--run",
        type=Path,
        required=True,
        help="run directory with supernet.pt (train-supernet) or supernet/supernet.pt (search)",
    )
    parser.add_argument(
        "--archs", type=int, default=10, help="architectures spread over latency (default 10)"
    )
    parser.add_argument(
        "--epochs", type=int, default=5, help="stand-alone training epochs (default 5)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of picks and trainings")
    parser.add_argument(
        "--train-subset",
        type=int,
        default=None,
        help="stand-alone training on a fixed subset of this many images (default: all)",
    )
    parser.add_argument(
        "--include",
        default="add,aff",
        help="ops whose uniform architecture is always included (default add,aff)",
    )
    parser.add_argument(
        "--top-k", type=int, default=None, help="k of top-k precision (default max(1, n//4))"
    )
    parser.add_argument(
        "--calib-batches", type=int, default=20, help="BN recalibration batches (default 20)"
    )
    parser.add_argument("--out", type=Path, default=None, help="default <run>/validation")
    parser.add_argument(
        "--standalone-dir",
        type=Path,
        default=None,
        help="where trainings are kept (default <out>/standalone); share it between runs",
    )
    parser.add_argument("--ray-address", default=None, help="join this Ray cluster")
    parser.add_argument(
        "--num-cpus", type=int, default=None, help="CPUs of a local Ray (default: all)"
    )
    parser.add_argument(
        "--gpus-per-training",
        type=float,
        default=0.0,
        help="GPUs (or a share, e.g. 0.5) each stand-alone training asks Ray for",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="other stand-alone training settings (RetrainConfig keys), e.g. lr=0.1",
    )
    parser.set_defaults(func=_validate_supernet)
