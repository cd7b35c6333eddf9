"""The ``resnet`` family: ResNets of basic blocks, one fusion site per block.

Layout (all widths are multiplied by ``width_mult``):

- stem: ``stem_kernel x stem_kernel conv`` (stride ``stem_stride``) ``-BN-ReLU`` to
  ``stem_channels``, then a stride-2 ``3x3`` max-pool when ``stem_pool`` is true.
- stages ``layer1, layer2, ...`` of ``blocks`` basic blocks at ``channels``; the first
  block of a stage has stride ``stride``.
- basic block: ``F(x) = BN(conv3x3(ReLU(BN(conv3x3_stride(x)))))``; the shortcut is ``x``,
  or ``BN(conv1x1_stride(x))`` where the shape changes (ResNet's option B);
  ``out = ReLU(fuse([F(x), shortcut(x)]))``: the op replaces the ``+`` before the last ReLU.
- head: global average pooling and a linear classifier.

Sites: ``layer{i}.{j}`` as in torchvision (stage from 1, block from 0), K = 2.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from nasfuse.spaces._family import Family, register_family
from nasfuse.spaces._net import FusionNet, SiteFusions, conv_bn
from nasfuse.spaces._schema import (
    Where,
    check_keys,
    get_bool,
    get_int,
    get_list,
    halve,
    scaled_width,
)
from nasfuse.spaces._site import Site, SiteShape

if TYPE_CHECKING:
    from nasfuse.spaces._space import SearchSpace

__all__ = ["KEYS", "resolve", "BlockLayout", "block_layout", "site_shapes", "ResNet", "BasicBlock"]

KEYS = ("stem_channels", "stem_kernel", "stem_stride", "stem_pool", "stages")
STAGE_KEYS = ("channels", "blocks", "stride")


def resolve(raw: Mapping[str, Any], where: Where) -> dict[str, Any]:
    """Validate the family's keys and fill defaults."""
    kernel = get_int(raw, "stem_kernel", where, default=3)
    if kernel % 2 == 0:
        raise where.error("stem_kernel", f"expected an odd kernel size, got {kernel}")
    stages = []
    for index, stage in enumerate(get_list(raw, "stages", where)):
        at = where.child("stages").child(index)
        check_keys(stage, STAGE_KEYS, ("channels", "blocks"), at)
        stride = get_int(stage, "stride", at, default=1)
        if stride not in (1, 2):
            raise at.error("stride", f"expected 1 or 2, got {stride}")
        stages.append(
            {
                "channels": get_int(stage, "channels", at),
                "blocks": get_int(stage, "blocks", at),
                "stride": stride,
            }
        )
    stem_stride = get_int(raw, "stem_stride", where, default=1)
    if stem_stride not in (1, 2):
        raise where.error("stem_stride", f"expected 1 or 2, got {stem_stride}")
    return {
        "stem_channels": get_int(raw, "stem_channels", where, default=16),
        "stem_kernel": kernel,
        "stem_stride": stem_stride,
        "stem_pool": get_bool(raw, "stem_pool", where, default=False),
        "stages": stages,
    }


class BlockLayout(NamedTuple):
    """One basic block: its site, its stage (from 1), output width, stride and output side."""

    site: str
    stage: int
    width: int
    stride: int
    size: int


def block_layout(config: Mapping[str, Any]) -> list[BlockLayout]:
    """Every block of a resolved config in forward order: the one source of site names,
    read by :func:`site_shapes` and by :class:`ResNet` alike."""
    size = halve(config["input_size"], int(config["stem_stride"] == 2) + int(config["stem_pool"]))
    blocks = []
    for i, stage in enumerate(config["stages"], start=1):
        size = halve(size, int(stage["stride"] == 2))
        width = scaled_width(stage["channels"], config["width_mult"])
        for j in range(stage["blocks"]):
            stride = stage["stride"] if j == 0 else 1
            blocks.append(BlockLayout(f"layer{i}.{j}", i, width, stride, size))
    return blocks


def site_shapes(config: Mapping[str, Any]) -> list[SiteShape]:
    """``(name, channels, num_inputs, height, width)`` of every site, in forward order."""
    return [(b.site, b.width, 2, b.size, b.size) for b in block_layout(config)]


class BasicBlock(nn.Module):
    """``ReLU(fusion([F(x), shortcut(x)]))``: ``(B, in, H, W) -> (B, out, H/stride, W/stride)``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, fusion: nn.Module) -> None:
        super().__init__()
        self.conv1 = conv_bn(in_channels, out_channels, 3, stride=stride)
        self.conv2 = conv_bn(out_channels, out_channels, 3, relu=False)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = conv_bn(in_channels, out_channels, 1, stride=stride, relu=False)
        self.fusion = fusion

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fusion([self.conv2(self.conv1(x)), self.shortcut(x)]))


class ResNet(FusionNet):
    """The network of a ``resnet`` space (see the module docstring for the layout)."""

    def __init__(
        self,
        space: SearchSpace,
        make_fusion: Callable[[Site], nn.Module],
        num_classes: int,
        in_chans: int,
    ) -> None:
        config = space.config
        mult = config["width_mult"]
        widths = [scaled_width(stage["channels"], mult) for stage in config["stages"]]
        super().__init__(space, widths[-1], num_classes)
        fusion = SiteFusions(space, make_fusion)
        stem_width = scaled_width(config["stem_channels"], mult)
        stem = list(conv_bn(in_chans, stem_width, config["stem_kernel"], config["stem_stride"]))
        if config["stem_pool"]:
            stem.append(nn.MaxPool2d(3, stride=2, padding=1))
        self.stem = nn.Sequential(*stem)
        previous = stem_width
        layers = []
        for _, stage_blocks in itertools.groupby(block_layout(config), key=lambda b: b.stage):
            blocks = []
            for block in stage_blocks:
                blocks.append(BasicBlock(previous, block.width, block.stride, fusion(block.site)))
                previous = block.width
            layers.append(nn.Sequential(*blocks))
        self.layers = nn.Sequential(*layers)
        self.register_sites(fusion.made)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_chans, H, W) -> (B, last width, h, w)``."""
        return self.layers(self.stem(x))


register_family(Family("resnet", KEYS, resolve, site_shapes, ResNet))
