"""``nasfuse validate-supernet``: the supernet's ranking against stand-alone training.

Example::

    nasfuse validate-supernet --run runs/supernet-resnet20-digits --archs 10 --epochs 5 \\
        --train-subset 300
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nasfuse.cli._overrides_args import add_overrides_argument

__all__ = ["register"]


def _validate_supernet(args: argparse.Namespace) -> int:
    from nasfuse.config import parse_overrides
    from nasfuse.validation import ValidationConfig, format_validation_table, validate_supernet

    include = (
        None
        if args.include == "all"
        else [op.strip() for op in args.include.split(",") if op.strip()]
    )
    cfg = ValidationConfig(
        archs=args.archs,
        include_ops=include,
        epochs=args.epochs,
        seeds=args.seeds,
        bootstrap=args.bootstrap,
        train_subset=args.train_subset,
        seed=args.seed,
        top_k=args.top_k,
        calib_batches=args.calib_batches,
        finetune_steps=args.finetune_steps,
        **({"finetune_lr": args.finetune_lr} if args.finetune_lr is not None else {}),
        few_shot_epochs=args.few_shot_epochs,
        few_shot_site=args.few_shot_site,
        retrain_options=parse_overrides(args.overrides),
        standalone_dir=str(args.standalone_dir) if args.standalone_dir else None,
        latency_table=str(args.latency_table) if args.latency_table else None,
        data_dir=args.data_dir,
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
            "Pick architectures spread over the latency range (plus every uniform one), "
            "score each with the supernet's inherited weights after BatchNorm "
            "recalibration, train each from scratch with a short fixed budget and --seeds "
            "seeds (one Ray Tune trial each), and report Kendall tau, Spearman rho and "
            "top-k precision against the seeds' mean, with bootstrap intervals, beside the "
            "noise ceiling (seed 0 against seed 1) and the latency and parameter-count "
            "predictors. Writes validation.json and a TensorBoard scatter image; finished "
            "trainings are reused by a rerun."
        ),
    )
    _add_pick_and_budget_arguments(parser)
    _add_scoring_arguments(parser)
    _add_output_arguments(parser)
    _add_ray_arguments(parser)
    add_overrides_argument(
        parser, "other stand-alone training settings (RetrainConfig keys), e.g. lr=0.1"
    )
    parser.set_defaults(func=_validate_supernet)


def _add_pick_and_budget_arguments(parser: argparse.ArgumentParser) -> None:
    """The run, which architectures, the stand-alone budget and the statistics' settings."""
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
        "--seeds",
        type=int,
        default=2,
        help="stand-alone trainings per architecture, seeds SEED, SEED+1, ... (default 2: "
        "the ground truth is their mean, the noise ceiling compares the first two)",
    )
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=1000,
        help="bootstrap resamples of the architectures for the intervals (default 1000)",
    )
    parser.add_argument(
        "--train-subset",
        type=int,
        default=None,
        help="stand-alone training on a fixed subset of this many images (default: all)",
    )
    parser.add_argument(
        "--include",
        default="all",
        help="ops whose uniform architecture is always included, comma-separated "
        "(default all: every op of the space, with add where an op is not allowed)",
    )
    parser.add_argument(
        "--top-k", type=int, default=None, help="k of top-k precision (default max(1, n//4))"
    )


def _add_scoring_arguments(parser: argparse.ArgumentParser) -> None:
    """How the supernet scores an architecture: recalibration, fine-tuning, few-shot."""
    parser.add_argument(
        "--calib-batches", type=int, default=20, help="BN recalibration batches (default 20)"
    )
    parser.add_argument(
        "--finetune-steps",
        type=int,
        default=0,
        help="fine-tune each architecture's inherited weights this many steps before "
        "scoring it (default 0: score them as inherited)",
    )
    parser.add_argument(
        "--finetune-lr",
        type=float,
        default=None,
        help="the fine-tuning's learning rate (default: DEFAULT_FINETUNE_LR, 0.01)",
    )
    parser.add_argument(
        "--few-shot-epochs",
        type=int,
        default=0,
        help="score with few-shot sub-supernets (one per op at --few-shot-site), each "
        "trained this many epochs from the supernet; reused if the run has them (default 0)",
    )
    parser.add_argument(
        "--few-shot-site", default=None, help="the site to split on (default: the last)"
    )


def _add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the outputs and the trainings go, and where the run's dataset is."""
    parser.add_argument("--out", type=Path, default=None, help="default <run>/validation")
    parser.add_argument(
        "--standalone-dir",
        type=Path,
        default=None,
        help="where trainings are kept (default <out>/standalone); share it between runs",
    )
    parser.add_argument(
        "--latency-table",
        type=Path,
        default=None,
        metavar="JSON",
        help="the latency table that places the picks (default: the run's, else one built "
        "in --out)",
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="where the run's dataset is now (default: where the supernet was trained from)",
    )


def _add_ray_arguments(parser: argparse.ArgumentParser) -> None:
    """The Ray that runs the stand-alone trainings."""
    parser.add_argument(
        "--ray-address",
        default=None,
        help="join this Ray cluster (default: $RAY_ADDRESS, else a local Ray on 127.0.0.1)",
    )
    parser.add_argument(
        "--num-cpus", type=int, default=None, help="CPUs of a local Ray (default: all)"
    )
    parser.add_argument(
        "--gpus-per-training",
        type=float,
        default=0.0,
        help="GPUs (or a share, e.g. 0.5) each stand-alone training asks Ray for",
    )
