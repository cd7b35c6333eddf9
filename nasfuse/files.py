"""Files a run writes: atomic writes and checkpoints that load safely.

A run may be killed at any moment; nothing it leaves behind may be half-written. Every
file is written to a temporary name in the same directory and renamed into place.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "CheckpointError",
    "atomic_write_bytes",
    "atomic_write_text",
    "save_checkpoint",
    "load_checkpoint",
]


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, corrupted or of the wrong kind."""


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Text version of :func:`atomic_write_bytes` (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def save_checkpoint(obj: dict[str, Any], path: str | Path) -> None:
    """Save a checkpoint dict atomically with ``torch.save``.

    Keep the contents to tensors, numbers, strings, lists and dicts so that
    :func:`load_checkpoint` can read it back with ``weights_only=True``.
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(
    path: str | Path, kind: str | None = None, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` with ``weights_only=True``.

    Args:
        path: the checkpoint file.
        kind: if given, the checkpoint's ``"kind"`` entry must equal it (for example
            ``"supernet"`` or ``"model"``), so a checkpoint of the wrong sort is refused.
        map_location: where tensors are loaded.

    Raises:
        CheckpointError: naming the file, when it is missing, unreadable or of the wrong kind.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise CheckpointError(
            f"{path}: not a readable nasfuse checkpoint ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a checkpoint dict, found {type(obj).__name__}")
    if kind is not None and obj.get("kind") != kind:
        raise CheckpointError(
            f"{path}: expected a {kind!r} checkpoint, found kind {obj.get('kind')!r}"
        )
    return obj
