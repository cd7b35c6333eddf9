"""``nasfuse ops``: every fusion op's parameters, FLOPs and (optionally) latency, as a table."""

from __future__ import annotations

import argparse

__all__ = ["register", "run_ops"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``ops`` subcommand to ``subparsers``."""
    parser = subparsers.add_parser(
        "ops",
        help="table of the fusion ops: parameters, FLOPs, latency",
        description=(
            "Build every registered fusion op for K inputs of (B, C, H, W) and print its "
            "parameters and FLOPs (torch.utils.flop_counter, a multiply-add counts 2); with "
            "--latency also its median latency on this machine."
        ),
    )
    parser.add_argument("--channels", type=int, default=64, help="C (default 64)")
    parser.add_argument("--inputs", type=int, default=2, help="K, inputs fused (default 2)")
    parser.add_argument("--size", type=int, default=32, help="H = W (default 32)")
    parser.add_argument("--batch", type=int, default=1, help="B (default 1)")
    parser.add_argument(
        "--latency", action="store_true", help="also time each op (median after warm-up)"
    )
    parser.add_argument("--runs", type=int, default=30, help="timed runs with --latency")
    parser.add_argument("--warmup", type=int, default=5, help="warm-up runs with --latency")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads while timing on the CPU (default: the current count; use 1 on a "
        "busy shared machine)",
    )
    parser.add_argument(
        "--clock",
        choices=("wall", "thread"),
        default="wall",
        help="'thread': CPU time of the timing thread instead of elapsed time, for a busy "
        "shared CPU (needs --threads 1)",
    )
    parser.set_defaults(func=run_ops)


def run_ops(args: argparse.Namespace) -> int:
    """Print the table; ``ValueError`` on sizes no op can use."""
    import torch

    from nasfuse.ops import create_op, list_ops
    from nasfuse.profile import count_flops, count_params
    from nasfuse.runtime import default_device

    for option in ("size", "batch", "runs"):
        if getattr(args, option) < 1:
            raise ValueError(f"--{option} must be >= 1, got {getattr(args, option)}")
    if args.warmup < 0:
        raise ValueError(f"--warmup must be >= 0, got {args.warmup}")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    if args.latency and args.clock == "thread" and (args.threads or torch.get_num_threads()) != 1:
        raise ValueError("--clock thread times one thread's CPU work: add --threads 1")
    measure_latency = None
    if args.latency:
        from nasfuse.latency import measure_latency

    # Build every op first, so that a channel count or K an op cannot use fails before
    # any output.
    ops = {name: create_op(name, args.channels, args.inputs) for name in list_ops()}
    generator = torch.Generator().manual_seed(0)
    shape = (args.batch, args.channels, args.size, args.size)
    xs = [torch.randn(shape, generator=generator) for _ in range(args.inputs)]
    print(
        f"fusion ops for K={args.inputs} inputs of (B, C, H, W) = {shape}; "
        f"FLOPs of one forward pass (multiply-add = 2)"
    )
    header = f"{'op':<10}{'params':>12}{'MFLOPs':>12}"
    if args.latency:
        header += f"{'latency_ms':>13}"
    print(header)
    device_label = None
    for name, op in ops.items():
        row = f"{name:<10}{count_params(op):>12,}{count_flops(op, xs) / 1e6:>12.3f}"
        if measure_latency is not None:
            stats = measure_latency(
                op,
                inputs=xs,
                device=default_device(),
                warmup=args.warmup,
                runs=args.runs,
                threads=args.threads,
                clock=args.clock,
            )
            device_label = stats.device
            row += f"{stats.median_ms:>13.3f}"
        print(row)
    if device_label is not None:
        print(
            f"latency: median of {args.runs} runs after {args.warmup} warm-up runs, eval mode, "
            f"torch.inference_mode, {'elapsed' if args.clock == 'wall' else 'thread CPU'} "
            f"time, on {device_label}"
        )
    return 0
