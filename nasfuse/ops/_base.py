"""The contract every fusion op shares (see OPS.md, "One contract for every op")."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["FusionOp"]


class FusionOp(nn.Module):
    """Base of every fusion op: ``forward(xs)`` over K aligned ``(B, C, H, W)`` inputs.

    Subclasses implement :meth:`fuse`; :meth:`forward` checks the inputs first so that a
    wrong shape or count fails with a message naming the op and the shapes.

    Args:
        channels: C, the channel count of every input and of the output.
        num_inputs: K, how many inputs the op fuses; ``xs[0]`` is the main path.
    """

    op_name: str = "fusion"
    min_inputs: int = 2

    def __init__(self, channels: int, num_inputs: int) -> None:
        super().__init__()
        if not isinstance(channels, int) or channels < 1:
            raise ValueError(
                f"{self.op_name}: channels must be a positive integer, got {channels!r}"
            )
        if not isinstance(num_inputs, int) or num_inputs < self.min_inputs:
            raise ValueError(
                f"{self.op_name}: num_inputs must be an integer >= {self.min_inputs}, got {num_inputs!r}"
            )
        self.channels = channels
        self.num_inputs = num_inputs

    def check_inputs(self, xs: Sequence[torch.Tensor]) -> None:
        """Raise ``ValueError`` unless ``xs`` holds K tensors of one ``(B, C, H, W)`` shape."""
        if isinstance(xs, torch.Tensor) or len(xs) != self.num_inputs:
            got = "a single tensor" if isinstance(xs, torch.Tensor) else f"{len(xs)} inputs"
            raise ValueError(f"{self.op_name}: expected {self.num_inputs} inputs, received {got}")
        shapes = [tuple(x.shape) for x in xs]
        first = shapes[0]
        if len(first) != 4 or first[1] != self.channels or any(s != first for s in shapes):
            raise ValueError(
                f"{self.op_name}: expected {self.num_inputs} inputs of shape "
                f"(B, {self.channels}, H, W), all equal; received {shapes}"
            )

    def forward(self, xs: Sequence[torch.Tensor]) -> torch.Tensor:
        self.check_inputs(xs)
        return self.fuse(list(xs))

    def fuse(self, xs: list[torch.Tensor]) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"channels={self.channels}, num_inputs={self.num_inputs}"
