"""What every network built from a search space shares: the head and the timm-style API."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from nasfuse.spaces._site import Site
    from nasfuse.spaces._space import SearchSpace

__all__ = ["FusionNet", "SiteFusions", "conv_bn"]


def conv_bn(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    relu: bool = True,
    groups: int = 1,
) -> nn.Sequential:
    """``conv(k x k, stride, pad k // 2, no bias) -> BN [-> ReLU]``."""
    layers: list[nn.Module] = [
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            groups=groups,
            bias=False,
        ),
        nn.BatchNorm2d(out_channels),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class SiteFusions:
    """Makes the fusion module of a site by its name, and keeps it for
    :meth:`FusionNet.register_sites` (``made``: site name -> module, in the order made).

    Every family's network builds its fusion modules through one of these, so that each
    site's module is made once, by the family's ``make_fusion``, and found again after.
    """

    def __init__(self, space: SearchSpace, make_fusion: Callable[[Site], nn.Module]) -> None:
        self.space = space
        self.make_fusion = make_fusion
        self.made: dict[str, nn.Module] = {}

    def __call__(self, name: str) -> nn.Module:
        self.made[name] = self.make_fusion(self.space.sites[name])
        return self.made[name]


class FusionNet(nn.Module):
    """A backbone with a fusion module at every site, global pooling and a linear classifier.

    Subclasses build the backbone and implement :meth:`forward_features`. The fusion module
    of each site is found with :meth:`fusion_modules` (site name -> module), whatever the
    module is: a plain op (``build_model``) or the supernet's set of candidates.

    Attributes:
        space: the ``SearchSpace`` the network was built from.
        num_classes: outputs of the classifier (0: none, ``forward`` returns pooled features).
        num_features: channels of ``forward_features``' output.
        site_paths: site name -> dotted module path of its fusion module.
    """

    def __init__(self, space: SearchSpace, num_features: int, num_classes: int) -> None:
        super().__init__()
        self.space = space
        self.num_features = num_features
        self.num_classes = num_classes
        self.classifier: nn.Module = self._make_classifier(num_classes)
        self.site_paths: dict[str, str] = {}

    def _make_classifier(self, num_classes: int) -> nn.Module:
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        return nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def register_sites(self, modules_by_site: dict[str, nn.Module]) -> None:
        """Record where each site's fusion module sits in the module tree."""
        path_of = {id(module): name for name, module in self.named_modules()}
        self.site_paths = {site: path_of[id(module)] for site, module in modules_by_site.items()}

    def fusion_modules(self) -> dict[str, nn.Module]:
        """Site name -> the module that fuses there, in site order."""
        return {site: self.get_submodule(path) for site, path in self.site_paths.items()}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """``(B, in_chans, H, W) -> (B, num_features, h, w)``, before pooling."""
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``(B, num_features, h, w) -> (B, num_classes)`` (or pooled ``(B, num_features)``)."""
        pooled = x.mean(dim=(2, 3))
        return pooled if pre_logits else self.classifier(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_chans, H, W) -> (B, num_classes)`` logits."""
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        """The final linear layer (timm API)."""
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: Any = None) -> None:
        """Replace the classifier with a fresh one for ``num_classes`` (0 removes it).

        ``global_pool`` is accepted for timm compatibility; only average pooling exists.
        """
        if global_pool not in (None, "avg"):
            raise ValueError(f"only global_pool='avg' is supported, got {global_pool!r}")
        self.num_classes = num_classes
        device = next(self.parameters()).device
        self.classifier = self._make_classifier(num_classes).to(device)
