"""The single-path supernet, standalone models built from an architecture, and their cost."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from nasfuse.ops import create_op
from nasfuse.profile import count_flops, count_params
from nasfuse.spaces import FusionNet, SearchSpace, Site

__all__ = ["OP_INITS", "SiteChoice", "Supernet", "build_model", "arch_cost"]

#: How the supernet initialises its candidate ops: "sum" starts each as close to the sum
#: of its inputs as it can be (``FusionOp.init_as_sum``), "paper" as its paper does.
OP_INITS = ("sum", "paper")


class SiteChoice(nn.Module):
    """Every op allowed at one site; only the active one runs.

    Args:
        site: the site; one op per ``site.ops`` is created, for ``site.num_inputs`` inputs
            of ``site.channels`` channels.
        op_init: "sum" (default) or "paper"; see :data:`OP_INITS`.

    Attributes:
        candidates: op name -> op module.
        active: the name of the op that ``forward`` runs.
    """

    def __init__(self, site: Site, op_init: str = "sum") -> None:
        super().__init__()
        if op_init not in OP_INITS:
            raise ValueError(f"op_init must be one of {OP_INITS}, got {op_init!r}")
        self.site_name = site.name
        self.candidates = nn.ModuleDict(
            {op: create_op(op, site.channels, site.num_inputs) for op in site.ops}
        )
        if op_init == "sum":
            for candidate in self.candidates.values():
                candidate.init_as_sum()
        self.active = site.ops[0]

    def forward(self, xs: Sequence[torch.Tensor]) -> torch.Tensor:
        """K aligned ``(B, C, H, W)`` inputs -> ``(B, C, H, W)``, through the active op only."""
        return self.candidates[self.active](xs)

    def extra_repr(self) -> str:
        return f"site={self.site_name!r}, active={self.active!r}"


def build_model(
    space: SearchSpace,
    arch: Mapping[str, str],
    num_classes: int = 10,
    in_chans: int | None = None,
) -> FusionNet:
    """The standalone network of ``arch`` with fresh weights: plain ops at every site.

    Args:
        space: the search space.
        arch: site -> op, validated against ``space``.
        num_classes: classifier outputs (0 for none).
        in_chans: input channels; the space's ``in_chans`` by default.

    Returns:
        A ``FusionNet``: ``forward(x)`` ``(B, in_chans, H, W) -> (B, num_classes)``, with
        ``forward_features``, ``get_classifier``, ``reset_classifier`` and the attributes
        ``arch`` and ``space``.
    """
    arch = space.validate_arch(arch)
    model = space.build(
        lambda site: create_op(arch[site.name], site.channels, site.num_inputs),
        num_classes,
        in_chans if in_chans is not None else space.in_chans,
    )
    model.arch = arch
    return model


class Supernet(nn.Module):
    """Every allowed op at every site, one path active at a time (single-path one-shot).

    The forward pass runs only the active op of each site, so a training step costs about
    what the extracted subnet's step costs. Unused candidates get no gradient in a step
    (DDP needs ``find_unused_parameters=True``).

    Args:
        space: the search space.
        num_classes: classifier outputs.
        in_chans: input channels; the space's ``in_chans`` by default.
        op_init: "sum" (default): every candidate starts as close to the sum of its inputs
            as it can (``FusionOp.init_as_sum``), so that all paths share one channel basis
            and the shared weights serve them all; "paper": each op's own initialisation.
            On digits, a resnet20 supernet over every op scored random architectures at 44%
            with "paper" (see the README's notes on weight sharing).

    Attributes:
        space: the search space.
        arch: the active architecture (site -> op); the first allowed op of every site
            after construction.
        net: the ``FusionNet`` holding a ``SiteChoice`` at every site.

    Example:
        >>> supernet = Supernet(load_space("resnet20"))
        >>> supernet.set_arch(supernet.sample_arch(rng=0))
        >>> logits = supernet(images)            # (B, 10)
        >>> model = supernet.extract()           # standalone, weights copied
    """

    def __init__(
        self,
        space: SearchSpace,
        num_classes: int = 10,
        in_chans: int | None = None,
        op_init: str = "sum",
    ) -> None:
        super().__init__()
        self.space = space
        self.in_chans = in_chans if in_chans is not None else space.in_chans
        self.op_init = op_init
        self.net = space.build(lambda site: SiteChoice(site, op_init), num_classes, self.in_chans)
        self.choices: dict[str, SiteChoice] = self.net.fusion_modules()  # type: ignore[assignment]
        self.arch: dict[str, str] = {}
        self.set_arch({name: site.ops[0] for name, site in space.sites.items()})

    @property
    def num_classes(self) -> int:
        """Outputs of the classifier."""
        return self.net.num_classes

    def set_arch(self, arch: Mapping[str, str]) -> None:
        """Make ``arch`` the active path (validated against the space)."""
        arch = self.space.validate_arch(arch)
        for name, op in arch.items():
            self.choices[name].active = op
        self.arch = arch

    def sample_arch(self, rng: random.Random | int | None = None) -> dict[str, str]:
        """An architecture drawn uniformly (each site's op independently); not set active.

        Args:
            rng: a ``random.Random``, a seed, or None for the ``random`` module's global
                generator (seeded by ``nasfuse.runtime.seed_everything``).
        """
        return self.space.random_arch(rng)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_chans, H, W) -> (B, num_classes)`` logits through the active path."""
        return self.net(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Features before pooling through the active path."""
        return self.net.forward_features(x)

    def get_classifier(self) -> nn.Module:
        """The final linear layer."""
        return self.net.get_classifier()

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh classifier for ``num_classes``."""
        self.net.reset_classifier(num_classes)

    def extract(self, arch: Mapping[str, str] | None = None) -> FusionNet:
        """The standalone model of ``arch`` (the active one by default) with these weights.

        The model is built with :func:`build_model`; every weight outside the sites is
        copied by name, and each site's op gets the state of the same op in the supernet.
        The model is on the supernet's device, in its train/eval mode.
        """
        arch = dict(self.arch) if arch is None else self.space.validate_arch(arch)
        model = build_model(self.space, arch, self.num_classes, self.in_chans)
        source = self.net.state_dict()
        site_prefixes = {path + "." for path in model.site_paths.values()}
        state = {
            key: source[key]
            for key in model.state_dict()
            if not any(key.startswith(prefix) for prefix in site_prefixes)
        }
        for name, path in model.site_paths.items():
            op_state = self.choices[name].candidates[arch[name]].state_dict()
            state.update({f"{path}.{key}": value for key, value in op_state.items()})
        model.load_state_dict(state, strict=True)
        device = next(self.parameters()).device
        return model.to(device).train(self.training)


def arch_cost(
    space: SearchSpace,
    arch: Mapping[str, str],
    num_classes: int = 10,
    input_size: int | None = None,
) -> tuple[int, int]:
    """``(params, FLOPs)`` of the standalone model of ``arch`` for one image.

    FLOPs are counted by ``nasfuse.profile.count_flops`` (a multiply-add is 2 FLOPs) at
    ``input_size`` (the space's by default), batch 1, eval mode.
    """
    model = build_model(space, arch, num_classes)
    size = input_size or space.input_size
    image = torch.zeros(1, space.in_chans, size, size)
    return count_params(model), count_flops(model, image)
