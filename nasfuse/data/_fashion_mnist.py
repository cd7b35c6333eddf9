"""Fashion-MNIST from its four IDX files: where they are, reading and checking them."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nasfuse.data._idx import read_idx
from nasfuse.data._split import (
    VAL_FRACTION,
    SplitSource,
    TensorImages,
    default_data_dir,
    stratified_indices,
)

__all__ = [
    "DEBIAN_FASHION_MNIST",
    "FASHION_MNIST_FILES",
    "find_fashion_mnist",
    "load_fashion_mnist_source",
]

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's ``dataset-fashion-mnist`` package puts the four IDX files."""
FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
"""The four files of Fashion-MNIST (each may also be gzip-compressed, with ``.gz``)."""
_FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
_FASHION_MNIST_SIZES = {"train": 60_000, "test": 10_000}


def _fashion_mnist_file(folder: Path, stem: str) -> Path | None:
    """``folder/stem``, else ``folder/stem.gz``, else None."""
    for name in (stem, f"{stem}.gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _fashion_mnist_candidates(data_dir: Path) -> list[Path]:
    """The two layouts under one directory: the files directly, or torchvision's."""
    return [data_dir, data_dir / "FashionMNIST" / "raw"]


def find_fashion_mnist(data_dir: str | Path | None = None) -> dict[str, Path]:
    """Where the four Fashion-MNIST IDX files are.

    Looks, in order: in ``data_dir`` if given (and nowhere else: an explicit directory that
    lacks the files is an error); else in :func:`default_data_dir`; else in Debian's
    :data:`DEBIAN_FASHION_MNIST`. Each directory in two layouts: the files directly in it,
    or torchvision's ``FashionMNIST/raw/``; each file plain or ``.gz``.

    Returns:
        ``{"train_images": path, ...}``, the keys of :data:`FASHION_MNIST_FILES`.

    Raises:
        FileNotFoundError: one line naming every place looked and both fixes.
    """
    if data_dir is not None:
        candidates = _fashion_mnist_candidates(Path(data_dir))
    else:
        candidates = [*_fashion_mnist_candidates(default_data_dir()), DEBIAN_FASHION_MNIST]
    partial = ""
    for folder in candidates:
        found = {
            key: _fashion_mnist_file(folder, stem) for key, stem in FASHION_MNIST_FILES.items()
        }
        if all(found.values()):
            return found  # type: ignore[return-value]
        missing = [FASHION_MNIST_FILES[key] for key, path in found.items() if path is None]
        if len(missing) < len(found) and not partial:
            partial = f" ({folder.resolve()} lacks {', '.join(missing)})"
    looked = ", ".join(str(folder.resolve()) for folder in candidates)
    where = "--data-dir DIR" if data_dir is not None else "DIR"
    raise FileNotFoundError(
        f"Fashion-MNIST not found: looked in {looked}{partial}; install it with "
        f"`apt-get install dataset-fashion-mnist` (files under {DEBIAN_FASHION_MNIST}), or "
        f"pass --download to fetch it with torchvision into {where}"
    )


@functools.lru_cache(maxsize=2)
def _read_fashion_mnist(files: tuple[tuple[str, Path], ...]) -> dict[str, np.ndarray]:
    """The four arrays, checked against the dataset's known sizes (read once per process)."""
    paths = dict(files)
    arrays: dict[str, np.ndarray] = {}
    for split, size in _FASHION_MNIST_SIZES.items():
        images_path, labels_path = paths[f"{split}_images"], paths[f"{split}_labels"]
        images, labels = read_idx(images_path, ndim=3), read_idx(labels_path, ndim=1)
        if images.dtype != np.uint8 or images.shape != (size, 28, 28):
            raise ValueError(
                f"{images_path}: {images.dtype.name} images of shape {images.shape}; "
                f"Fashion-MNIST's {split} split is uint8 ({size}, 28, 28)"
            )
        if labels.shape != (size,) or labels.dtype != np.uint8 or int(labels.max()) > 9:
            raise ValueError(
                f"{labels_path}: {labels.dtype.name} labels of shape {labels.shape} "
                f"(max {int(labels.max()) if labels.size else 'none'}); Fashion-MNIST's "
                f"{split} split has {size} labels in 0..9"
            )
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels
    return arrays


def _to_input_size(images: np.ndarray, input_size: int) -> torch.Tensor:
    """uint8 ``(N, 28, 28)`` -> uint8 ``(N, 1, S, S)``: zero-padded when ``S >= 28`` (the
    background is 0, so padding adds no content), resized with antialiasing when smaller."""
    tensor = torch.from_numpy(np.array(images, copy=True)).unsqueeze(1)
    side = tensor.shape[-1]
    if input_size >= side:
        before = (input_size - side) // 2
        after = input_size - side - before
        return F.pad(tensor, (before, after, before, after))
    resized = F.interpolate(
        tensor.float(), size=(input_size, input_size), mode="bilinear", antialias=True
    )
    return resized.round_().clamp_(0, 255).to(torch.uint8)


def _uint8_mean_std(images: torch.Tensor) -> tuple[float, float]:
    """Mean and std of uint8 pixels scaled to ``[0, 1]``, exactly, from their histogram."""
    counts = np.bincount(images.numpy().ravel(), minlength=256).astype(np.float64)
    values = np.arange(256, dtype=np.float64) / 255.0
    total = counts.sum()
    mean = float((counts * values).sum() / total)
    var = float((counts * (values - mean) ** 2).sum() / (total - 1))
    return mean, var**0.5


def load_fashion_mnist_source(
    input_size: int, data_dir: Path | None, download: bool
) -> SplitSource:
    """Fashion-MNIST from its IDX files; val = a stratified 10% of train, test the official one."""
    if download:
        from torchvision.datasets import FashionMNIST

        root = data_dir if data_dir is not None else default_data_dir()
        # torchvision downloads all four files into root/FashionMNIST/raw and checks them.
        FashionMNIST(root=str(root), train=True, download=True)
    files = find_fashion_mnist(data_dir)
    arrays = _read_fashion_mnist(tuple(sorted(files.items())))
    train_labels = torch.from_numpy(arrays["train_labels"].astype(np.int64))
    test_labels = torch.from_numpy(arrays["test_labels"].astype(np.int64))
    train_images = _to_input_size(arrays["train_images"], input_size)
    test_images = _to_input_size(arrays["test_images"], input_size)
    train_idx, val_idx = stratified_indices(train_labels.tolist(), 1.0 - VAL_FRACTION)
    train_idx, val_idx = torch.from_numpy(train_idx), torch.from_numpy(val_idx)
    # Normalisation constants from the training split only (after padding/resizing).
    mean, std = _uint8_mean_std(train_images[train_idx])
    folder = files["train_images"].parent
    return SplitSource(
        name="fashion_mnist",
        train=TensorImages(train_images[train_idx], train_labels[train_idx]),
        val=TensorImages(train_images[val_idx], train_labels[val_idx]),
        test=TensorImages(test_images, test_labels),
        num_classes=10,
        in_chans=1,
        class_names=list(_FASHION_MNIST_CLASSES),
        mean=(mean,),
        std=(std,),
        style="crop_flip",
        native_size=input_size,
        notes=[f"Fashion-MNIST read from {folder}"],
    )
