"""``nasfuse train-supernet``, ``nasfuse retrain`` and ``nasfuse eval``.

Precedence of settings, lowest first: the config dataclass's defaults, ``--config FILE``
(with ``--resume``, the run's own ``config.yaml`` when no ``--config`` is given), the
explicit flags (``--epochs`` ...), then trailing ``key=value`` overrides.

Under ``torchrun --nproc-per-node N -m nasfuse train-supernet ...`` training runs with
DDP over the N processes; only rank 0 writes files and prints.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from nasfuse.cli._data_args import add_data_arguments
from nasfuse.cli._overrides_args import add_overrides_argument
from nasfuse.cli._space_args import add_space_arguments, space_options

__all__ = ["register"]


def _add_training_options(parser: argparse.ArgumentParser, overrides_help: str) -> None:
    """Flags shared by train-supernet and retrain (None: keep the config's value)."""
    add_data_arguments(parser)
    parser.add_argument("--epochs", type=int, default=None, help="training epochs")
    parser.add_argument("--batch-size", type=int, default=None, help="batch size per process")
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate")
    parser.add_argument("--seed", type=int, default=None, help="seed (default 0)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: one per core)"
    )
    parser.add_argument("--out", type=Path, default=None, help="run directory")
    parser.add_argument("--config", type=Path, default=None, help="YAML config file")
    parser.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its checkpoint"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    add_overrides_argument(parser, overrides_help)


def _flag_values(args: argparse.Namespace, names: dict[str, str]) -> dict[str, Any]:
    """``{config key: value}`` for the flags the user gave."""
    values = {key: getattr(args, attr) for attr, key in names.items()}
    if getattr(args, "no_progress", False):
        values["progress"] = False
    return {key: value for key, value in values.items() if value is not None}


_COMMON_FLAGS = {
    "dataset": "dataset",
    "data_dir": "data_dir",
    "download": "download",
    "train_subset": "train_subset",
    "epochs": "epochs",
    "batch_size": "batch_size",
    "lr": "lr",
    "seed": "seed",
    "threads": "threads",
}


def _load_cfg(cls: type, args: argparse.Namespace, out: Path | None, flags: dict[str, Any]) -> Any:
    from nasfuse.config import load_config, parse_overrides

    config_file = args.config
    if config_file is None and args.resume and out is not None and (out / "config.yaml").is_file():
        config_file = out / "config.yaml"
    overrides = {**flags, **parse_overrides(args.overrides)}
    return load_config(cls, config_file, overrides)


def _is_main_process() -> bool:
    """Under torchrun only rank 0 prints the summary (every rank runs the handler)."""
    return int(os.environ.get("RANK", "0")) == 0


def _space_label(space: str) -> str:
    return Path(space).stem if space.endswith((".yaml", ".yml")) else space


def _train_supernet(args: argparse.Namespace) -> int:
    from nasfuse.training import SupernetTrainConfig, train_supernet

    flags = _flag_values(args, {**_COMMON_FLAGS, "space": "space", "sampler": "sampler"})
    options = space_options(args)
    # --out may be needed to find the run's config.yaml on --resume.
    cfg = _load_cfg(SupernetTrainConfig, args, args.out, flags)
    if options:
        cfg.space_options = {**cfg.space_options, **options}
    out = args.out or Path("runs") / f"supernet-{_space_label(cfg.space)}-{cfg.dataset}"
    if args.out is None and args.resume and args.config is None and (out / "config.yaml").is_file():
        cfg = _load_cfg(SupernetTrainConfig, args, out, flags)
        if options:
            cfg.space_options = {**cfg.space_options, **options}
    path = train_supernet(cfg, out, resume=args.resume)
    if not _is_main_process():
        return 0
    print(f"supernet: {path}")
    print(f"tensorboard --logdir {out / 'tb'}")
    return 0


def _retrain(args: argparse.Namespace) -> int:
    from nasfuse.arch import arch_hash, load_arch
    from nasfuse.training import RetrainConfig, retrain

    flags = _flag_values(args, {**_COMMON_FLAGS, "init": "init", "supernet": "supernet"})
    cfg = _load_cfg(RetrainConfig, args, args.out, flags)
    out = args.out
    if out is None:
        arch, _ = load_arch(args.arch)
        stem = Path(args.arch).stem
        out = Path("runs") / f"retrain-{stem}-{arch_hash(arch)[:8]}-{cfg.dataset}"
        if args.resume and args.config is None and (out / "config.yaml").is_file():
            cfg = _load_cfg(RetrainConfig, args, out, flags)
    metrics = retrain(args.arch, cfg, out, resume=args.resume)
    if not _is_main_process():
        return 0
    print(
        f"test accuracy {metrics['test_acc']:.4f} (val {metrics['val_acc']:.4f}) on "
        f"{metrics['dataset']}, {metrics['params']:,} params, {metrics['flops'] / 1e6:.2f} MFLOPs, "
        f"{metrics['epochs']} epochs in {metrics['wall_time_s']:.0f} s on {metrics['device']}"
    )
    print(f"model: {out / 'model.pt'}  metrics: {out / 'metrics.json'}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from nasfuse.arch import load_arch
    from nasfuse.data import build_loaders
    from nasfuse.files import CheckpointError, load_checkpoint
    from nasfuse.runtime import device_name
    from nasfuse.training import evaluate, model_cost

    arch, space = load_arch(args.arch)
    checkpoint = load_checkpoint(args.checkpoint)  # read once; its kind says what it holds
    kind = checkpoint.get("kind")
    if kind not in _EVAL_WEIGHTS:
        raise CheckpointError(
            f"{args.checkpoint}: expected a 'model' (retrain) or 'supernet' checkpoint, "
            f"found kind {kind!r}"
        )
    network = _EVAL_WEIGHTS[kind](args, checkpoint, arch, space)
    num_classes, in_chans = int(checkpoint["num_classes"]), int(checkpoint["in_chans"])
    dataset = args.dataset or checkpoint.get("dataset", "digits")
    bundle = build_loaders(
        dataset,
        input_size=space.input_size,
        batch_size=args.batch_size,
        data_dir=args.data_dir,
    )
    if (bundle.num_classes, bundle.in_chans) != (num_classes, in_chans):
        raise ValueError(
            f"{args.checkpoint}: the network has {num_classes} classes and {in_chans} input "
            f"channels; {dataset} has {bundle.num_classes} and {bundle.in_chans}"
        )
    loader = bundle.test if args.split == "test" else bundle.val
    model = network
    if kind == "supernet":
        model = _path_of_supernet(args, network, arch, bundle)
    accuracy = evaluate(model, loader)
    params, flops = model_cost(model, in_chans, space.input_size)
    result = {
        "accuracy": accuracy,
        "split": args.split,
        "dataset": dataset,
        "images": len(loader.dataset),
        "params": params,
        "flops": flops,
        "input": [1, in_chans, space.input_size, space.input_size],
        "checkpoint": str(args.checkpoint),
        "kind": kind,
        "device": device_name("cpu"),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print_eval(args, space, result)
    return 0


def _trained_model(args: argparse.Namespace, checkpoint: Any, arch: Any, space: Any) -> Any:
    """The retrained network of a ``model`` checkpoint, which must be of ``arch``."""
    from nasfuse.training.retraining import model_from_checkpoint

    model, _ = model_from_checkpoint(checkpoint, args.checkpoint, arch=arch, space=space)
    return model


def _checked_supernet(args: argparse.Namespace, checkpoint: Any, arch: Any, space: Any) -> Any:
    """The supernet of a ``supernet`` checkpoint, which must be of the arch's space."""
    from nasfuse.training.supernet_training import supernet_from_checkpoint

    supernet = supernet_from_checkpoint(checkpoint, args.checkpoint)
    remedy = f"evaluate {args.arch} with a checkpoint of its own space"
    space.check_hash(supernet.space, "this supernet", args.checkpoint, remedy)
    return supernet


def _path_of_supernet(args: argparse.Namespace, supernet: Any, arch: Any, bundle: Any) -> Any:
    """Inherited weights: BN recalibrated for this path, then the path as a network."""
    from nasfuse.training import evaluate_arch

    evaluate_arch(supernet, arch, bundle, calib_batches=args.calib_batches)
    return supernet.extract(arch).eval()


# The network each kind of checkpoint ``nasfuse eval`` takes holds.
_EVAL_WEIGHTS = {"model": _trained_model, "supernet": _checked_supernet}


def _print_eval(args: argparse.Namespace, space: Any, result: dict[str, Any]) -> None:
    """``nasfuse eval``'s report for a reader."""
    size, in_chans = space.input_size, result["input"][1]
    weights = "trained model" if result["kind"] == "model" else "supernet weights, BN recalibrated"
    print(f"arch: {args.arch} (space {space.name}, {weights})")
    print(
        f"{args.split} accuracy: {result['accuracy']:.4f} "
        f"({result['images']} images of {result['dataset']})"
    )
    print(f"params: {result['params']:,}")
    print(f"FLOPs: {result['flops'] / 1e6:.2f} M for one {in_chans}x{size}x{size} image")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``nasfuse train-supernet``, ``nasfuse retrain`` and ``nasfuse eval``."""
    _register_train_supernet(subparsers)
    _register_retrain(subparsers)
    _register_eval(subparsers)


def _register_train_supernet(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train-supernet",
        help="train a single-path supernet (uniform or fair sampling)",
        description="Train a supernet: each step trains one sampled path. Writes "
        "config.yaml, supernet.pt (every epoch) and TensorBoard curves in tb/. "
        "Defaults: hrnet_lite on digits, 30 epochs, batch 32, SGD lr 0.05 cosine; "
        "out dir runs/supernet-<space>-<dataset>.",
    )
    add_space_arguments(parser, default_hint="hrnet_lite")
    parser.add_argument(
        "--sampler", choices=["uniform", "fair"], default=None, help="path sampler (uniform)"
    )
    _add_training_options(
        parser, "config overrides, e.g. weight_decay=1e-4 opt=adamw eval_archs=0 (given together)"
    )
    parser.set_defaults(func=_train_supernet)


def _register_retrain(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "retrain",
        help="train an exported architecture and score it on the test split",
        description="Train the network of an arch file from scratch or from supernet "
        "weights; writes model.pt, metrics.json, config.yaml and tb/. Defaults: digits, "
        "15 epochs, batch 32, SGD lr 0.05 cosine; out dir "
        "runs/retrain-<arch>-<hash>-<dataset>.",
    )
    parser.add_argument("arch", type=Path, help="architecture YAML file")
    parser.add_argument(
        "--init", choices=["scratch", "supernet"], default=None, help="initial weights (scratch)"
    )
    parser.add_argument("--supernet", default=None, help="supernet.pt for --init supernet")
    _add_training_options(
        parser, "config overrides right after ARCH, e.g. ARCH weight_decay=1e-4 --epochs 5"
    )
    parser.set_defaults(func=_retrain)


def _register_eval(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="score an architecture's trained model (or its supernet weights)",
        description="Accuracy, params and FLOPs of an architecture, with the weights of "
        "a retrained model.pt or (after BN recalibration) of a supernet.pt.",
    )
    parser.add_argument("arch", type=Path, help="architecture YAML file")
    parser.add_argument(
        "--checkpoint", type=Path, required=True, help="model.pt (retrain) or supernet.pt"
    )
    add_data_arguments(
        parser,
        default_hint="the one the checkpoint was trained on",
        download=False,
        train_subset=False,
    )
    parser.add_argument("--split", choices=["test", "val"], default="test", help="(test)")
    parser.add_argument("--batch-size", type=int, default=128, help="batch size (128)")
    parser.add_argument(
        "--calib-batches",
        type=int,
        default=20,
        help="BN recalibration batches for supernet weights (20)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=_eval)
