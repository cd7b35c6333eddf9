"""The trailing ``KEY=VALUE`` config overrides, shared by every subcommand that takes them."""

from __future__ import annotations

import argparse

__all__ = ["add_overrides_argument"]


def add_overrides_argument(parser: argparse.ArgumentParser, help: str) -> None:
    """Add the positional ``KEY=VALUE ...`` overrides, read as ``args.overrides``.

    One declaration keeps the metavar and the argument's name alike in every subcommand;
    each subcommand says in ``help`` which config's keys they override.
    """
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=help)
