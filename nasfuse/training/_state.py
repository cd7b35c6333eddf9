"""What a training run saves each epoch and how a resume takes it back, exactly.

:class:`ResumableState` is the checkpoint half of
:class:`~nasfuse.training._loop.TrainingRun`: the state dict it writes (weights,
optimiser, scheduler, scaler, every global RNG, progress, config), the refusal of a run
directory that already holds a run unless resuming, and the resume itself, which refuses
a checkpoint of another config. The RNG states are captured as plain values and tensors,
so the checkpoint loads with ``weights_only``.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nasfuse.config import check_resumable
from nasfuse.files import CheckpointError, load_checkpoint

__all__ = ["ResumableState", "capture_rng_state", "restore_rng_state"]


def capture_rng_state() -> dict[str, Any]:
    """The states of Python's, NumPy's and torch's global RNGs, as checkpoint-safe values."""
    version, internal, gauss = random.getstate()
    numpy_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": {
            "keys": torch.from_numpy(numpy_state[1].astype(np.int64)),
            "pos": int(numpy_state[2]),
            "has_gauss": int(numpy_state[3]),
            "cached_gaussian": float(numpy_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((int(version), tuple(int(v) for v in internal), gauss))
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class ResumableState:
    """The checkpoint of a training run: writing it, and resuming from it.

    A mixin of :class:`~nasfuse.training._loop.TrainingRun`, which sets the attributes
    used here (``cfg``, ``out_dir``, ``bundle``, ``net``, ``optimizer``, ``scheduler``,
    ``scaler`` and the progress ``start_epoch``, ``global_step``, ``history``,
    ``wall_time``). Subclasses set :attr:`checkpoint_name` and :attr:`checkpoint_kind`
    and may override :meth:`extra_state`, :meth:`load_extra_state` and
    :meth:`checkpoint_info`.
    """

    checkpoint_name = "checkpoint.pt"
    checkpoint_kind = "training_state"

    def extra_state(self) -> dict[str, Any]:
        """Stage-specific state saved in the checkpoint (and restored on resume)."""
        return {}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`extra_state` saved."""

    def checkpoint_info(self) -> dict[str, Any]:
        """Descriptive entries of the checkpoint (space, dataset, ...)."""
        return {}

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / self.checkpoint_name

    def resume_if_saved(self, resume: bool) -> bool:
        """Load the checkpoint in the run directory if there is one; whether there was.

        Raises:
            ValueError: there is one and ``resume`` is false (a run is never overwritten).
        """
        path = self.checkpoint_path
        if not path.exists():
            return False
        if not resume:
            raise ValueError(
                f"{self.out_dir} already holds a run ({path.name}); pass --resume to "
                "continue it, or choose another --out"
            )
        self.load_state(load_checkpoint(path, kind=self.checkpoint_kind))
        return True

    def state(self) -> dict[str, Any]:
        """The checkpoint: everything to continue exactly, and what the weights are."""
        state = {
            "kind": self.checkpoint_kind,
            "format": 1,
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": capture_rng_state(),
            "epoch": self.start_epoch,
            "global_step": self.global_step,
            "history": list(self.history),
            "wall_time": self.wall_time,
            "config": dataclasses.asdict(self.cfg),
            "num_classes": self.bundle.num_classes,
            "in_chans": self.bundle.in_chans,
            "input_size": self.bundle.input_size,
            "dataset": self.bundle.name,
        }
        state.update(self.checkpoint_info())
        state["extra"] = self.extra_state()
        return state

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore a checkpoint written by :meth:`state` (refusing one of another config)."""
        path = self.checkpoint_path
        check_resumable(
            state.get("config", {}),
            self.cfg,
            str(path),
            "use the run's config.yaml or start a new run in another --out",
        )
        try:
            self.net.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
            self.load_extra_state(state["extra"])
            self.start_epoch = int(state["epoch"])
            self.global_step = int(state["global_step"])
            self.history = list(state["history"])
            self.wall_time = float(state["wall_time"])
            restore_rng_state(state["rng"])
        except (KeyError, RuntimeError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: cannot resume from this checkpoint ({exc})") from exc
