"""Where code runs: seeding, the default device, a readable name for it, a model's device."""

from __future__ import annotations

import platform
import random

import numpy as np
import torch

__all__ = ["seed_everything", "default_device", "device_name", "model_device"]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) from one integer."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def default_device() -> torch.device:
    """The target device: the first GPU where there is one, else the CPU."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: str | torch.device | None = None) -> str:
    """A name that says which hardware a figure was measured on.

    ``"cuda:NVIDIA A100-SXM4-40GB"`` or ``"cpu:Intel(R) Xeon(R) ... (2 threads)"``.
    """
    device = torch.device(device) if device is not None else default_device()
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    threads = torch.get_num_threads()
    return f"cpu:{_cpu_model()} ({threads} thread{'s' if threads != 1 else ''})"


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of ``model``'s first parameter or buffer; the CPU for a model with none."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")
