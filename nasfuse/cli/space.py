"""``nasfuse space``: list the shipped spaces, show sites, cost or write an architecture.

Examples::

    nasfuse space list
    nasfuse space show hrnet_lite --set width_mult=0.5
    nasfuse space cost hrnet_lite --arch aff            # params and FLOPs, every site -> aff
    nasfuse space cost resnet20 --arch runs/x/best.yaml
    nasfuse space arch resnet20 --op add --out all-add.yaml   # an arch file to retrain
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nasfuse.cli._space_args import add_space_arguments, load_space_from_args

__all__ = ["register", "format_size"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``space list``, ``space show``, ``space cost`` and ``space arch``."""
    parser = subparsers.add_parser(
        "space", help="search spaces: list, show sites, params/FLOPs of an architecture"
    )
    commands = parser.add_subparsers(dest="space_command", metavar="SUBCOMMAND", required=True)

    listing = commands.add_parser("list", help="the shipped search spaces")
    listing.set_defaults(func=list_command)

    show = commands.add_parser(
        "show", help="every site: name, C, K, HxW, allowed ops; the space size"
    )
    add_space_arguments(show, positional=True)
    show.set_defaults(func=show_command)

    cost = commands.add_parser("cost", help="params and FLOPs of one architecture")
    add_space_arguments(cost, positional=True)
    cost.add_argument(
        "--arch", required=True, help="an architecture YAML file, or an op name for every site"
    )
    cost.add_argument("--num-classes", type=int, default=10, help="classifier outputs (10)")
    cost.set_defaults(func=cost_command)

    write = commands.add_parser(
        "arch", help="write an architecture file with one op at every site (e.g. all-add)"
    )
    add_space_arguments(write, positional=True)
    write.add_argument("--op", required=True, help="the op of every site (add, aff, ...)")
    write.add_argument("--out", type=Path, required=True, help="the YAML file to write")
    write.set_defaults(func=arch_command)


def format_size(size: int) -> str:
    """``"4.27e+63"`` style for large counts, the exact integer for small ones."""
    return f"{size:,}" if size < 10**9 else f"{size:.3e}"


def list_command(args: argparse.Namespace) -> int:
    """Print each shipped space: name, family, input, sites, size."""
    from nasfuse.spaces import list_spaces, load_space

    print(f"{'space':<14}{'family':<8}{'input':>7}{'sites':>7}{'size':>12}  description")
    for name in list_spaces():
        space = load_space(name)
        print(
            f"{name:<14}{space.family:<8}{space.input_size:>7}{len(space.sites):>7}"
            f"{format_size(space.size()):>12}  {space.config['description']}"
        )
    return 0


def show_command(args: argparse.Namespace) -> int:
    """Print every site of a space with its shape and allowed ops, then the totals."""
    space = load_space_from_args(args)
    options = f", options {space.options}" if space.options else ""
    print(f"space {space.name} ({space.family}) from {space.source}{options}; hash {space.hash}")
    print(
        f"input {space.in_chans}x{space.input_size}x{space.input_size}, "
        f"width_mult {space.config['width_mult']}, ops {', '.join(space.config['ops'])}"
    )
    width = max(len(name) for name in space.sites)
    print(f"{'site':<{width}}  {'C':>4}  {'K':>2}  {'HxW':>7}  ops")
    for site in space.sites.values():
        print(
            f"{site.name:<{width}}  {site.channels:>4}  {site.num_inputs:>2}  "
            f"{f'{site.height}x{site.width}':>7}  {' '.join(site.ops)}"
        )
    size = space.size()
    print(f"{len(space.sites)} sites; space size {format_size(size)} architectures ({size})")
    return 0


def cost_command(args: argparse.Namespace) -> int:
    """Print params and FLOPs (batch 1, the space's input size) of one architecture."""
    from nasfuse.arch import arch_from_argument, arch_hash
    from nasfuse.supernet import arch_cost

    space = load_space_from_args(args)
    arch = arch_from_argument(args.arch, space)
    params, flops = arch_cost(space, arch, num_classes=args.num_classes)
    print(
        f"space {space.name} (hash {space.hash}), arch {args.arch} (hash {arch_hash(arch)}), "
        f"input {space.in_chans}x{space.input_size}x{space.input_size}, batch 1, "
        f"{args.num_classes} classes"
    )
    print(f"params {params:,} ({params / 1e6:.3f} M)")
    print(f"FLOPs  {flops:,} ({flops / 1e6:.1f} MFLOPs; a multiply-add counts 2)")
    return 0


def arch_command(args: argparse.Namespace) -> int:
    """Write the uniform architecture of ``--op`` as an architecture file."""
    from nasfuse.arch import arch_from_argument, save_arch

    space = load_space_from_args(args)
    save_arch(arch_from_argument(args.op, space), args.out, space)
    print(f"{args.out}: every one of the {len(space.sites)} sites of {space.name} -> {args.op}")
    return 0
