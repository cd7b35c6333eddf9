"""The baselines: plain addition and concatenation with a projection."""

from __future__ import annotations

import torch
from torch import nn

from nasfuse.ops._base import FusionOp
from nasfuse.ops._registry import register_op

__all__ = ["Add", "Concat"]


@register_op("add")
class Add(FusionOp):
    """``out = sum_k xs[k]``. No parameters; the baseline every result is compared with."""

    def fuse(self, xs: list[torch.Tensor]) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


@register_op("concat")
class Concat(FusionOp):
    """``out = BN(PW_{K*C -> C}(cat(xs)))``: the projection keeps the site's shape."""

    def __init__(self, channels: int, num_inputs: int) -> None:
        super().__init__(channels, num_inputs)
        self.proj = nn.Conv2d(num_inputs * channels, channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def init_as_sum(self) -> None:
        """Projection ``[I, I, ...]``: ``BN(sum_k xs[k])``, channel by channel."""
        with torch.no_grad():
            weight = torch.eye(self.channels).repeat(1, self.num_inputs)
            self.proj.weight.copy_(weight.view_as(self.proj.weight))

    def fuse(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return self.bn(self.proj(torch.cat(xs, dim=1)))
