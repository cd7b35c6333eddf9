"""The arguments that name a search space, shared by every subcommand that takes one."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_space_arguments", "space_options", "load_space_from_args"]


def add_space_arguments(
    parser: argparse.ArgumentParser,
    positional: bool = False,
    required: bool = False,
    default_hint: str | None = None,
) -> None:
    """Add the space (``--space S``, or a positional ``NAME_OR_PATH``) and ``--set k=v``.

    Args:
        parser: the subcommand's parser.
        positional: the space is a positional argument instead of ``--space``.
        required: ``--space`` must be given (a positional one always is).
        default_hint: what the subcommand uses when ``--space`` is not given.
    """
    what = "a shipped space name or a space YAML file"
    if positional:
        parser.add_argument("space", metavar="NAME_OR_PATH", help=what)
    else:
        hint = f" (default: {default_hint})" if default_hint else ""
        parser.add_argument("--space", required=required, default=None, help=what + hint)
    parser.add_argument(
        "--set",
        dest="space_overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a space option, e.g. --set width_mult=0.5 (dotted for nested keys: "
        "stages.0.modules=1); repeatable",
    )


def space_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``--set`` overrides as a mapping (values parsed as YAML scalars)."""
    from nasfuse.config import parse_overrides

    return parse_overrides(args.space_overrides)


def load_space_from_args(args: argparse.Namespace) -> Any:
    """The :class:`~nasfuse.spaces.SearchSpace` named by ``args.space`` and ``--set``."""
    from nasfuse.spaces import load_space

    return load_space(args.space, space_options(args))
