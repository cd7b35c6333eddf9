"""Datasets and loaders: digits splits, CIFAR and ImageFolder on-disk formats, determinism."""

from __future__ import annotations

import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from nasfuse.data import DataBundle, build_loaders
from nasfuse.data._loaders import EVAL_BATCH_FACTOR


def _first_batch(loader: torch.utils.data.DataLoader) -> tuple[torch.Tensor, torch.Tensor]:
    return next(iter(loader))


def _all_labels(loader: torch.utils.data.DataLoader) -> list[int]:
    return [int(y) for _, batch in loader for y in batch]


@pytest.fixture(scope="module")
def digits16() -> DataBundle:
    return build_loaders("digits", input_size=16, batch_size=32, seed=0)


# ------------------------------------------------------------------- digits
def test_digits_splits_are_stratified_and_fixed(digits16: DataBundle) -> None:
    sizes = [len(loader.dataset) for loader in (digits16.train, digits16.val, digits16.test)]
    assert sum(sizes) == 1797
    assert sizes == [1077, 360, 360]
    assert (digits16.num_classes, digits16.in_chans, digits16.name) == (10, 1, "digits")
    for loader in (digits16.val, digits16.test):
        counts = Counter(_all_labels(loader))
        assert sorted(counts) == list(range(10))
        assert max(counts.values()) - min(counts.values()) <= 2
    # The split does not depend on the run's seed.
    other = build_loaders("digits", input_size=16, batch_size=32, seed=5)
    assert _all_labels(other.test) == _all_labels(digits16.test)
    assert torch.equal(_first_batch(other.val)[0], _first_batch(digits16.val)[0])


def test_digits_images_are_resized_and_normalised(digits16: DataBundle) -> None:
    images, labels = _first_batch(digits16.train)
    assert images.shape == (32, 1, 16, 16) and labels.shape == (32,)
    assert labels.dtype == torch.int64
    plain = torch.cat([x for x, _ in digits16.calib])
    assert abs(float(plain.mean())) < 0.1
    assert abs(float(plain.std()) - 1.0) < 0.1
    big = build_loaders("digits", input_size=24, batch_size=16)
    assert _first_batch(big.test)[0].shape == (16 * EVAL_BATCH_FACTOR, 1, 24, 24)


def test_evaluation_takes_larger_batches_and_scores_as_with_training_sized_ones(
    digits16: DataBundle,
) -> None:
    from nasfuse.training import evaluate

    assert _first_batch(digits16.val)[0].shape[0] == 32 * EVAL_BATCH_FACTOR
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 10),
    )
    with torch.no_grad():  # BatchNorm statistics of real images, not the identity
        for images, _ in digits16.calib:
            model(images)
    training_sized = torch.utils.data.DataLoader(digits16.val.dataset, batch_size=32)
    assert evaluate(model, digits16.val) == evaluate(model, training_sized)


def test_training_batches_depend_on_seed_and_epoch_only(digits16: DataBundle) -> None:
    again = build_loaders("digits", input_size=16, batch_size=32, seed=0)
    other_seed = build_loaders("digits", input_size=16, batch_size=32, seed=1)
    first, labels = _first_batch(digits16.train)
    # The global RNG does not change what a loader yields.
    torch.manual_seed(1234)
    repeat, repeat_labels = _first_batch(again.train)
    assert torch.equal(first, repeat) and torch.equal(labels, repeat_labels)
    assert not torch.equal(labels, _first_batch(other_seed.train)[1])
    again.set_epoch(1)
    assert not torch.equal(labels, _first_batch(again.train)[1])
    digits16.set_epoch(1)
    assert torch.equal(_first_batch(digits16.train)[0], _first_batch(again.train)[0])
    digits16.set_epoch(0)


def test_an_images_augmentation_is_its_seeds_stream_and_leaves_the_callers_alone(
    digits16: DataBundle,
) -> None:
    train_set = digits16.train.dataset
    train_set.set_epoch(3)
    try:
        torch.manual_seed(99)
        expected_next = torch.rand(4)
        torch.manual_seed(99)
        image, _ = train_set[5]
        assert torch.equal(torch.rand(4), expected_next)  # the caller's stream went on as if
        # The draw is torch.manual_seed's stream for the image's seed, as in earlier runs.
        seed = ((0 * 1_000_003 + 3) * 2_147_483_647 + 5) % 2**63
        plain, _ = train_set.base[train_set.indices[5]]
        torch.manual_seed(seed)
        assert torch.equal(image, train_set.finish(train_set.augment(plain)))
    finally:
        train_set.set_epoch(0)


@pytest.mark.parametrize(("size", "flip"), [(16, False), (28, True), (32, True), (8, False)])
def test_in_memory_augmentation_gives_torchvisions_tensors(size: int, flip: bool) -> None:
    """nasfuse.data._augment draws what torchvision.transforms.v2 draws, so runs give the
    same batches as when torchvision did the shifting, flipping and normalising."""
    from torchvision.transforms import v2

    from nasfuse.data._augment import Chain, HorizontalFlip, Normalize, PaddedCrop

    padding = max(1, size // 8)
    ours = Chain([PaddedCrop(size, padding), *([HorizontalFlip()] if flip else [])])
    theirs = v2.Compose(
        [v2.RandomCrop(size, padding=padding), *([v2.RandomHorizontalFlip()] if flip else [])]
    )
    mean, std = [0.2, 0.5, 0.7], [0.3, 0.25, 0.4]
    generator = torch.Generator().manual_seed(size)
    images = torch.rand(40, 3, size, size, generator=generator)
    for seed, image in enumerate(images):
        torch.manual_seed(seed)
        mine = ours(image)
        torch.manual_seed(seed)
        assert torch.equal(mine, theirs(image)), seed
        assert torch.equal(Normalize(mean, std)(mine), v2.Normalize(mean, std)(mine))
    views = {tuple(ours(images[0]).flatten().tolist()) for _ in range(10)}
    assert len(views) > 1  # it does draw


def test_in_memory_loaders_do_not_import_torchvision() -> None:
    """A Ray worker unpickles the loaders to score a trial: torchvision would cost it ~1 s."""
    import subprocess
    import sys

    code = (
        "import pickle, sys\n"
        "from nasfuse.data import build_loaders\n"
        "bundle = build_loaders('digits', input_size=16, batch_size=32)\n"
        "next(iter(bundle.train)); next(iter(bundle.val))\n"
        "pickle.loads(pickle.dumps(bundle))\n"
        "print('torchvision' in sys.modules)\n"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "False"


def test_augmentation_is_the_same_with_workers() -> None:
    in_process = build_loaders("digits", input_size=16, batch_size=32, seed=3)
    workers = build_loaders("digits", input_size=16, batch_size=32, seed=3, num_workers=2)
    assert torch.equal(_first_batch(in_process.train)[0], _first_batch(workers.train)[0])


def test_training_images_are_augmented_calib_images_are_not(digits16: DataBundle) -> None:
    train_set, calib_set = digits16.train.dataset, digits16.calib.dataset
    indices = range(10)
    plain = [calib_set[i][0] for i in indices]
    epoch0 = [train_set[i][0] for i in indices]
    assert [calib_set[i][1] for i in indices] == [train_set[i][1] for i in indices]
    assert all(torch.equal(train_set[i][0], epoch0[i]) for i in indices)  # one view per epoch
    assert any(not torch.equal(a, b) for a, b in zip(plain, epoch0, strict=True))
    train_set.set_epoch(7)
    try:
        assert any(not torch.equal(train_set[i][0], epoch0[i]) for i in indices)
    finally:
        train_set.set_epoch(0)
    assert all(torch.equal(calib_set[i][0], plain[i]) for i in indices)


def test_calib_loader_repeats_the_same_batches(digits16: DataBundle) -> None:
    first = [x for x, _ in digits16.calib][:3]
    second = [x for x, _ in digits16.calib][:3]
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert len(digits16.calib) == len(digits16.calib.dataset) // 32  # drop_last
    assert len(digits16.train) == 1077 // 32  # drop_last: BN needs full batches


def test_train_subset_is_fixed_and_stratified() -> None:
    a = build_loaders("digits", input_size=8, batch_size=10, seed=0, train_subset=100)
    b = build_loaders("digits", input_size=8, batch_size=10, seed=9, train_subset=100)
    assert len(a.train.dataset) == 100
    assert a.train.dataset.indices == b.train.dataset.indices
    counts = Counter(a.train.dataset.targets())
    assert len(counts) == 10 and max(counts.values()) - min(counts.values()) <= 1
    assert len(a.val.dataset) == 360  # val and test untouched
    with pytest.raises(ValueError, match="train_subset"):
        build_loaders("digits", input_size=8, batch_size=10, train_subset=5000)


def test_distributed_shards_are_disjoint() -> None:
    shards = []
    for rank in (0, 1):
        bundle = build_loaders("digits", input_size=8, batch_size=16, rank=rank, world_size=2)
        shards.append(set(iter(bundle.train.sampler)))
    assert not shards[0] & shards[1]
    assert len(shards[0]) == len(shards[1]) == 1077 // 2


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        build_loaders("mnist")
    with pytest.raises(ValueError, match="lower the batch size"):
        build_loaders("digits", input_size=8, batch_size=64, train_subset=50)


# -------------------------------------------------------------------- CIFAR
def _cifar_images(count: int, labels: list[int]) -> np.ndarray:
    """Images whose three channels hold 10*label, 10*label+1, 10*label+2 everywhere."""
    data = np.zeros((count, 3, 32, 32), dtype=np.uint8)
    for i, label in enumerate(labels):
        for channel in range(3):
            data[i, channel] = 10 * label + channel
    return data.reshape(count, 3072)


def _dump(path: Path, entry: dict) -> None:
    with open(path, "wb") as handle:
        pickle.dump(entry, handle)


def write_cifar10(root: Path, per_batch: int = 20, test: int = 20) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for batch in range(1, 6):
        labels = [(i + batch) % 10 for i in range(per_batch)]
        _dump(
            folder / f"data_batch_{batch}",
            {"data": _cifar_images(per_batch, labels), "labels": labels},
        )
    labels = [i % 10 for i in range(test)]
    _dump(folder / "test_batch", {"data": _cifar_images(test, labels), "labels": labels})
    _dump(folder / "batches.meta", {"label_names": [f"class{i}" for i in range(10)]})


def write_cifar100(root: Path, train: int = 40, test: int = 12, classes: int = 4) -> None:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, count in (("train", train), ("test", test)):
        labels = [i % classes for i in range(count)]
        _dump(
            folder / name,
            {"data": _cifar_images(count, labels), "fine_labels": labels, "coarse_labels": labels},
        )
    _dump(folder / "meta", {"fine_label_names": [f"fine{i}" for i in range(classes)]})


def _unnormalise(images: torch.Tensor, name: str) -> torch.Tensor:
    from nasfuse.data._cifar import CIFAR_STATS

    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in CIFAR_STATS[name])
    return images * std + mean


def test_cifar10_reads_the_real_format(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    bundle = build_loaders("cifar10", input_size=32, batch_size=4, data_dir=tmp_path)
    assert (bundle.num_classes, bundle.in_chans) == (10, 3)
    assert bundle.class_names[3] == "class3"
    assert [len(bundle.train.dataset), len(bundle.val.dataset), len(bundle.test.dataset)] == [
        90,
        10,
        20,
    ]
    images, labels = _first_batch(bundle.test)
    assert images.shape == (4 * EVAL_BATCH_FACTOR, 3, 32, 32)
    pixels = _unnormalise(images, "cifar10")[:, :, 16, 16] * 255
    expected = torch.stack([10 * labels + c for c in range(3)], dim=1).float()
    assert torch.allclose(pixels, expected, atol=1e-3)
    assert Counter(_all_labels(bundle.val)) == Counter(range(10))


def test_cifar_is_resized_to_the_input_size(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    bundle = build_loaders("cifar10", input_size=16, batch_size=4, data_dir=tmp_path)
    assert _first_batch(bundle.train)[0].shape == (4, 3, 16, 16)
    assert _first_batch(bundle.val)[0].shape == (4 * EVAL_BATCH_FACTOR, 3, 16, 16)


def test_cifar100_reads_fine_labels(tmp_path: Path) -> None:
    write_cifar100(tmp_path)
    bundle = build_loaders("cifar100", input_size=32, batch_size=4, data_dir=tmp_path)
    assert bundle.num_classes == 4 and bundle.class_names == ["fine0", "fine1", "fine2", "fine3"]
    assert len(bundle.test.dataset) == 12 and len(bundle.val.dataset) == 4
    images, labels = _first_batch(bundle.test)
    pixels = _unnormalise(images, "cifar100")[:, 0, 0, 0] * 255
    assert torch.allclose(pixels, 10 * labels.float(), atol=1e-3)


def test_missing_cifar_says_where_and_how(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        build_loaders("cifar10", data_dir=tmp_path)
    message = str(info.value)
    assert str(tmp_path.resolve() / "cifar-10-batches-py") in message
    assert "--data-dir" in message and "--download" in message


def test_corrupted_cifar_file_is_named(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_2").write_bytes(b"not a pickle")
    with pytest.raises(RuntimeError, match="data_batch_2"):
        build_loaders("cifar10", data_dir=tmp_path, batch_size=4)


class _Payload:
    """Unpickling this calls ``pathlib.Path.touch`` on ``target``: a stand-in for any code."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.touch, (self.target,))


def test_cifar_batch_that_would_run_code_is_refused_unrun(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    marker = tmp_path / "payload-ran"
    labels = [i % 10 for i in range(20)]
    _dump(
        tmp_path / "cifar-10-batches-py" / "data_batch_1",
        {"data": _cifar_images(20, labels), "labels": labels, "x": _Payload(marker)},
    )
    with pytest.raises(RuntimeError, match=r"data_batch_1: .*pathlib.*refused without running"):
        build_loaders("cifar10", data_dir=tmp_path, batch_size=4)
    assert not marker.exists()


def test_cifar_batch_that_is_not_a_dict_is_refused(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    _dump(tmp_path / "cifar-10-batches-py" / "test_batch", [1, 2, 3])
    with pytest.raises(RuntimeError, match="test_batch: not a CIFAR batch file"):
        build_loaders("cifar10", data_dir=tmp_path, batch_size=4)


# -------------------------------------------------------------- ImageFolder
def write_imagefolder(root: Path, splits: dict[str, int], classes: tuple[str, ...]) -> None:
    from PIL import Image

    for split, per_class in splits.items():
        for index, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                color = (40 * index, 100, 10 * i)
                Image.new("RGB", (20, 12), color).save(folder / f"{i}.png")


def test_imagefolder_tree(tmp_path: Path) -> None:
    write_imagefolder(tmp_path, {"train": 4, "val": 2}, ("cat", "dog", "owl"))
    bundle = build_loaders("imagefolder", input_size=16, batch_size=4, data_dir=tmp_path)
    assert bundle.class_names == ["cat", "dog", "owl"] and bundle.num_classes == 3
    assert [len(bundle.train.dataset), len(bundle.val.dataset), len(bundle.test.dataset)] == [
        12,
        6,
        6,
    ]
    assert any("test split is val" in note for note in bundle.notes)
    images, labels = _first_batch(bundle.val)
    assert images.shape == (6, 3, 16, 16)  # the whole split: fewer than one batch of 8
    assert labels.tolist() == [0, 0, 1, 1, 2, 2]
    mean = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
    std = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
    red = (images * std + mean)[:, 0, 8, 8] * 255
    assert torch.allclose(red, 40 * labels.float(), atol=1.0)
    assert _first_batch(bundle.train)[0].shape == (4, 3, 16, 16)


def test_imagefolder_uses_test_folder_when_present(tmp_path: Path) -> None:
    write_imagefolder(tmp_path, {"train": 4, "val": 1, "test": 3}, ("a", "b"))
    bundle = build_loaders("imagefolder", input_size=8, batch_size=2, data_dir=tmp_path)
    assert len(bundle.test.dataset) == 6 and not bundle.notes


def test_imagefolder_missing_split_says_where(tmp_path: Path) -> None:
    write_imagefolder(tmp_path, {"train": 2}, ("a", "b"))
    with pytest.raises(FileNotFoundError) as info:
        build_loaders("imagefolder", data_dir=tmp_path, batch_size=2)
    assert str(tmp_path.resolve() / "val") in str(info.value)
    assert "--data-dir" in str(info.value)
