"""dynconv: a concat fusion whose projection kernel is aggregated per sample (Dite-HRNet)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nasfuse.ops._base import FusionOp, ImplChoice, check_positive_int, memory_format_of
from nasfuse.ops._registry import register_op

__all__ = ["DynamicKernelFusion", "CONV_IMPLS"]

#: Ways to apply the per-sample kernels: without a Python loop, or one sample at a time.
CONV_IMPLS = ("batched", "per_sample")


@register_op("dynconv")
class DynamicKernelFusion(FusionOp):
    """Concatenate the inputs, then project with a kernel chosen per sample from E experts.

    Dite-HRNet's dynamic kernel aggregation::

        u = cat(xs)                                                    # (B, K*C, H, W)
        alpha = sigmoid(PW_{m->E, bias}(ReLU(BN(PW_{K*C->m}(GAP(u))))))  # (B, E)
        W_b = sum_e alpha[b, e] * W_e,   W_e in R^{C x K*C x k x k}
        out = BN(conv(u_b, W_b))

    with ``m = max(K*C // reduction, 4)``. The attention is a sigmoid (the E weights do
    not sum to 1), as in the original. Each expert is initialised like a conv
    (Kaiming-uniform). ``K*C*m + 2m + m*E + E + E*C*K*C*k^2 + 2C`` parameters.

    The batched path has no per-sample Python loop: for ``k = 1`` one batched matmul
    with the aggregated kernels; for ``k > 1`` one grouped conv with the batch as the
    groups. ``conv_impl="per_sample"`` is the reference: a plain conv per sample.

    Args:
        channels: C.
        num_inputs: K >= 2.
        num_experts: E (default 4).
        kernel_size: k, odd (default 1).
        reduction: divides K*C for the attention's hidden width (default 4).
        conv_impl: ``"batched"`` (default) or ``"per_sample"``; also a settable attribute.
    """

    pooled_batchnorm = True
    conv_impl = ImplChoice(CONV_IMPLS)

    def __init__(
        self,
        channels: int,
        num_inputs: int,
        num_experts: int = 4,
        kernel_size: int = 1,
        reduction: int = 4,
        conv_impl: str = "batched",
    ) -> None:
        super().__init__(channels, num_inputs)
        check_positive_int(self.op_name, "num_experts", num_experts)
        check_positive_int(self.op_name, "kernel_size", kernel_size)
        check_positive_int(self.op_name, "reduction", reduction)
        if kernel_size % 2 == 0:
            raise ValueError(
                f"{self.op_name}: kernel_size must be odd to keep (H, W), got {kernel_size}"
            )
        in_channels = num_inputs * channels
        hidden = max(in_channels // reduction, 4)
        self.num_experts = num_experts
        self.kernel_size = kernel_size
        self.conv_impl = conv_impl
        self.expert_attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_channels, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, num_experts, 1),
            nn.Sigmoid(),
        )
        self.experts = nn.Parameter(
            torch.empty(num_experts, channels, in_channels, kernel_size, kernel_size)
        )
        for expert in self.experts.data:
            # What nn.Conv2d does to its own weight.
            nn.init.kaiming_uniform_(expert, a=math.sqrt(5))
        self.bn = nn.BatchNorm2d(channels)

    def init_as_sum(self, spread: float = 0.1) -> None:
        """Start as ``BN(conv(u, [I, I, ...]))``, the concat projection that sums.

        The attention's last conv is zeroed, so every expert weight starts at
        ``sigmoid(0) = 0.5``; each expert becomes ``(2 / E) [I, I, ...]`` (at the kernel's
        centre) plus ``spread`` times its own random initialisation, which keeps the
        experts distinct so that training can tell them apart.
        """
        attention_out = self.expert_attention[-2]
        nn.init.zeros_(attention_out.weight)
        nn.init.zeros_(attention_out.bias)
        centre = self.kernel_size // 2
        identity = torch.eye(self.channels).repeat(1, self.num_inputs)
        with torch.no_grad():
            self.experts.mul_(spread)
            self.experts[:, :, :, centre, centre] += (2.0 / self.num_experts) * identity

    def aggregated_kernels(self, stacked: torch.Tensor) -> torch.Tensor:
        """Each sample's kernel ``sum_e alpha[b, e] W_e``.

        Args:
            stacked: ``u = cat(xs)``, ``(B, K*C, H, W)``.

        Returns:
            ``(B, C, K*C, k, k)``.
        """
        alpha = self.expert_attention(stacked).flatten(1)  # (B, E)
        kernels = alpha @ self.experts.flatten(1)  # (B, C*K*C*k*k)
        return kernels.view(stacked.shape[0], *self.experts.shape[1:])

    def fuse(self, xs: list[torch.Tensor]) -> torch.Tensor:
        stacked = torch.cat(xs, dim=1)
        kernels = self.aggregated_kernels(stacked)
        batch, in_channels, height, width = stacked.shape
        padding = self.kernel_size // 2
        if self.conv_impl == "per_sample":
            projected = torch.cat(
                [F.conv2d(stacked[b : b + 1], kernels[b], padding=padding) for b in range(batch)]
            )
        elif self.kernel_size == 1:
            # (B, C, K*C) @ (B, K*C, N): every sample's 1x1 conv in one batched matmul.
            projected = torch.bmm(
                kernels.view(batch, self.channels, in_channels),
                stacked.reshape(batch, in_channels, height * width),
            ).view(batch, self.channels, height, width)
        else:
            # The batch as conv groups: group b sees sample b's channels and kernel.
            projected = F.conv2d(
                stacked.reshape(1, batch * in_channels, height, width),
                kernels.reshape(batch * self.channels, in_channels, *kernels.shape[-2:]),
                padding=padding,
                groups=batch,
            ).view(batch, self.channels, height, width)
        # The batched paths give a contiguous tensor; keep the network's layout.
        return self.bn(projected.contiguous(memory_format=memory_format_of(xs[0])))

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, num_experts={self.num_experts}, "
            f"kernel_size={self.kernel_size}, conv_impl={self.conv_impl!r}"
        )
