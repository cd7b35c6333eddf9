"""aff and iaff: Attentional Feature Fusion (Dai et al., WACV 2021) and its iterative form."""

from __future__ import annotations

import torch
from torch import nn

from nasfuse.ops._base import FusionOp, check_positive_int, zero_batchnorm_
from nasfuse.ops._registry import register_op

__all__ = ["MultiScaleChannelAttention", "AttentionalFusion", "IterativeAttentionalFusion"]


def _pointwise_bottleneck(channels: int, hidden: int) -> list[nn.Module]:
    """``BN(PW_{hidden->C}(ReLU(BN(PW_{C->hidden}(.)))))``, convs with bias."""
    return [
        nn.Conv2d(channels, hidden, 1),
        nn.BatchNorm2d(hidden),
        nn.ReLU(inplace=True),
        nn.Conv2d(hidden, channels, 1),
        nn.BatchNorm2d(channels),
    ]


class MultiScaleChannelAttention(nn.Module):
    """MS-CAM: a gate in (0, 1) per channel and position, from a local and a global branch.

    ``M(X) = sigmoid(L(X) + G(X))`` where ``L`` is a 1x1-conv bottleneck applied at every
    position and ``G`` the same bottleneck applied to ``GAP(X)``; hidden width
    ``Cr = max(C // r, 1)``. ``4*C*Cr + 6*Cr + 6*C`` parameters.

    Args:
        channels: C.
        reduction: r.
    """

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.local_att = nn.Sequential(*_pointwise_bottleneck(channels, hidden))
        self.global_att = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), *_pointwise_bottleneck(channels, hidden)
        )

    def init_as_half(self) -> None:
        """Zero both branches' last BN so that the gate starts at exactly 0.5 everywhere."""
        zero_batchnorm_(self.local_att[-1])
        zero_batchnorm_(self.global_att[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W) -> (B, C, H, W)`` gate values in (0, 1)."""
        return torch.sigmoid(self.local_att(x) + self.global_att(x))


def _check_reduction(op_name: str, reduction: int) -> int:
    return check_positive_int(op_name, "reduction", reduction)


@register_op("aff")
class AttentionalFusion(FusionOp):
    """AFF: ``W = M(x + y)``, ``out = s * (x * W + y * (1 - W))``.

    ``x = xs[0]`` (main path), ``y = sum(xs[1:])``. The scale ``s = 2`` is the authors'
    code (the paper's equation has none): the two weights then sum to 2 like plain
    addition, so ``aff(x, x) == 2x`` for any weights. ``4*C*Cr + 6*Cr + 6*C`` parameters
    (4,576 at C=64, r=4).

    Args:
        channels: C.
        num_inputs: K >= 2.
        reduction: r of the MS-CAM gate (default 4).
        scale: s (default 2.0).
    """

    pooled_batchnorm = True

    def __init__(
        self, channels: int, num_inputs: int, reduction: int = 4, scale: float = 2.0
    ) -> None:
        super().__init__(channels, num_inputs)
        self.gate = MultiScaleChannelAttention(channels, _check_reduction(self.op_name, reduction))
        self.scale = float(scale)

    def init_as_sum(self) -> None:
        """Gate at 0.5: ``out = s/2 * (x + y)``, the sum itself with the default ``s = 2``."""
        self.gate.init_as_half()

    def fuse(self, xs: list[torch.Tensor]) -> torch.Tensor:
        x, y = self.main_and_skip(xs)
        weight = self.gate(x + y)
        return self.scale * (x * weight + y * (1 - weight))


@register_op("iaff")
class IterativeAttentionalFusion(FusionOp):
    """iAFF: AFF whose gate input is itself an AFF of the two inputs.

    ::

        W1 = M1(x + y);   xi = x * W1 + y * (1 - W1)
        W2 = M2(xi);      out = x * W2 + y * (1 - W2)

    ``M1`` and ``M2`` are two fully separate MS-CAM gates (the widely copied version
    reuses M1's global branch inside M2, leaving a quarter of the parameters untrained).
    No factor 2, as in the original. ``8*C*Cr + 12*Cr + 12*C`` parameters.

    Args:
        channels: C.
        num_inputs: K >= 2; ``x = xs[0]``, ``y = sum(xs[1:])``.
        reduction: r of both gates (default 4; the authors use 16 on ImageNet).
    """

    pooled_batchnorm = True

    def __init__(self, channels: int, num_inputs: int, reduction: int = 4) -> None:
        super().__init__(channels, num_inputs)
        reduction = _check_reduction(self.op_name, reduction)
        self.gate1 = MultiScaleChannelAttention(channels, reduction)
        self.gate2 = MultiScaleChannelAttention(channels, reduction)

    def init_as_sum(self) -> None:
        """Both gates at 0.5: ``out = (x + y) / 2`` (iAFF has no factor 2)."""
        self.gate1.init_as_half()
        self.gate2.init_as_half()

    def fuse(self, xs: list[torch.Tensor]) -> torch.Tensor:
        x, y = self.main_and_skip(xs)
        weight1 = self.gate1(x + y)
        first_fusion = x * weight1 + y * (1 - weight1)
        weight2 = self.gate2(first_fusion)
        return x * weight2 + y * (1 - weight2)
