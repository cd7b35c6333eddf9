"""The arguments that name a dataset, shared by every subcommand that reads one."""

from __future__ import annotations

import argparse

__all__ = ["add_data_arguments"]


def add_data_arguments(
    parser: argparse.ArgumentParser,
    *,
    default_hint: str = "digits",
    download: bool = True,
    train_subset: bool = True,
) -> None:
    """Add ``--dataset``, ``--data-dir`` and, optionally, ``--download`` and ``--train-subset``.

    Every flag defaults to None, so that a config file's value is kept unless it is given.

    Args:
        parser: the subcommand's parser.
        default_hint: what the subcommand uses when ``--dataset`` is not given.
        download: add ``--download``.
        train_subset: add ``--train-subset N``.
    """
    from nasfuse.data import DATASETS

    parser.add_argument(
        "--dataset",
        choices=DATASETS,
        default=None,
        help=f"the data (default: {default_hint}); digits ships with scikit-learn, "
        "fashion_mnist with Debian (apt-get install dataset-fashion-mnist)",
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="where the dataset's files are (default: $NASFUSE_DATA_DIR or ./data; "
        "fashion_mnist also looks in /usr/share/datasets/fashion-mnist)",
    )
    if download:
        parser.add_argument(
            "--download",
            action="store_true",
            default=None,
            help="let torchvision download fashion_mnist / CIFAR into --data-dir",
        )
    if train_subset:
        parser.add_argument(
            "--train-subset",
            type=int,
            default=None,
            metavar="N",
            help="train on a fixed stratified subset of N training images (default: all)",
        )
