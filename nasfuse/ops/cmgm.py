"""cmgm: the Cross-Model Grafting Module of PGNet (CVPR 2022), as a fusion op."""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils import flop_counter

from nasfuse.ops._base import FusionOp, ImplChoice, check_positive_int, memory_format_of
from nasfuse.ops._registry import register_op

__all__ = ["CrossModelGrafting", "ATTENTION_IMPLS", "largest_divisor_at_most"]

#: Ways to compute the attention: the fused kernel, or the plain formula as a reference.
ATTENTION_IMPLS = ("sdpa", "math")


def largest_divisor_at_most(value: int, limit: int) -> int:
    """The largest divisor of ``value`` that is ``<= limit`` (1 at least)."""
    return max(d for d in range(1, min(value, limit) + 1) if value % d == 0)


def _register_cpu_sdpa_flops() -> None:
    # torch's FLOP counter knows the CUDA attention kernels but not the CPU one that
    # scaled_dot_product_attention dispatches to, so cmgm would count its attention as 0.
    aten = torch.ops.aten

    def forward_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
        return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)

    def backward_flops(grad_shape, query_shape, key_shape, value_shape, *args, **kwargs):
        kwargs.pop("out_shape", None)
        return flop_counter.sdpa_backward_flop_count(
            grad_shape, query_shape, key_shape, value_shape
        )

    for target, formula in (
        ("_scaled_dot_product_flash_attention_for_cpu", forward_flops),
        ("_scaled_dot_product_flash_attention_for_cpu_backward", backward_flops),
    ):
        packet = getattr(aten, target, None)
        if packet is not None and packet not in flop_counter.flop_registry:
            flop_counter.register_flop_formula(packet)(formula)


_register_cpu_sdpa_flops()


@register_op("cmgm")
class CrossModelGrafting(FusionOp):
    """Cross attention in which x asks y where to look, then re-aggregates its own features.

    ::

        X = flatten(x) -> (B, N, C);  Xn = LN(X);  Yn = LN'(flatten(y))
        K = Linear_k(Yn);  Q, V = Linear_qv(Xn).chunk(2)        # h heads of d = C / h
        Z = Linear_proj(softmax(Q K^T / sqrt(d)) V) + X
        z = reshape(Z) -> (B, C, H, W)
        out = ConvBlock(z) + z             # ConvBlock = [3x3 conv C->C, BN, ReLU] twice

    ``x = xs[0]``, ``y = sum(xs[1:])``. The original module's second output (the
    symmetrised attention map for an auxiliary loss) is left out. ``22*C^2 + 14*C``
    parameters (91,008 at C=64). Cost grows with ``N^2``.

    Args:
        channels: C.
        num_inputs: K >= 2.
        heads: attention heads (default 8). If C is not divisible by it, the largest
            divisor of C below it is used, with a warning.
        attn_impl: ``"sdpa"`` (``F.scaled_dot_product_attention``, default) or
            ``"math"`` (the plain softmax formula, a reference). Also a settable attribute.
    """

    attn_impl = ImplChoice(ATTENTION_IMPLS)

    def __init__(
        self, channels: int, num_inputs: int, heads: int = 8, attn_impl: str = "sdpa"
    ) -> None:
        super().__init__(channels, num_inputs)
        check_positive_int(self.op_name, "heads", heads)
        usable_heads = largest_divisor_at_most(channels, heads)
        if usable_heads != heads:
            warnings.warn(
                f"{self.op_name}: {channels} channels do not split into {heads} heads; "
                f"using {usable_heads} heads",
                UserWarning,
                stacklevel=2,
            )
        self.heads = usable_heads
        self.attn_impl = attn_impl
        self.norm_x = nn.LayerNorm(channels)
        self.norm_y = nn.LayerNorm(channels)
        self.to_key = nn.Linear(channels, channels)
        self.to_query_value = nn.Linear(channels, 2 * channels)
        self.proj = nn.Linear(channels, channels)
        self.conv_block = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )

    def init_as_sum(self, block_scale: float = 1e-3) -> None:
        """Zero the attention's projection and shrink the conv block: ``out ~ x``.

        The skip ``y`` reaches cmgm only through the attention weights, so no setting
        of its weights gives ``x + y``; starting from the main path keeps its channels.
        The conv block's last BN gets scale ``block_scale`` and shift 0, not exactly 0:
        a ReLU follows it, which at exactly 0 would never pass a gradient back.
        """
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        last_bn = self.conv_block[4]
        nn.init.constant_(last_bn.weight, block_scale)
        nn.init.zeros_(last_bn.bias)

    def _split_heads(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, N, C) -> (B, h, N, C / h)``."""
        batch, positions, _ = tokens.shape
        return tokens.view(batch, positions, self.heads, -1).transpose(1, 2)

    def attention(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor
    ) -> torch.Tensor:
        """``softmax(Q K^T / sqrt(d)) V`` over ``(B, h, N, d)`` tensors, by ``attn_impl``."""
        if self.attn_impl == "sdpa":
            return F.scaled_dot_product_attention(query, key, value)
        scores = query @ key.transpose(-2, -1) * query.shape[-1] ** -0.5
        return scores.softmax(dim=-1) @ value

    def fuse(self, xs: list[torch.Tensor]) -> torch.Tensor:
        x, y = self.main_and_skip(xs)
        batch, channels, height, width = x.shape
        x_tokens = x.flatten(2).transpose(1, 2)  # (B, N, C)
        y_tokens = y.flatten(2).transpose(1, 2)
        key = self._split_heads(self.to_key(self.norm_y(y_tokens)))
        query, value = self.to_query_value(self.norm_x(x_tokens)).chunk(2, dim=-1)
        attended = self.attention(self._split_heads(query), key, self._split_heads(value))
        attended = attended.transpose(1, 2).reshape(batch, height * width, channels)
        grafted = self.proj(attended) + x_tokens
        # (B, N, C) -> (B, C, H, W) is a view with channels-last strides. Copy it into x's
        # layout: a channels-last tensor leaking into a contiguous network reaches oneDNN's
        # AVX2 1x1 stride-2 weight-gradient kernel, which overruns its buffer for fewer
        # than 8 channels and corrupts the heap (experiments/repro_cmgm_crash.py).
        grafted = grafted.transpose(1, 2).reshape(batch, channels, height, width)
        grafted = grafted.contiguous(memory_format=memory_format_of(x))
        return self.conv_block(grafted) + grafted

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, heads={self.heads}, attn_impl={self.attn_impl!r}"
