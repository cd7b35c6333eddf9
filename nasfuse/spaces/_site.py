"""The fusion site: where the search picks an op. A leaf module, so that every family and
the space can import it without importing each other."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Site", "SiteShape"]

#: ``(name, channels, num_inputs, height, width)`` of one site, as a family's layout gives it.
SiteShape = tuple[str, int, int, int, int]


@dataclass(frozen=True)
class Site:
    """One place where the search picks an op: K aligned ``(B, channels, height, width)`` inputs.

    Attributes:
        name: readable, e.g. ``"stage3.module1.fuse.branch2"`` or ``"layer1.0"``.
        channels: C.
        num_inputs: K; the first input is the main path.
        height: H at the space's input size.
        width: W at the space's input size.
        ops: the ops allowed here, in the order of the space's ``ops`` list.
    """

    name: str
    channels: int
    num_inputs: int
    height: int
    width: int
    ops: tuple[str, ...]
