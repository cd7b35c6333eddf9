"""Fashion-MNIST: the IDX reader, where the files are looked for, and the real files' splits.

The tests on the real data read Debian's copy (``apt-get install dataset-fashion-mnist``,
which ``.ci/run`` installs). Where it is absent they are skipped, except under CI, where
they fail: the loader must be tested on the real files there.
"""

from __future__ import annotations

import gzip
import os
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from nasfuse.data import (
    DEBIAN_FASHION_MNIST,
    DataBundle,
    build_loaders,
    find_fashion_mnist,
    read_idx,
)
from nasfuse.data._fashion_mnist import FASHION_MNIST_FILES
from nasfuse.data._loaders import EVAL_BATCH_FACTOR

_STEMS = list(FASHION_MNIST_FILES.values())


def _real_files_or_skip() -> Path:
    if all((DEBIAN_FASHION_MNIST / f"{stem}.gz").is_file() for stem in _STEMS):
        return DEBIAN_FASHION_MNIST
    message = (
        f"Fashion-MNIST is not under {DEBIAN_FASHION_MNIST} (apt-get install dataset-fashion-mnist)"
    )
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI must test the loader on the real files")
    pytest.skip(message)


def _raw_labels(path: Path) -> np.ndarray:
    """The labels of an IDX label file, read without nasfuse (8-byte header, then uint8)."""
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    assert struct.unpack(">I", data[:4])[0] == 0x801
    return np.frombuffer(data, dtype=np.uint8, offset=8)


def _raw_images(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    count, rows, cols = struct.unpack(">3I", data[4:16])
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(count, rows, cols)


def _labels(loader: torch.utils.data.DataLoader) -> list[int]:
    return [int(y) for _, batch in loader for y in batch]


def _link_files(folder: Path, source: Path, gz: bool = True) -> None:
    """The four real files, linked into ``folder`` (optionally decompressed copies)."""
    folder.mkdir(parents=True, exist_ok=True)
    for stem in _STEMS:
        if gz:
            (folder / f"{stem}.gz").symlink_to(source / f"{stem}.gz")
        else:
            with gzip.open(source / f"{stem}.gz", "rb") as handle:
                (folder / stem).write_bytes(handle.read())


@pytest.fixture(scope="module")
def fmnist28() -> DataBundle:
    _real_files_or_skip()
    return build_loaders("fashion_mnist", input_size=28, batch_size=500)


# ------------------------------------------------------------ the real files
def test_real_splits_sizes_and_classes(fmnist28: DataBundle) -> None:
    sizes = [len(loader.dataset) for loader in (fmnist28.train, fmnist28.val, fmnist28.test)]
    assert sizes == [54_000, 6_000, 10_000]
    assert (fmnist28.num_classes, fmnist28.in_chans, fmnist28.name) == (10, 1, "fashion_mnist")
    assert fmnist28.class_names[0] == "T-shirt/top" and fmnist28.class_names[9] == "Ankle boot"
    train = Counter(fmnist28.train.dataset.targets())
    val = Counter(_labels(fmnist28.val))
    test = Counter(_labels(fmnist28.test))
    # 6,000 training images per class, split 5,400 / 600; 1,000 test images per class.
    assert {train[c] + val[c] for c in range(10)} == {6000}
    assert set(val.values()) == {600}
    assert set(test.values()) == {1000}
    images, labels = next(iter(fmnist28.test))
    assert images.shape == (500 * EVAL_BATCH_FACTOR, 1, 28, 28) and labels.dtype == torch.int64


def test_test_labels_and_pixels_match_the_idx_files(fmnist28: DataBundle) -> None:
    root = _real_files_or_skip()
    labels = _raw_labels(root / "t10k-labels-idx1-ubyte.gz")
    assert _labels(fmnist28.test) == labels.tolist()
    images = next(iter(fmnist28.test))[0]
    raw = _raw_images(root / "t10k-images-idx3-ubyte.gz")[: len(images)]
    source = fmnist28.test.dataset.finish.transforms[-1]  # the Normalize step
    pixels = images * source.std[0] + source.mean[0]
    assert torch.allclose(pixels[:, 0] * 255, torch.from_numpy(raw.copy()).float(), atol=1e-3)


def test_normalised_with_the_training_split_statistics(fmnist28: DataBundle) -> None:
    plain = torch.cat([x for x, _ in fmnist28.calib])
    assert abs(float(plain.mean())) < 0.01
    assert abs(float(plain.std()) - 1.0) < 0.01
    # Fashion-MNIST's known statistics: mean 0.286, std 0.353 over the 60k training images.
    normalise = fmnist28.calib.dataset.finish.transforms[-1]
    assert normalise.mean[0] == pytest.approx(0.286, abs=0.003)
    assert normalise.std[0] == pytest.approx(0.353, abs=0.003)


def test_padded_to_32_and_resized_to_16() -> None:
    root = _real_files_or_skip()
    count = 8 * EVAL_BATCH_FACTOR  # the first test batch
    raw = _raw_images(root / "t10k-images-idx3-ubyte.gz")[:count]
    raw = torch.from_numpy(raw.copy()).float()
    bundle = build_loaders("fashion_mnist", input_size=32, batch_size=8)
    normalise = bundle.test.dataset.finish.transforms[-1]
    images = next(iter(bundle.test))[0] * normalise.std[0] + normalise.mean[0]
    assert images.shape == (count, 1, 32, 32)
    # The 28x28 image sits in the middle, a 2-pixel black border around it.
    assert torch.allclose(images[:, 0, 2:30, 2:30] * 255, raw, atol=1e-3)
    assert float(images[:, :, :2].abs().max()) < 1e-6
    small = build_loaders("fashion_mnist", input_size=16, batch_size=8)
    assert next(iter(small.train))[0].shape == (8, 1, 16, 16)
    assert next(iter(small.test))[0].shape == (count, 1, 16, 16)


def test_training_images_are_flipped_or_shifted() -> None:
    _real_files_or_skip()
    bundle = build_loaders("fashion_mnist", input_size=28, batch_size=64, train_subset=640)
    train, calib = bundle.train.dataset, bundle.calib.dataset
    changed = sum(not torch.equal(train[i][0], calib[i][0]) for i in range(32))
    assert changed >= 24  # a crop offset of 0 and no flip leave an image as it is


def test_train_subset_is_stratified_and_fixed_across_seeds() -> None:
    _real_files_or_skip()
    first = build_loaders("fashion_mnist", input_size=16, batch_size=50, train_subset=3000, seed=0)
    other = build_loaders("fashion_mnist", input_size=16, batch_size=50, train_subset=3000, seed=7)
    assert first.train.dataset.indices == other.train.dataset.indices
    assert len(first.train.dataset) == 3000
    assert set(Counter(first.train.dataset.targets()).values()) == {300}
    # The validation and test splits do not shrink with the training subset.
    assert (len(first.val.dataset), len(first.test.dataset)) == (6000, 10000)


# ------------------------------------------------------------- where it looks
def test_both_layouts_plain_or_gz_under_data_dir(tmp_path: Path) -> None:
    root = _real_files_or_skip()
    direct, torchvision_layout = tmp_path / "direct", tmp_path / "tv"
    _link_files(direct, root, gz=False)
    _link_files(torchvision_layout / "FashionMNIST" / "raw", root, gz=True)
    assert find_fashion_mnist(direct)["test_labels"] == direct / "t10k-labels-idx1-ubyte"
    found = find_fashion_mnist(torchvision_layout)
    assert found["train_images"].parent == torchvision_layout / "FashionMNIST" / "raw"
    bundle = build_loaders("fashion_mnist", input_size=28, batch_size=500, data_dir=direct)
    assert (
        _labels(bundle.test)[:500] == _raw_labels(root / "t10k-labels-idx1-ubyte.gz")[:500].tolist()
    )


def test_explicit_data_dir_without_the_files_does_not_fall_back(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        build_loaders("fashion_mnist", data_dir=tmp_path)
    message = str(info.value)
    assert str(tmp_path.resolve()) in message
    assert str(DEBIAN_FASHION_MNIST) + "," not in message  # not looked in
    assert "apt-get install dataset-fashion-mnist" in message and "--download" in message


def test_missing_everywhere_names_every_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NASFUSE_DATA_DIR", str(tmp_path / "env"))
    monkeypatch.setattr("nasfuse.data._fashion_mnist.DEBIAN_FASHION_MNIST", tmp_path / "debian")
    with pytest.raises(FileNotFoundError) as info:
        find_fashion_mnist()
    message = str(info.value)
    for place in (tmp_path / "env", tmp_path / "env" / "FashionMNIST" / "raw", tmp_path / "debian"):
        assert str(place.resolve()) in message
    assert "\n" not in message


def test_data_dir_env_is_looked_in_before_debian(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _real_files_or_skip()
    _link_files(tmp_path / "FashionMNIST" / "raw", root)
    monkeypatch.setenv("NASFUSE_DATA_DIR", str(tmp_path))
    assert find_fashion_mnist()["train_labels"].parent == tmp_path / "FashionMNIST" / "raw"
    monkeypatch.setenv("NASFUSE_DATA_DIR", str(tmp_path / "elsewhere"))
    assert find_fashion_mnist()["train_labels"].parent == DEBIAN_FASHION_MNIST


def test_partial_directory_says_which_files_are_missing(tmp_path: Path) -> None:
    root = _real_files_or_skip()
    _link_files(tmp_path, root)
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="lacks t10k-images-idx3-ubyte"):
        find_fashion_mnist(tmp_path)


def test_download_goes_through_torchvision_into_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _real_files_or_skip()
    calls = []

    class FakeFashionMNIST:  # torchvision's downloader, without the network
        def __init__(self, root: str, train: bool, download: bool) -> None:
            calls.append((root, train, download))
            _link_files(Path(root) / "FashionMNIST" / "raw", DEBIAN_FASHION_MNIST)

    monkeypatch.setattr("torchvision.datasets.FashionMNIST", FakeFashionMNIST)
    bundle = build_loaders(
        "fashion_mnist", input_size=28, batch_size=500, data_dir=tmp_path, download=True
    )
    assert calls == [(str(tmp_path), True, True)]
    assert len(bundle.test.dataset) == 10_000 and root.is_dir()


# -------------------------------------------------------------- the IDX format
def _write_idx(path: Path, array: np.ndarray, code: int = 0x08) -> None:
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as handle:
            handle.write(payload)
    else:
        path.write_bytes(payload)


def test_idx_reader_round_trips_every_type(tmp_path: Path) -> None:
    for code, dtype in ((0x08, np.uint8), (0x0C, np.int32), (0x0D, np.float32)):
        array = (np.arange(24).reshape(2, 3, 4) * 3).astype(dtype)
        for name in (f"a{code}.idx", f"a{code}.idx.gz"):
            _write_idx(tmp_path / name, array, code)
            read = read_idx(tmp_path / name, ndim=3)
            assert read.dtype == np.dtype(dtype) and np.array_equal(read, array)
            assert not read.flags.writeable


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: b[:-5], "truncated: 35 bytes"),
        (lambda b: b + b"\x00", "has trailing bytes"),
        (lambda b: b"\x01" + b[1:], "not an IDX file"),
        (lambda b: b[:2] + b"\x07" + b[3:], "not an IDX file"),
        (lambda b: b[:6], "truncated IDX header"),
        (lambda b: b"", "not an IDX file"),
    ],
)
def test_idx_reader_refuses_damaged_files(tmp_path: Path, damage, message: str) -> None:
    good = tmp_path / "good.idx"
    _write_idx(good, np.zeros((2, 3, 4), np.uint8))
    bad = tmp_path / "bad.idx"
    bad.write_bytes(damage(good.read_bytes()))
    with pytest.raises(ValueError, match=message) as info:
        read_idx(bad)
    assert str(bad) in str(info.value)


def test_idx_reader_refuses_wrong_dimensions_and_bad_gzip(tmp_path: Path) -> None:
    _write_idx(tmp_path / "labels.idx", np.zeros(5, np.uint8))
    with pytest.raises(ValueError, match="of 1 dimensions, expected 3"):
        read_idx(tmp_path / "labels.idx", ndim=3)
    (tmp_path / "broken.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(ValueError, match="broken.gz: not a readable gzip file"):
        read_idx(tmp_path / "broken.gz")


def test_a_well_formed_file_of_the_wrong_size_is_named(tmp_path: Path) -> None:
    root = _real_files_or_skip()
    _link_files(tmp_path, root)
    small = tmp_path / "t10k-labels-idx1-ubyte.gz"
    small.unlink()
    _write_idx(small, np.zeros(100, np.uint8))
    with pytest.raises(
        ValueError, match=r"t10k-labels-idx1-ubyte.gz: uint8 labels of shape \(100,\)"
    ):
        build_loaders("fashion_mnist", data_dir=tmp_path)


def test_cli_missing_data_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from nasfuse.cli import main

    code = main(
        ["train-supernet", "--space", "tests/fixtures/tiny_resnet.yaml", "--dataset",
         "fashion_mnist", "--data-dir", str(tmp_path), "--epochs", "1", "--out",
         str(tmp_path / "run")]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "Fashion-MNIST not found" in err and "--download" in err
    assert not (tmp_path / "run" / "supernet.pt").exists()
