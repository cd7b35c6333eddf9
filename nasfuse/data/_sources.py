"""Where the images come from: digits, CIFAR-10/100 and ImageFolder trees, split three ways.

Each loader here returns a :class:`SplitSource`: three plain datasets (train, val, test)
that yield ``(image, label)`` with ``image`` a float ``(C, H, W)`` tensor in ``[0, 1]``,
plus what the loaders need to know to augment and normalise them. Augmentation and
normalisation live in :mod:`nasfuse.data._loaders`.

The splits do not depend on the run's seed: they are drawn once with :data:`SPLIT_SEED`,
so every run, search trial and retraining sees the same validation and test images.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

__all__ = [
    "DATASETS",
    "SPLIT_SEED",
    "CIFAR_VAL_FRACTION",
    "SplitSource",
    "TensorImages",
    "default_data_dir",
    "load_source",
    "stratified_indices",
]

DATASETS = ("digits", "cifar10", "cifar100", "imagefolder")
SPLIT_SEED = 0
"""Seed of every fixed split (digits train/val/test, CIFAR val, ``train_subset``)."""
CIFAR_VAL_FRACTION = 0.1
"""Share of the CIFAR training set held out (stratified) as the validation split."""

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


class TensorImages(Dataset):
    """Images held in memory as one tensor.

    Args:
        images: ``(N, C, H, W)``, uint8 (scaled by 1/255 on access) or float in ``[0, 1]``.
        labels: ``(N,)`` integer class indices.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if images.ndim != 4 or len(images) != len(labels):
            raise ValueError(
                f"expected images (N, C, H, W) and N labels, got {tuple(images.shape)} "
                f"and {tuple(labels.shape)}"
            )
        self.images = images
        self.labels = labels.long()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index]
        image = image.float().div_(255.0) if image.dtype == torch.uint8 else image.float()
        return image, int(self.labels[index])

    def targets(self) -> list[int]:
        return self.labels.tolist()


class _ImageFolderAsTensors(Dataset):
    """A torchvision ``ImageFolder`` that yields RGB float ``(3, H, W)`` tensors in ``[0, 1]``."""

    def __init__(self, root: Path) -> None:
        from torchvision.datasets import ImageFolder

        self.folder = ImageFolder(str(root))

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from torchvision.transforms.v2 import functional as TF

        path, label = self.folder.samples[index]
        image = self.folder.loader(path).convert("RGB")
        return TF.to_dtype(TF.to_image(image), torch.float32, scale=True), label

    def targets(self) -> list[int]:
        return list(self.folder.targets)


@dataclass
class SplitSource:
    """Three splits of one dataset, before augmentation and normalisation.

    Attributes:
        name: the dataset's name (``"digits"``, ``"cifar10"``, ...).
        train, val, test: datasets of ``(float (C, H, W) in [0, 1], label)``.
        num_classes: number of classes.
        in_chans: C.
        class_names: one name per class index.
        mean, std: per-channel normalisation constants.
        style: which augmentation fits: ``"shift"`` (small shifts, no flips: digits),
            ``"crop_flip"`` (padded random crop and horizontal flip: CIFAR) or
            ``"resized_crop"`` (random resized crop and flip: photos of any size).
        native_size: the side of the stored images if they are all one square size.
    """

    name: str
    train: Dataset
    val: Dataset
    test: Dataset
    num_classes: int
    in_chans: int
    class_names: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    style: str
    native_size: int | None = None
    notes: list[str] = field(default_factory=list)


def default_data_dir() -> Path:
    """``$NASFUSE_DATA_DIR`` if set, else ``./data``: where CIFAR/ImageFolder data is looked for."""
    return Path(os.environ.get("NASFUSE_DATA_DIR", "data"))


def stratified_indices(
    labels: Sequence[int], size: int | float, seed: int = SPLIT_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(len(labels))`` into (chosen, rest), stratified by label.

    Args:
        labels: one class index per item.
        size: how many items to choose (int) or which share of them (float in (0, 1)).
        seed: the split's seed.

    Returns:
        Two sorted index arrays.
    """
    from sklearn.model_selection import train_test_split

    indices = np.arange(len(labels))
    chosen, rest = train_test_split(
        indices, train_size=size, stratify=np.asarray(labels), random_state=seed
    )
    return np.sort(chosen), np.sort(rest)


def _load_digits(input_size: int) -> SplitSource:
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


def _missing(what: str, looked: Path, fix: str) -> FileNotFoundError:
    return FileNotFoundError(f"{what} not found: looked in {looked.resolve()}; {fix}")


def _read_cifar_pickle(path: Path) -> dict:
    """One file of the CIFAR python format (a pickled dict, byte strings decoded as latin-1)."""
    try:
        with open(path, "rb") as handle:
            return pickle.load(handle, encoding="latin1")
    except Exception as exc:  # truncated or foreign file
        raise RuntimeError(f"{path}: not a readable CIFAR batch file ({exc})") from exc


def _load_cifar(name: str, data_dir: Path, download: bool) -> SplitSource:
    """CIFAR-10/100 from torchvision's on-disk layout; val = 10% of train, stratified."""
    from torchvision.datasets import CIFAR10, CIFAR100

    cls = CIFAR10 if name == "cifar10" else CIFAR100
    folder = data_dir / cls.base_folder
    if download:
        # torchvision downloads, checks the archive's checksum and unpacks it.
        cls(root=str(data_dir), train=True, download=True)
    files = [f for f, _ in cls.train_list] + [f for f, _ in cls.test_list] + [cls.meta["filename"]]
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        raise _missing(
            f"{name} data ({', '.join(missing)})",
            folder,
            "pass --data-dir DIR (the directory that holds "
            f"{cls.base_folder}/), or --download on a machine with internet",
        )

    def read(entries: list[list[str]]) -> tuple[torch.Tensor, torch.Tensor]:
        data, labels = [], []
        for filename, _ in entries:
            entry = _read_cifar_pickle(folder / filename)
            key = "labels" if "labels" in entry else "fine_labels"
            if "data" not in entry or key not in entry:
                raise RuntimeError(f"{folder / filename}: no 'data'/'{key}' entries; not CIFAR")
            data.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.extend(entry[key])
        return torch.from_numpy(np.concatenate(data)), torch.tensor(labels, dtype=torch.int64)

    train_images, train_labels = read(cls.train_list)
    test_images, test_labels = read(cls.test_list)
    class_names = list(_read_cifar_pickle(folder / cls.meta["filename"])[cls.meta["key"]])
    train_idx, val_idx = stratified_indices(train_labels.tolist(), 1.0 - CIFAR_VAL_FRACTION)
    train_idx, val_idx = torch.from_numpy(train_idx), torch.from_numpy(val_idx)
    mean, std = _CIFAR_STATS[name]
    return SplitSource(
        name=name,
        train=TensorImages(train_images[train_idx], train_labels[train_idx]),
        val=TensorImages(train_images[val_idx], train_labels[val_idx]),
        test=TensorImages(test_images, test_labels),
        num_classes=len(class_names),
        in_chans=3,
        class_names=class_names,
        mean=mean,
        std=std,
        style="crop_flip",
        native_size=32,
    )


def _load_imagefolder(data_dir: Path) -> SplitSource:
    """An ImageFolder tree: ``train/`` and ``val/`` (and ``test/``, else test = val)."""
    fix = "pass --data-dir DIR, a directory with train/<class>/*.png and val/<class>/*.png"
    for split in ("train", "val"):
        if not (data_dir / split).is_dir():
            raise _missing(f"imagefolder split '{split}/'", data_dir / split, fix)
    test_dir = data_dir / "test" if (data_dir / "test").is_dir() else data_dir / "val"
    splits = {}
    for split, root in (
        ("train", data_dir / "train"),
        ("val", data_dir / "val"),
        ("test", test_dir),
    ):
        try:
            splits[split] = _ImageFolderAsTensors(root)
        except (FileNotFoundError, RuntimeError) as exc:
            raise FileNotFoundError(f"{root.resolve()}: {exc}; {fix}") from exc
    classes = splits["train"].folder.classes
    for split in ("val", "test"):
        if splits[split].folder.classes != classes:
            raise ValueError(
                f"{data_dir.resolve()}: the class folders of {split}/ "
                f"({splits[split].folder.classes}) differ from those of train/ ({classes})"
            )
    notes = [] if test_dir.name == "test" else ["no test/ folder: the test split is val/"]
    return SplitSource(
        name="imagefolder",
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        num_classes=len(classes),
        in_chans=3,
        class_names=list(classes),
        mean=_IMAGENET_MEAN,
        std=_IMAGENET_STD,
        style="resized_crop",
        notes=notes,
    )


def load_source(
    dataset: str, input_size: int, data_dir: str | Path | None = None, download: bool = False
) -> SplitSource:
    """Load the three splits of ``dataset``.

    Raises:
        ValueError: for an unknown dataset name.
        FileNotFoundError: when the data is not on disk, saying where it looked and which
            option fixes it.
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of: {', '.join(DATASETS)}")
    if dataset == "digits":
        return _load_digits(input_size)
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    if dataset in _CIFAR_STATS:
        return _load_cifar(dataset, root, download)
    if download:
        raise ValueError(
            "--download works for cifar10/cifar100 only; imagefolder reads a local tree"
        )
    return _load_imagefolder(root)
