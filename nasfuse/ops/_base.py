"""The contract every fusion op shares (see docs/ops.md, "What all of them share")."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["FusionOp", "ImplChoice", "check_positive_int", "memory_format_of", "zero_batchnorm_"]


def zero_batchnorm_(bn: nn.BatchNorm2d) -> None:
    """Zero a BatchNorm's affine weight and bias, so that it outputs 0 until trained."""
    nn.init.zeros_(bn.weight)
    nn.init.zeros_(bn.bias)


def memory_format_of(tensor: torch.Tensor) -> torch.memory_format:
    """``torch.channels_last`` for a tensor laid out channels-last, else ``contiguous_format``.

    A tensor that is both (one channel, or 1x1 spatial) counts as contiguous.
    """
    if not tensor.is_contiguous() and tensor.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def check_positive_int(op_name: str, option: str, value: object, minimum: int = 1) -> int:
    """Return ``value`` if it is an integer ``>= minimum``; ``ValueError`` naming the op otherwise.

    Booleans are refused although Python counts them as integers.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{op_name}: {option} must be an integer >= {minimum}, got {value!r}")
    return value


class ImplChoice:
    """A validated string attribute that switches an op between a fast path and a reference.

    Declared on the class (``attn_impl = ImplChoice(("sdpa", "math"))``), set in
    ``__init__`` and changeable afterwards (``op.attn_impl = "math"``), so that tests can
    run both paths on the same weights. Setting a value outside ``choices`` raises
    ``ValueError`` naming the op.
    """

    def __init__(self, choices: tuple[str, ...]) -> None:
        self.choices = choices
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: object, owner: type | None = None) -> object:
        if instance is None:
            return self
        try:
            return instance.__dict__[self.name]
        except KeyError:
            raise AttributeError(f"{self.name} is not set yet") from None

    def __set__(self, instance: object, value: str) -> None:
        if value not in self.choices:
            op_name = getattr(instance, "op_name", type(instance).__name__)
            raise ValueError(f"{op_name}: {self.name} must be one of {self.choices}, got {value!r}")
        instance.__dict__[self.name] = value


class FusionOp(nn.Module):
    """Base of every fusion op: ``forward(xs)`` over K aligned ``(B, C, H, W)`` inputs.

    Subclasses implement :meth:`fuse`; :meth:`forward` checks the inputs first so that a
    wrong shape or count fails with a message naming the op and the shapes, and so that
    training at a batch size BatchNorm cannot handle fails with a message saying so.

    Args:
        channels: C, the channel count of every input and of the output.
        num_inputs: K, how many inputs the op fuses; ``xs[0]`` is the main path.

    Attributes:
        pooled_batchnorm: True for ops with a BatchNorm over a globally pooled
            ``(B, C, 1, 1)`` tensor, which cannot train on a batch of one sample.
    """

    op_name: str = "fusion"
    min_inputs: int = 2
    pooled_batchnorm: bool = False

    def __init__(self, channels: int, num_inputs: int) -> None:
        super().__init__()
        self.channels = check_positive_int(self.op_name, "channels", channels)
        self.num_inputs = check_positive_int(
            self.op_name, "num_inputs", num_inputs, minimum=self.min_inputs
        )

    def check_inputs(self, xs: Sequence[torch.Tensor]) -> None:
        """Raise ``ValueError`` unless ``xs`` holds K tensors of one ``(B, C, H, W)`` shape."""
        expected = f"{self.num_inputs} inputs of shape (B, {self.channels}, H, W), all equal"
        if isinstance(xs, torch.Tensor):
            raise ValueError(
                f"{self.op_name}: expected {expected}; received a single tensor of shape "
                f"{tuple(xs.shape)} (pass a list of tensors)"
            )
        shapes = [tuple(x.shape) for x in xs]
        if len(xs) != self.num_inputs:
            raise ValueError(
                f"{self.op_name}: expected {expected}; received {len(xs)} inputs of shapes {shapes}"
            )
        first = shapes[0]
        if len(first) != 4 or first[1] != self.channels or any(s != first for s in shapes):
            raise ValueError(f"{self.op_name}: expected {expected}; received {shapes}")
        if self.training and first[0] == 1:
            self._check_trainable_batch(shapes)

    def _check_trainable_batch(self, shapes: list[tuple[int, ...]]) -> None:
        # BatchNorm in training needs more than one value per channel; say so plainly
        # instead of letting F.batch_norm fail deep inside the op.
        has_batchnorm = any(isinstance(m, _BatchNorm) for m in self.modules())
        spatial_positions = shapes[0][2] * shapes[0][3]
        if has_batchnorm and (self.pooled_batchnorm or spatial_positions == 1):
            where = (
                "the globally pooled (B, C, 1, 1) tensor"
                if self.pooled_batchnorm
                else "a (1, C, 1, 1) input"
            )
            raise ValueError(
                f"{self.op_name}: cannot train with batch size 1: its BatchNorm over {where} "
                f"needs more than one sample per batch; received {shapes}. Use a batch of "
                f"2 or more (drop the last incomplete batch), or call .eval() for inference."
            )

    def forward(self, xs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Fuse K aligned inputs.

        Args:
            xs: K tensors of shape ``(B, C, H, W)``; ``xs[0]`` is the main path.

        Returns:
            Tensor of shape ``(B, C, H, W)``.
        """
        self.check_inputs(xs)
        return self.fuse(list(xs))

    def init_as_sum(self) -> None:
        """Re-initialise so that the op starts out computing (about) the sum of its inputs.

        In a weight-sharing supernet every candidate at a site feeds the same downstream
        layers. A candidate whose random initialisation re-mixes channels (a random 1x1
        projection, a random gate) makes the paths disagree about what each channel means,
        and the shared layers learn for none of them. Starting every candidate from the sum,
        in the inputs' own channel basis, keeps the paths in agreement; training then moves
        each away from it. Each op overrides this with the closest form it can take (see
        its docstring); the base leaves the weights as they are (add is the sum already).
        """

    def fuse(self, xs: list[torch.Tensor]) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def main_and_skip(xs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` for a two-input op: ``x = xs[0]``, ``y = sum(xs[1:])`` (docs/ops.md)."""
        skip = xs[1]
        for extra in xs[2:]:
            skip = skip + extra
        return xs[0], skip

    def extra_repr(self) -> str:
        return f"channels={self.channels}, num_inputs={self.num_inputs}"
