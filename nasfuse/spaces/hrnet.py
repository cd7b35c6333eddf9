"""The ``hrnet`` family: a light HRNet with a fusion site at every residual block and fuse output.

Layout (all widths are multiplied by ``width_mult``):

- stem: ``log2(stem_stride)`` stride-2 ``3x3 conv-BN-ReLU`` layers (one stride-1 layer when
  ``stem_stride`` is 1) to ``stem_channels``.
- stages, numbered from 2 as in HRNet (stage 1 being the stem here). Before each stage a
  transition keeps the existing branches (a ``3x3 conv-BN-ReLU`` where the width changes)
  and makes each new branch from the lowest-resolution one with stride-2
  ``3x3 conv-BN-ReLU`` layers. Branch ``b`` runs at the stem's resolution halved ``b``
  times.
- each module of a stage: ``blocks`` light residual blocks per branch, then a fuse layer.
- light residual block (``LightResidualBlock``): HRNet's basic block with each 3x3 conv
  replaced by a depthwise-separable one, ``F(x) = DS(ReLU(DS(x)))`` with
  ``DS = depthwise 3x3 -> BN -> pointwise 1x1 -> BN``; ``out = ReLU(fuse([F(x), x]))``.
  (Lite-HRNet's conditional channel weighting is out of scope.)
- fuse layer (``MultiResolutionFuse``): output branch ``i`` is
  ``ReLU(fuse([x_i, A_i0(x_0), ..., A_in(x_n)]))`` (``x_i`` first, then the other branches
  in order, each once), where ``A_ij`` aligns branch ``j`` to branch ``i``: a
  ``1x1 conv-BN`` then nearest upsampling when ``j > i``; ``i - j`` stride-2 ``3x3 convs``
  (BN, ReLU between them, none after the last) when ``j < i``. Every output is computed
  from the module's inputs, none is written in place.
- head: every branch average-pooled to the lowest resolution, concatenated, then
  ``1x1 conv-BN-ReLU`` to ``head_channels`` (the output of ``forward_features``); global
  average pooling and a linear classifier.

Sites: ``stage{s}.module{m}.branch{b}.block{k}`` (K = 2) and ``stage{s}.module{m}.fuse.branch{i}``
(K = number of branches); module, branch and block indices start at 0.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from nasfuse.spaces._family import Family, register_family
from nasfuse.spaces._net import FusionNet, SiteFusions, conv_bn
from nasfuse.spaces._schema import (
    Where,
    check_keys,
    get_int,
    get_int_list,
    get_list,
    halve,
    scaled_width,
)
from nasfuse.spaces._site import Site, SiteShape

if TYPE_CHECKING:
    from nasfuse.spaces._space import SearchSpace

__all__ = [
    "KEYS",
    "resolve",
    "budget_options",
    "StageLayout",
    "stage_layout",
    "site_shapes",
    "HRNet",
    "LightResidualBlock",
    "MultiResolutionFuse",
]

KEYS = ("stem_channels", "stem_stride", "stages", "head_channels")
STAGE_KEYS = ("branches", "channels", "modules", "blocks")


def resolve(raw: Mapping[str, Any], where: Where) -> dict[str, Any]:
    """Validate the family's keys and fill defaults."""
    stem_stride = get_int(raw, "stem_stride", where, default=1)
    if stem_stride & (stem_stride - 1):
        raise where.error("stem_stride", f"expected a power of 2 (1, 2, 4, ...), got {stem_stride}")
    stages = []
    previous_branches = 1
    for index, stage in enumerate(get_list(raw, "stages", where)):
        at = where.child("stages").child(index)
        check_keys(stage, STAGE_KEYS, STAGE_KEYS, at)
        branches = get_int(stage, "branches", at)
        if branches < previous_branches:
            raise at.error(
                "branches",
                f"expected at least {previous_branches} (a stage keeps the branches of the one before), got {branches}",
            )
        previous_branches = branches
        channels = get_int_list(stage, "channels", at, branches, "widths (one per branch)")
        stages.append(
            {
                "branches": branches,
                "channels": channels,
                "modules": get_int(stage, "modules", at),
                "blocks": get_int(stage, "blocks", at),
            }
        )
    return {
        "stem_channels": get_int(raw, "stem_channels", where, default=32),
        "stem_stride": stem_stride,
        "stages": stages,
        "head_channels": get_int(raw, "head_channels", where, default=256),
    }


def _stem_halvings(config: Mapping[str, Any]) -> int:
    return int(config["stem_stride"]).bit_length() - 1


@dataclass(frozen=True)
class StageLayout:
    """One stage: its branches' widths and sides, and the sites of each of its modules.

    Attributes:
        widths: channels of each branch, highest resolution first.
        sizes: side of each branch at the space's input size.
        blocks: ``blocks[m][b]``: the block sites of branch ``b`` in module ``m``.
        fuse: ``fuse[m][i]``: the fuse site of output branch ``i`` in module ``m``; none
            in a stage of one branch.
    """

    widths: list[int]
    sizes: list[int]
    blocks: list[list[list[str]]]
    fuse: list[list[str]]


def stage_layout(config: Mapping[str, Any]) -> list[StageLayout]:
    """Every stage of a resolved config: the one source of site names, read by
    :func:`site_shapes` and by :class:`HRNet` alike."""
    base = halve(config["input_size"], _stem_halvings(config))
    stages = []
    for s, stage in enumerate(config["stages"], start=2):
        branches, modules = range(stage["branches"]), range(stage["modules"])
        blocks = [
            [
                [f"stage{s}.module{m}.branch{b}.block{k}" for k in range(stage["blocks"])]
                for b in branches
            ]
            for m in modules
        ]
        fuse = [
            [f"stage{s}.module{m}.fuse.branch{i}" for i in branches] if len(branches) > 1 else []
            for m in modules
        ]
        widths = [scaled_width(c, config["width_mult"]) for c in stage["channels"]]
        stages.append(StageLayout(widths, [halve(base, b) for b in branches], blocks, fuse))
    return stages


def site_shapes(config: Mapping[str, Any]) -> list[SiteShape]:
    """``(name, channels, num_inputs, height, width)`` of every site, in forward order."""
    shapes: list[SiteShape] = []
    for stage in stage_layout(config):
        branches = list(zip(stage.widths, stage.sizes, strict=True))
        for blocks, fuse in zip(stage.blocks, stage.fuse, strict=True):
            for names, (width, size) in zip(blocks, branches, strict=True):
                shapes.extend((name, width, 2, size, size) for name in names)
            for name, (width, size) in zip(fuse, branches, strict=False):  # fuse may be empty
                shapes.append((name, width, len(branches), size, size))
    return shapes


def separable_conv_bn(channels: int) -> nn.Sequential:
    """``depthwise 3x3 -> BN -> pointwise 1x1 -> BN`` at constant width."""
    return nn.Sequential(
        *conv_bn(channels, channels, 3, groups=channels, relu=False),
        *conv_bn(channels, channels, 1, relu=False),
    )


class LightResidualBlock(nn.Module):
    """``ReLU(fusion([F(x), x]))`` with ``F(x) = DS(ReLU(DS(x)))``; shape-preserving.

    Args:
        channels: C of the ``(B, C, H, W)`` input and output.
        fusion: the module fusing ``[F(x), x]``.
    """

    def __init__(self, channels: int, fusion: nn.Module) -> None:
        super().__init__()
        self.conv1 = separable_conv_bn(channels)
        self.conv2 = separable_conv_bn(channels)
        self.fusion = fusion

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.conv2(F.relu(self.conv1(x)))
        return F.relu(self.fusion([residual, x]))


class UpsampleAlign(nn.Module):
    """``1x1 conv-BN`` from ``in_channels`` to ``out_channels``, then nearest upsampling."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.project = conv_bn(in_channels, out_channels, 1, relu=False)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return F.interpolate(self.project(x), size=size, mode="nearest")


def downsample_align(in_channels: int, out_channels: int, steps: int) -> nn.Sequential:
    """``steps`` stride-2 depthwise-separable ``3x3`` convs, as in Lite-HRNet's fuse layers.

    Each step is ``depthwise 3x3 (stride 2) -> BN -> pointwise 1x1 -> BN``, widening to
    ``out_channels`` in the last step; ReLU between steps, not after the last. HRNet's
    full ``3x3`` convs here would hold half of the network's parameters.
    """
    layers: list[nn.Module] = []
    for step in range(steps):
        last = step == steps - 1
        layers.extend(
            conv_bn(in_channels, in_channels, 3, stride=2, relu=False, groups=in_channels)
        )
        layers.extend(conv_bn(in_channels, out_channels if last else in_channels, 1, relu=not last))
    return nn.Sequential(*layers)


class MultiResolutionFuse(nn.Module):
    """Exchange between branches: output ``i`` is ``ReLU(fusion_i([x_i, A_i0(x_0), ...]))``.

    Args:
        widths: channels of each branch, highest resolution first.
        fusions: one fusion module per output branch, each taking ``len(widths)`` inputs.
    """

    def __init__(self, widths: list[int], fusions: list[nn.Module]) -> None:
        super().__init__()
        self.align = nn.ModuleList()
        for i, width_i in enumerate(widths):
            row = nn.ModuleList()
            for j, width_j in enumerate(widths):
                if j == i:
                    row.append(nn.Identity())
                elif j > i:
                    row.append(UpsampleAlign(width_j, width_i))
                else:
                    row.append(downsample_align(width_j, width_i, i - j))
            self.align.append(row)
        self.fusions = nn.ModuleList(fusions)

    def aligned_inputs(self, xs: list[torch.Tensor], i: int) -> list[torch.Tensor]:
        """The inputs of output ``i``: ``x_i`` first, then every other branch aligned to it."""
        size = (xs[i].shape[-2], xs[i].shape[-1])
        inputs = [xs[i]]
        for j, x in enumerate(xs):
            if j < i:
                inputs.append(self.align[i][j](x))
            elif j > i:
                inputs.append(self.align[i][j](x, size))
        return inputs

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        """``xs[b]``: ``(B, widths[b], H_b, W_b)``; returns new tensors of the same shapes."""
        return [F.relu(fusion(self.aligned_inputs(xs, i))) for i, fusion in enumerate(self.fusions)]


class Transition(nn.Module):
    """From the previous stage's branches to this stage's (keeps, re-widens, or adds)."""

    def __init__(self, previous_widths: list[int], widths: list[int]) -> None:
        super().__init__()
        self.layers = nn.ModuleList()
        last = len(previous_widths) - 1
        for b, width in enumerate(widths):
            if b <= last:
                same = previous_widths[b] == width
                self.layers.append(nn.Identity() if same else conv_bn(previous_widths[b], width, 3))
            else:
                steps = [
                    conv_bn(previous_widths[last] if n == 0 else width, width, 3, stride=2)
                    for n in range(b - last)
                ]
                self.layers.append(nn.Sequential(*steps))
        self.num_previous = len(previous_widths)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [
            layer(xs[b] if b < self.num_previous else xs[-1]) for b, layer in enumerate(self.layers)
        ]


class HRModule(nn.Module):
    """Residual blocks on every branch, then the fuse layer (when there are 2+ branches)."""

    def __init__(self, branches: list[nn.Sequential], fuse: MultiResolutionFuse | None) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.fuse = fuse

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs, strict=True)]
        return self.fuse(xs) if self.fuse is not None else xs


class HRNet(FusionNet):
    """The network of an ``hrnet`` space (see the module docstring for the layout)."""

    def __init__(
        self,
        space: SearchSpace,
        make_fusion: Callable[[Site], nn.Module],
        num_classes: int,
        in_chans: int,
    ) -> None:
        config = space.config
        mult = config["width_mult"]
        head_width = scaled_width(config["head_channels"], mult)
        super().__init__(space, head_width, num_classes)
        fusion = SiteFusions(space, make_fusion)
        stem_width = scaled_width(config["stem_channels"], mult)
        halvings = _stem_halvings(config)
        stem: list[nn.Module] = []
        for n in range(max(halvings, 1)):
            stem.extend(
                conv_bn(
                    in_chans if n == 0 else stem_width, stem_width, 3, stride=2 if halvings else 1
                )
            )
        self.stem = nn.Sequential(*stem)

        previous = [stem_width]
        self.transitions = nn.ModuleList()
        self.stages = nn.ModuleList()
        for stage in stage_layout(config):
            widths = stage.widths
            self.transitions.append(Transition(previous, widths))
            modules = []
            for block_sites, fuse_sites in zip(stage.blocks, stage.fuse, strict=True):
                branches = [
                    nn.Sequential(*(LightResidualBlock(width, fusion(name)) for name in names))
                    for names, width in zip(block_sites, widths, strict=True)
                ]
                fuse = None
                if fuse_sites:
                    fuse = MultiResolutionFuse(widths, [fusion(name) for name in fuse_sites])
                modules.append(HRModule(branches, fuse))
            self.stages.append(nn.Sequential(*modules))
            previous = widths

        self.head = conv_bn(sum(previous), head_width, 1)
        # Branch b is 2**(n-1-b) times the lowest branch's side wherever sides divide evenly.
        self.pool_factors = [2 ** (len(previous) - 1 - b) for b in range(len(previous))]
        self.register_sites(fusion.made)

    def forward_branches(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(B, in_chans, H, W)`` -> the last stage's branches, highest resolution first."""
        xs = [self.stem(x)]
        for transition, stage in zip(self.transitions, self.stages, strict=True):
            xs = stage(transition(xs))
        return xs

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_chans, H, W) -> (B, head_channels, H_low, W_low)`` (lowest branch size)."""
        xs = self.forward_branches(x)
        size = (xs[-1].shape[-2], xs[-1].shape[-1])
        pooled = [pool_to(x, size, factor) for x, factor in zip(xs, self.pool_factors, strict=True)]
        return self.head(torch.cat(pooled, dim=1))


def pool_to(x: torch.Tensor, size: tuple[int, int], factor: int) -> torch.Tensor:
    """``x`` average-pooled to ``size``, which is ``x``'s side divided by ``factor`` when
    sides divide evenly.

    Then a fixed ``factor x factor`` pooling does it: the same windows as adaptive pooling,
    and an output size that ONNX's legacy (TorchScript) exporter can handle. Sides halved
    with rounding up (odd sizes) fall back to adaptive pooling.
    """
    if factor == 1:
        return x
    if x.shape[-2] == size[0] * factor and x.shape[-1] == size[1] * factor:
        return F.avg_pool2d(x, factor)
    return F.adaptive_avg_pool2d(x, size)


def budget_options(budget: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The depth a search budget gives an HRNet space: one module per stage for the CPU
    budgets (``quick``, ``default``), the space's own depth for ``full``.

    A supernet over hrnet_lite's full depth (2/4/2 modules, 72 sites) learns slowly: at width
    0.25 and 16x16 its training loss over random paths was 2.17 after 100 steps, against
    0.58 with one module per stage (27 sites), and the quick budget has time for about 160
    steps.
    """
    if budget == "full":
        return {}
    return {f"stages.{index}.modules": 1 for index in range(len(config["stages"]))}


register_family(Family("hrnet", KEYS, resolve, site_shapes, HRNet, budget_options))
