"""The ``nasfuse`` command: a table of subcommands, one module each.

Each module in :data:`COMMAND_MODULES` defines ``register(subparsers)``, which adds its
subcommand(s) and sets ``func`` on the parser to the handler. Handlers import heavy
libraries (Ray, Optuna) themselves, so ``nasfuse --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["main", "build_parser"]

COMMAND_MODULES = ("ops", "space", "train", "latency", "search", "validate", "export_model")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nasfuse",
        description="Neural architecture search over feature-fusion operators.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"nasfuse.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nasfuse`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        resume = (
            "; continue with the same command plus --resume"
            if args.command in ("search", "train-supernet", "retrain")
            else ""
        )
        print(f"nasfuse: interrupted; everything written so far is kept{resume}", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        # User-facing errors (bad YAML, missing data, refused checkpoint) carry their own
        # message naming the file and the problem; a traceback would only bury it.
        if getattr(args, "debug", False):
            raise
        print(f"nasfuse {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        # Disk full, read-only, no permission: writes are atomic, so what was written
        # before (the last checkpoint) is intact and --resume continues from it.
        if getattr(args, "debug", False):
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print(
            f"nasfuse {args.command}: error: {where}{exc.strerror or exc}; earlier outputs are "
            "intact: free the space (or fix the permission) and rerun with --resume",
            file=sys.stderr,
        )
        return 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
