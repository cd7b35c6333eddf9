"""scikit-learn's handwritten digits, the offline default dataset."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from nasfuse.data._split import SplitSource, TensorImages, stratified_indices

__all__ = ["load_digits_source"]


def load_digits_source(input_size: int) -> SplitSource:
    """scikit-learn's handwritten digits: 1797 8x8 images, split 60/20/20, resized bilinearly."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # Pixel values are counts 0..16; scale to [0, 1], then resize once, up front.
    images = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)
    images = F.interpolate(
        images, size=(input_size, input_size), mode="bilinear", align_corners=False
    )
    images = images.clamp_(0.0, 1.0)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    train_val, test = stratified_indices(bunch.target, 0.8)
    train_rel, val_rel = stratified_indices(bunch.target[train_val], 0.75)
    train, val = train_val[train_rel], train_val[val_rel]
    # Normalisation constants from the training split only.
    train_pixels = images[torch.from_numpy(train)]
    mean, std = float(train_pixels.mean()), float(train_pixels.std())
    return SplitSource(
        name="digits",
        train=TensorImages(images[torch.from_numpy(train)], labels[torch.from_numpy(train)]),
        val=TensorImages(images[torch.from_numpy(val)], labels[torch.from_numpy(val)]),
        test=TensorImages(images[torch.from_numpy(test)], labels[torch.from_numpy(test)]),
        num_classes=10,
        in_chans=1,
        class_names=[str(d) for d in range(10)],
        mean=(mean,),
        std=(std,),
        style="shift",
        native_size=input_size,
    )
