"""The transforms of in-memory images that torchvision is not needed for.

Digits, Fashion-MNIST and CIFAR at their own size are shifted (zero-padded random crop),
perhaps flipped, and normalised. Those three steps are written here on plain tensors, so
that building or unpickling their loaders (every Ray worker does, to score a trial) does not
import torchvision, which costs about a second. They draw from the global CPU generator in
the order and ranges of ``torchvision.transforms.v2.RandomCrop(size, padding)`` and
``RandomHorizontalFlip()``, and normalise with the same arithmetic as ``Normalize``: a seeded
image gets the very same tensor either way (a test compares them). Resizing and photos'
random resized crops stay with torchvision.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

__all__ = ["Chain", "HorizontalFlip", "Normalize", "PaddedCrop"]


class PaddedCrop:
    """A random ``size`` x ``size`` crop of the image zero-padded by ``padding`` on each side."""

    def __init__(self, size: int, padding: int) -> None:
        self.size = int(size)
        self.padding = int(padding)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        pad = self.padding
        height, width = image.shape[-2] + 2 * pad, image.shape[-1] + 2 * pad
        if height < self.size or width < self.size:
            raise ValueError(
                f"a {self.size}x{self.size} crop of a {height}x{width} padded image is impossible"
            )
        top = int(torch.randint(0, height - self.size + 1, size=())) if height > self.size else 0
        left = int(torch.randint(0, width - self.size + 1, size=())) if width > self.size else 0
        padded = F.pad(image, [pad, pad, pad, pad]) if pad else image
        return padded[..., top : top + self.size, left : left + self.size]

    def __repr__(self) -> str:
        return f"PaddedCrop(size={self.size}, padding={self.padding})"


class HorizontalFlip:
    """Mirror the image left to right with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = float(p)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if torch.rand(1) >= self.p:
            return image
        return image.flip(-1)

    def __repr__(self) -> str:
        return f"HorizontalFlip(p={self.p})"


class Normalize:
    """``(image - mean) / std`` per channel."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        if any(s == 0 for s in std):
            raise ValueError(f"std {list(std)} has a zero: normalising would divide by it")
        self.mean = [float(m) for m in mean]
        self.std = [float(s) for s in std]

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        mean = torch.as_tensor(self.mean, dtype=image.dtype, device=image.device).view(-1, 1, 1)
        std = torch.as_tensor(self.std, dtype=image.dtype, device=image.device).view(-1, 1, 1)
        return image.sub(mean).div_(std)

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


class Chain:
    """The transforms applied one after another (an empty chain returns its input)."""

    def __init__(self, transforms: Sequence[Callable[[torch.Tensor], torch.Tensor]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        for transform in self.transforms:
            image = transform(image)
        return image

    def __repr__(self) -> str:
        return f"Chain({self.transforms!r})"
