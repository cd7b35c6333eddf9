"""pmfs: polarized multi-scale feature self-attention (PMFSNet's global PMFS block)."""

from __future__ import annotations

import torch
from torch import nn

from nasfuse.ops._base import FusionOp, check_positive_int
from nasfuse.ops._registry import register_op

__all__ = ["PolarizedMultiScaleFusion", "DepthwiseSeparable"]


class DepthwiseSeparable(nn.Sequential):
    """DWS(i -> o, k): ``BN(i) -> ReLU -> depthwise k x k (no bias) -> PW i -> o (bias)``.

    ``2i + i*k^2 + i*o + o`` parameters.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__(
            nn.BatchNorm2d(in_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(
                in_channels,
                in_channels,
                kernel_size,
                padding=kernel_size // 2,
                groups=in_channels,
                bias=False,
            ),
            nn.Conv2d(in_channels, out_channels, 1),
        )


@register_op("pmfs")
class PolarizedMultiScaleFusion(FusionOp):
    """PMFSNet's ``GlobalPMFSBlock_AP_Separate`` with each input as one scale branch.

    With K inputs (branches) and ``Ci = ch * K``::

        M_k = DWS_{C->ch, 3x3}(X_k);   A = cat_k M_k                   # (B, Ci, H, W)
        # channel attention: collapse space
        Qc, Vc = DWS_{Ci->Ci, 1x1}(A);  Kc = DWS_{Ci->1, 1x1}(A)
        z  = Qc . softmax_over_N(Kc)                                   # (B, Ci, 1, 1)
        Ac = Vc * sigmoid(LN(PW_{Ci->Ci}(z)))
        # spatial attention: collapse channels; each branch is its own set of positions
        Qs, Ks = DWS_{Ci->K*ch_k, 1x1}(Ac);  Vs = DWS_{Ci->K*ch_v, 1x1}(Ac)
        k  = softmax over ch_k of mean over (positions, branches) of Ks   # (B, ch_k)
        g  = sigmoid(k . Qs)                           # one gate per position per branch
        As = DWS_{K*ch_v->Ci, 1x1}(Vs * g)
        out = DWS_{Ci->C, 3x3}(As)

    The backbone aligns the inputs first, so the paper's max-pooling to the coarsest
    scale has kernel 1 and is omitted. ``ch_k != ch_v`` works (the released code
    reshapes V with ch_k).

    Its output is a new feature (the last DWS), with no path that could carry the sum of
    its inputs, so ``init_as_sum`` leaves pmfs as it is.

    Args:
        channels: C.
        num_inputs: K >= 2, the number of branches.
        ch: channels per branch after the first DWS (default ``max(C // 2, 8)``).
        ch_k: channels of the spatial query/key per branch (default ``ch``).
        ch_v: channels of the spatial value per branch (default ``ch``).
    """

    def __init__(
        self,
        channels: int,
        num_inputs: int,
        ch: int | None = None,
        ch_k: int | None = None,
        ch_v: int | None = None,
    ) -> None:
        super().__init__(channels, num_inputs)
        default = max(channels // 2, 8)
        ch = default if ch is None else check_positive_int(self.op_name, "ch", ch)
        ch_k = ch if ch_k is None else check_positive_int(self.op_name, "ch_k", ch_k)
        ch_v = ch if ch_v is None else check_positive_int(self.op_name, "ch_v", ch_v)
        self.ch, self.ch_k, self.ch_v = ch, ch_k, ch_v
        joint = ch * num_inputs  # Ci
        self.branch_convs = nn.ModuleList(
            DepthwiseSeparable(channels, ch, 3) for _ in range(num_inputs)
        )
        self.channel_query = DepthwiseSeparable(joint, joint, 1)
        self.channel_key = DepthwiseSeparable(joint, 1, 1)
        self.channel_value = DepthwiseSeparable(joint, joint, 1)
        self.channel_score = nn.Conv2d(joint, joint, 1)
        self.channel_norm = nn.LayerNorm((joint, 1, 1))
        self.spatial_query = DepthwiseSeparable(joint, num_inputs * ch_k, 1)
        self.spatial_key = DepthwiseSeparable(joint, num_inputs * ch_k, 1)
        self.spatial_value = DepthwiseSeparable(joint, num_inputs * ch_v, 1)
        self.spatial_out = DepthwiseSeparable(num_inputs * ch_v, joint, 1)
        self.output_conv = DepthwiseSeparable(joint, channels, 3)

    def channel_attention(self, joint: torch.Tensor) -> torch.Tensor:
        """``A -> Ac``, both ``(B, Ci, H, W)``: re-weight the channels by a score that
        collapses space."""
        batch, channels, height, width = joint.shape
        query = self.channel_query(joint).view(batch, channels, height * width)
        key = self.channel_key(joint).view(batch, height * width, 1).softmax(dim=1)
        summary = (query @ key).view(batch, channels, 1, 1)
        score = torch.sigmoid(self.channel_norm(self.channel_score(summary)))
        return self.channel_value(joint) * score

    def spatial_attention(self, attended: torch.Tensor) -> torch.Tensor:
        """``Ac -> As``, both ``(B, Ci, H, W)``: gate every position of every branch by a
        score over channels."""
        batch, _, height, width = attended.shape
        branches, positions = self.num_inputs, height * width
        query = self.spatial_query(attended).view(batch, branches, self.ch_k, positions)
        key = self.spatial_key(attended).view(batch, branches, self.ch_k, positions)
        key = key.mean(dim=(1, 3)).softmax(dim=-1)  # (B, ch_k)
        gate = torch.sigmoid(torch.einsum("bc,bkcn->bkn", key, query))  # (B, K, N)
        value = self.spatial_value(attended).view(batch, branches, self.ch_v, positions)
        gated = (value * gate.unsqueeze(2)).view(batch, branches * self.ch_v, height, width)
        return self.spatial_out(gated)

    def fuse(self, xs: list[torch.Tensor]) -> torch.Tensor:
        joint = torch.cat([conv(x) for conv, x in zip(self.branch_convs, xs, strict=True)], dim=1)
        return self.output_conv(self.spatial_attention(self.channel_attention(joint)))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, ch={self.ch}, ch_k={self.ch_k}, ch_v={self.ch_v}"
