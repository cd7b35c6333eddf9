"""CIFAR-10/100 from torchvision's on-disk layout, read without running foreign pickles."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nasfuse.data._split import (
    VAL_FRACTION,
    SplitSource,
    TensorImages,
    missing_data,
    stratified_indices,
)

__all__ = ["CIFAR_STATS", "load_cifar_source"]

CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


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


def load_cifar_source(name: str, data_dir: Path, download: bool) -> SplitSource:
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
        raise missing_data(
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
    mean, std = CIFAR_STATS[name]
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
