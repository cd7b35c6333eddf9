"""How much memory a network of a space needs at least to train, known before allocating it.

A width or input size far too large for the machine used to end in the allocator's
``can't allocate memory: you tried to allocate 71880000000000 bytes`` minutes in, or
worse, in an allocation that succeeds and lets the kernel's OOM killer end the process
(or another one). :func:`check_training_memory` refuses such a space at once, naming
the estimate, the machine's memory and the site that weighs most.

The estimate is a floor, so that it never refuses a space that could run:

- weights: the all-``add`` network of the space (the smallest: add has no parameters),
  or for a supernet the network holding every candidate op of every site, built on
  PyTorch's ``meta`` device, which allocates nothing; training holds each weight three
  times (the weight, its gradient, the optimiser's momentum);
- activations, per sample: every fusion site's K inputs, which backward needs, plus the
  input image.
"""

from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from nasfuse.spaces._site import Site
    from nasfuse.spaces._space import SearchSpace

__all__ = ["MemoryFloor", "memory_floor", "physical_memory_bytes", "check_training_memory"]

FLOAT_BYTES = 4
#: The weight, its gradient and the optimiser's momentum.
COPIES_OF_EACH_WEIGHT = 3

_WEIGHT_FLOORS: dict[tuple[str, int, bool], int] = {}


class MemoryFloor:
    """Bytes a space needs at least: ``weights + batch_size * per_sample``.

    Attributes:
        weights: bytes of weights, gradients and momentum of the smallest network.
        per_sample: activation bytes per sample.
        heaviest_site: ``(name, bytes per sample)`` of the site with the largest inputs.
    """

    def __init__(self, weights: int, per_sample: int, heaviest_site: tuple[str, int]) -> None:
        self.weights = weights
        self.per_sample = per_sample
        self.heaviest_site = heaviest_site

    def total(self, batch_size: int) -> int:
        return self.weights + batch_size * self.per_sample


def _weight_floor(space: SearchSpace, every_op: bool) -> int:
    from nasfuse.ops import create_op
    from nasfuse.profile import count_params

    def fusion(site: Site) -> nn.Module:  # only counted, never run
        ops = site.ops if every_op else ("add",)
        return nn.ModuleList(create_op(op, site.channels, site.num_inputs) for op in ops)

    key = (space.hash, space.in_chans, every_op)
    if key not in _WEIGHT_FLOORS:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # cmgm's fallback to fewer heads: said elsewhere
            net = space.build(fusion, num_classes=0, in_chans=space.in_chans)
        count = count_params(net)
        _WEIGHT_FLOORS[key] = COPIES_OF_EACH_WEIGHT * FLOAT_BYTES * count
    return _WEIGHT_FLOORS[key]


def memory_floor(space: SearchSpace, every_op: bool = False) -> MemoryFloor:
    """The :class:`MemoryFloor` of ``space`` (the weights part cached by the space's hash).

    Args:
        every_op: count the weights of every candidate op (a supernet), not of add only.
    """
    per_site = {
        site.name: FLOAT_BYTES * site.num_inputs * site.channels * site.height * site.width
        for site in space.sites.values()
    }
    image = FLOAT_BYTES * space.in_chans * space.input_size**2
    heaviest = max(per_site.items(), key=lambda item: item[1])
    return MemoryFloor(_weight_floor(space, every_op), image + sum(per_site.values()), heaviest)


def physical_memory_bytes() -> int | None:
    """The machine's RAM, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def _gib(size: int) -> str:
    return f"{size / 2**30:,.1f} GiB"


def check_training_memory(
    space: SearchSpace, batch_size: int, source: str, every_op: bool = False
) -> None:
    """Refuse ``space`` if training it at ``batch_size`` needs more than the machine's RAM.

    ``every_op``: as :func:`memory_floor`'s (True for a supernet).

    Raises:
        SpaceError: naming ``source``, the estimate and its parts, and the heaviest site.
    """
    from nasfuse.spaces._schema import SpaceError

    available = physical_memory_bytes()
    if available is None:
        return
    floor = memory_floor(space, every_op)
    needed = floor.total(batch_size)
    if needed > available:
        site, site_bytes = floor.heaviest_site
        raise SpaceError(
            f"{source}: refused before allocating: training at batch size {batch_size} needs "
            f"at least {_gib(needed)} ({_gib(floor.weights)} of weights, gradients and "
            f"momentum{' of every candidate op' if every_op else ''}; {_gib(floor.per_sample)} of activations per sample, "
            f"{_gib(site_bytes)} of them at site {site!r}), more than this machine's "
            f"{_gib(available)}; lower width_mult or input_size"
        )
