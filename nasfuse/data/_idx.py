"""A small, verified reader of the IDX format (MNIST, Fashion-MNIST).

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of
dimensions), one big-endian uint32 per dimension, then the values in C order. The reader
checks every one of these against the file's actual length, so a truncated, padded or
foreign file is refused with its name instead of being reshaped into garbage.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

__all__ = ["IDX_TYPES", "read_idx"]

#: IDX type code -> numpy dtype (big-endian, as the format stores them).
IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | Path, ndim: int | None = None) -> np.ndarray:
    """Read one IDX file, gzip-compressed (``.gz``) or not.

    Args:
        path: the file.
        ndim: the number of dimensions the caller expects (3 for images, 1 for labels);
            None accepts any.

    Returns:
        A read-only array of the file's shape and type (native byte order).

    Raises:
        ValueError: the file is not IDX, has another number of dimensions, or its length
            does not match its header (the message names the file).
    """
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                data = handle.read()
        else:
            data = path.read_bytes()
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise ValueError(f"{path}: not a readable gzip file ({exc})") from exc
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] not in IDX_TYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic number {data[:4].hex() or 'none'})")
    dtype, dims = IDX_TYPES[data[2]], data[3]
    if ndim is not None and dims != ndim:
        raise ValueError(f"{path}: an IDX file of {dims} dimensions, expected {ndim}")
    header = 4 + 4 * dims
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(data)} bytes)")
    shape = struct.unpack(f">{dims}I", data[4:header])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        state = "truncated" if len(data) < expected else "has trailing bytes"
        raise ValueError(
            f"{path}: {state}: {len(data):,} bytes, but its header {tuple(shape)} "
            f"of {dtype.name} says {expected:,}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    array = array.astype(dtype.newbyteorder("="), copy=False)
    array.setflags(write=False)
    return array
