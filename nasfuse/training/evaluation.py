"""Scoring a network: accuracy, BatchNorm recalibration, and subnets with inherited weights.

A supernet's BatchNorm running statistics are a blend over every path trained so far, so
scoring one path with them understates it (and ranks paths badly). Before a subnet is
scored, :func:`recalibrate_bn` re-estimates them on training images for the active path
only; :func:`evaluate_arch` does so by default.

Inherited weights are also a compromise between every path that shares them. With
``finetune_steps``, :func:`evaluate_arch` scores a copy of the path trained a few more
steps on its own (:func:`finetune`): a fixed, small cost per architecture that moves each
path toward what it would learn alone, the same steps for every architecture.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.utils.data import DataLoader

from nasfuse.runtime import model_device

if TYPE_CHECKING:
    from nasfuse.data import DataBundle
    from nasfuse.supernet import Supernet

__all__ = [
    "DEFAULT_FINETUNE_LR",
    "batchnorm_layers",
    "evaluate",
    "evaluate_arch",
    "finetune",
    "preserved_bn_stats",
    "recalibrate_bn",
]


DEFAULT_FINETUNE_LR = 0.01
"""Learning rate of :func:`finetune`: a fifth of the training default, held constant, so a
few steps adapt the inherited weights without undoing them."""


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every BatchNorm (1d/2d/3d/Sync) in ``model`` that tracks running statistics."""
    return [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]


@torch.no_grad()
def recalibrate_bn(model: nn.Module, loader: DataLoader, batches: int = 20) -> None:
    """Re-estimate every BatchNorm's running mean and variance for the model as it is now.

    The running statistics are reset, then ``batches`` batches of ``loader`` are passed
    forward in training mode (under ``no_grad``) with ``momentum=None``, which makes each
    running statistic the plain average over those batches of the per-batch statistics.
    Momenta and the model's train/eval mode are restored afterwards. For a supernet, the
    statistics are those of its active path; BatchNorms off that path are left reset.

    Args:
        model: the network (a supernet with its arch set, or a standalone model).
        loader: yields ``(images (B, C, H, W), labels)``; use a loader without augmentation
            (``DataBundle.calib``).
        batches: how many batches to average over (fewer if the loader runs out).
    """
    layers = batchnorm_layers(model)
    if not layers or batches <= 0:
        return
    momenta = [layer.momentum for layer in layers]
    was_training = model.training
    device = model_device(model)
    try:
        for layer in layers:
            layer.reset_running_stats()
            layer.momentum = None
        model.train()
        for index, (images, _) in enumerate(loader):
            if index >= batches:
                break
            model(images.to(device, non_blocking=True))
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
        model.train(was_training)


@torch.inference_mode()
def evaluate(model: nn.Module, loader: DataLoader) -> float:
    """Top-1 accuracy of ``model`` over ``loader``, in ``[0, 1]`` (eval mode, inference mode).

    The model's train/eval mode is restored afterwards.

    Raises:
        ValueError: the loader is empty, or the model's logits are not finite.
    """
    was_training = model.training
    device = model_device(model)
    model.eval()
    correct = total = 0
    try:
        for images, labels in loader:
            logits = model(images.to(device, non_blocking=True))
            if not torch.isfinite(logits).all():
                # argmax of NaN logits is class 0: a diverged net would score the share of
                # class 0 (9.7% on digits) instead of failing.
                raise ValueError(
                    "evaluate: the network's logits are not finite (NaN or inf); its weights "
                    "have diverged, so it has no accuracy"
                )
            correct += int((logits.argmax(dim=1).cpu() == labels).sum())
            total += len(labels)
    finally:
        model.train(was_training)
    if total == 0:
        raise ValueError("evaluate: the loader yielded no images")
    return correct / total


@contextmanager
def preserved_bn_stats(model: nn.Module) -> Iterator[None]:
    """Put every BatchNorm's running statistics back as they were when the block ends.

    Used around scoring subnets during supernet training, so that recalibrating for one
    path does not change the supernet that training continues with.
    """
    layers = batchnorm_layers(model)
    saved = [
        {name: tensor.clone() for name, tensor in layer.state_dict().items()} for layer in layers
    ]
    try:
        yield
    finally:
        with torch.no_grad():
            for layer, state in zip(layers, saved, strict=True):
                layer.load_state_dict(state)


def finetune(
    model: nn.Module,
    loader: DataLoader,
    steps: int,
    lr: float = DEFAULT_FINETUNE_LR,
    label_smoothing: float = 0.1,
) -> None:
    """Train ``model`` in place for ``steps`` SGD steps on ``loader``'s batches, in order.

    Nesterov SGD (momentum 0.9, no weight decay) at a constant ``lr``, cross-entropy with
    ``label_smoothing`` as in training, the loader restarted when it runs out. The model's
    train/eval mode is restored afterwards. Given the same loader state, every model sees
    the same batches, so fine-tuned scores of several architectures stay comparable.
    """
    if steps <= 0:
        return
    was_training = model.training
    device = model_device(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    done = 0
    model.train()
    try:
        while done < steps:
            yielded = False
            for images, labels in loader:
                yielded = True
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(model(images.to(device)), labels.to(device))
                loss.backward()
                optimizer.step()
                done += 1
                if done >= steps:
                    break
            if not yielded:
                raise ValueError("finetune: the loader yielded no batches")
    finally:
        model.train(was_training)


def evaluate_arch(
    supernet: Supernet,
    arch: Mapping[str, str],
    bundle: DataBundle,
    calib_batches: int = 20,
    recalibrate: bool = True,
    finetune_steps: int = 0,
    finetune_lr: float = DEFAULT_FINETUNE_LR,
) -> float:
    """Validation accuracy of one architecture with the supernet's (inherited) weights.

    Sets ``arch`` as the supernet's active path (it stays set), recalibrates BatchNorm on
    ``bundle.calib`` unless ``recalibrate`` is False, and scores ``bundle.val``. The
    supernet's running statistics are left as recalibrated; wrap the call in
    :func:`preserved_bn_stats` to keep the old ones.

    With ``finetune_steps > 0``, a standalone copy of the path (:meth:`Supernet.extract`)
    is trained that many steps (:func:`finetune`, on ``bundle.train`` from epoch 0's first
    batch), recalibrated and scored instead; the supernet's weights are not changed.

    Returns:
        Top-1 accuracy in ``[0, 1]``.
    """
    supernet.set_arch(arch)
    if finetune_steps > 0:
        model = supernet.extract(arch)
        bundle.set_epoch(0)
        finetune(model, bundle.train, finetune_steps, finetune_lr)
        if recalibrate:
            recalibrate_bn(model, bundle.calib, calib_batches)
        return evaluate(model, bundle.val)
    if recalibrate:
        recalibrate_bn(supernet, bundle.calib, calib_batches)
    return evaluate(supernet, bundle.val)
