"""dwff: Dynamic Weighted Feature Fusion (selective-kernel fusion with a BatchNorm squeeze)."""

from __future__ import annotations

import torch
from torch import nn

from nasfuse.ops._base import FusionOp, check_positive_int
from nasfuse.ops._registry import register_op

__all__ = ["DynamicWeightedFusion"]


@register_op("dwff")
class DynamicWeightedFusion(FusionOp):
    """Per-channel softmax weights over the K inputs, computed from their pooled sum.

    From "Efficient Parallel Multi-Scale Detail and Semantic Encoding Network for
    Lightweight Semantic Segmentation" (ACM MM 2023)::

        U = sum_k X_k;  s = GAP(U)                          # (B, C, 1, 1)
        z = LeakyReLU_0.2(BN(PW_{C->d}(s)))                 # d = max(C // r, 4)
        a_k = PW^(k)_{d->C}(z)                              # one 1x1 conv per input
        alpha = softmax over k of a_k                       # K weights per channel, sum 1
        out = sum_k alpha_k * X_k

    Bias: by default the 1x1 convs have **no bias** (``bias=False``, as in MIRNet's SKFF);
    ``bias=True`` gives the paper's network, with ``C*d + 2d + K*d*C + d + K*C``
    parameters (1,688 at C=64, r=8, K=2). No residual, no output projection.

    Args:
        channels: C.
        num_inputs: K >= 2.
        reduction: r, the squeeze ratio (default 8).
        bias: whether the 1x1 convs have a bias (default False).
    """

    pooled_batchnorm = True

    def __init__(
        self, channels: int, num_inputs: int, reduction: int = 8, bias: bool = False
    ) -> None:
        super().__init__(channels, num_inputs)
        check_positive_int(self.op_name, "reduction", reduction)
        self.hidden = max(channels // reduction, 4)
        self.squeeze = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, self.hidden, 1, bias=bias),
            nn.BatchNorm2d(self.hidden),
            nn.LeakyReLU(0.2),
        )
        self.input_logits = nn.ModuleList(
            nn.Conv2d(self.hidden, channels, 1, bias=bias) for _ in range(num_inputs)
        )

    def init_as_sum(self) -> None:
        """Zero logits, so equal weights ``1/K``: ``out = mean_k xs[k]`` (DWFF has no scale)."""
        for conv in self.input_logits:
            nn.init.zeros_(conv.weight)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)

    def input_weights(self, xs: list[torch.Tensor]) -> torch.Tensor:
        """The weights ``alpha`` over the inputs.

        Args:
            xs: K tensors ``(B, C, H, W)``.

        Returns:
            ``(B, K, C, 1, 1)``; non-negative, summing to 1 over K for every channel.
        """
        total = xs[0]
        for x in xs[1:]:
            total = total + x
        z = self.squeeze(total)
        logits = torch.stack([conv(z) for conv in self.input_logits], dim=1)
        return logits.softmax(dim=1)

    def fuse(self, xs: list[torch.Tensor]) -> torch.Tensor:
        weights = self.input_weights(xs)
        out = weights[:, 0] * xs[0]
        for k in range(1, len(xs)):
            out = out + weights[:, k] * xs[k]
        return out
