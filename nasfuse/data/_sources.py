"""Where the images come from: digits, Fashion-MNIST, CIFAR-10/100 and ImageFolder trees.

Each loader here returns a :class:`SplitSource`: three plain datasets (train, val, test)
that yield ``(image, label)`` with ``image`` a float ``(C, H, W)`` tensor in ``[0, 1]``,
plus what the loaders need to know to augment and normalise them. Augmentation and
normalisation live in :mod:`nasfuse.data._loaders`.

The splits do not depend on the run's seed: they are drawn once with :data:`SPLIT_SEED`,
so every run, search trial and retraining sees the same validation and test images.
"""

from __future__ import annotations

import functools
import os
import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from nasfuse.data._idx import read_idx

__all__ = [
    "DATASETS",
    "SPLIT_SEED",
    "VAL_FRACTION",
    "DEBIAN_FASHION_MNIST",
    "FASHION_MNIST_FILES",
    "SplitSource",
    "TensorImages",
    "default_data_dir",
    "find_fashion_mnist",
    "load_source",
    "stratified_indices",
]

DATASETS = ("digits", "fashion_mnist", "cifar10", "cifar100", "imagefolder")
SPLIT_SEED = 0
"""Seed of every fixed split (digits train/val/test, the val splits, ``train_subset``)."""
VAL_FRACTION = 0.1
"""Share of an official training set held out (stratified) as the validation split
(Fashion-MNIST: 6,000 of 60,000; CIFAR: 5,000 of 50,000)."""

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


def _load_fashion_mnist(input_size: int, data_dir: Path | None, download: bool) -> SplitSource:
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


def _missing(what: str, looked: Path, fix: str) -> FileNotFoundError:
    return FileNotFoundError(f"{what} not found: looked in {looked.resolve()}; {fix}")


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles plain data and numpy arrays only: a CIFAR batch is a dict of lists,
    strings and one uint8 array, so any other global in the file is refused before it
    can run. (``pickle.load`` would call whatever the file names.)"""

    _ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            # Python 2 pickles of byte strings, as in the original CIFAR files.
            ("_codecs", "encode"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(
                f"it refers to {module}.{name}, which a CIFAR batch never does; refused "
                "without running it"
            )
        return super().find_class(module, name)


def _read_cifar_pickle(path: Path) -> dict:
    """One file of the CIFAR python format (a pickled dict, byte strings decoded as latin-1)."""
    try:
        with open(path, "rb") as handle:
            entry = _CifarUnpickler(handle, encoding="latin1").load()
    except Exception as exc:  # truncated, foreign or hostile file
        raise RuntimeError(f"{path}: not a readable CIFAR batch file ({exc})") from exc
    if not isinstance(entry, dict):
        raise RuntimeError(f"{path}: not a CIFAR batch file (holds {type(entry).__name__})")
    return entry


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
    train_idx, val_idx = stratified_indices(train_labels.tolist(), 1.0 - VAL_FRACTION)
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
    if dataset == "fashion_mnist":
        return _load_fashion_mnist(
            input_size, Path(data_dir) if data_dir is not None else None, download
        )
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    if dataset in _CIFAR_STATS:
        return _load_cifar(dataset, root, download)
    if download:
        raise ValueError(
            "--download works for fashion_mnist, cifar10 and cifar100; imagefolder reads a "
            "local tree"
        )
    return _load_imagefolder(root)
