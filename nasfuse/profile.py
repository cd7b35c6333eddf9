"""Model cost: parameters and FLOPs from a real counter (``torch.utils.flop_counter``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_params", "count_flops"]


def count_params(module: nn.Module) -> int:
    """Number of parameters (trainable or not) in ``module``."""
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def count_flops(module: nn.Module, *inputs: torch.Tensor | Sequence[torch.Tensor]) -> int:
    """FLOPs of one forward pass of ``module(*inputs)`` in eval mode.

    Counted by ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add is 2 FLOPs;
    elementwise ops are not counted, as is usual for this counter). The module's
    train/eval mode is restored afterwards.
    """
    was_training = module.training
    module.eval()
    try:
        counter = FlopCounterMode(display=False)
        with counter:
            module(*inputs)
        return int(counter.get_total_flops())
    finally:
        module.train(was_training)
