"""An ImageFolder tree of photos: ``train/``, ``val/`` and optionally ``test/``."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from nasfuse.data._split import SplitSource, missing_data

__all__ = ["load_imagefolder_source"]

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


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


def load_imagefolder_source(data_dir: Path) -> SplitSource:
    """An ImageFolder tree: ``train/`` and ``val/`` (and ``test/``, else test = val)."""
    fix = "pass --data-dir DIR, a directory with train/<class>/*.png and val/<class>/*.png"
    for split in ("train", "val"):
        if not (data_dir / split).is_dir():
            raise missing_data(f"imagefolder split '{split}/'", data_dir / split, fix)
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
