"""A trained network as a file that runs without nasfuse: ONNX, TorchScript, ExportedProgram.

Each export is written to a temporary file, run on a random batch of another batch size
than the one it was exported with, and compared with the PyTorch model; only when every
output is within ``tolerance`` (1e-4 by default) is it moved to ``out``. Otherwise
:class:`ExportMismatchError` is raised and nothing is left at ``out``.

- ``onnx``: ``torch.onnx.export`` with opset :data:`ONNX_OPSET`, a dynamic batch axis
  (input ``images``, output ``logits``), checked in ONNX Runtime (``pip install
  nasfuse[onnx]``). The default exporter is the dynamo one (``torch.export`` based,
  PyTorch's maintained path); ``exporter="legacy"`` is the TorchScript-based one, which
  works as well since HRNet's head pools by fixed factors, and is several times faster.
- ``torchscript``: by tracing (``torch.jit.trace``). Scripting cannot work: the fusion
  ops take a ``Sequence[Tensor]``, which TorchScript does not type.
- ``exported-program``: ``torch.export.export`` with a dynamic batch, saved with
  ``torch.export.save`` (load with ``torch.export.load(path).module()``).

Example:
    >>> model, info = load_model("runs/rt/model.pt")
    >>> export_model(model, "net.onnx", "onnx", (1, 16, 16))
    {'format': 'onnx', 'max_abs_diff': 2.9e-08, ...}
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "FORMATS",
    "ONNX_EXPORTERS",
    "ONNX_OPSET",
    "ExportMismatchError",
    "export_model",
    "run_exported",
]

FORMATS = ("onnx", "torchscript", "exported-program")
ONNX_EXPORTERS = ("dynamo", "legacy")
ONNX_OPSET = 18
INPUT_NAME, OUTPUT_NAME = "images", "logits"
EXPORT_BATCH, CHECK_BATCH = 2, 3  # a check at another batch size tests the dynamic axis


class ExportMismatchError(RuntimeError):
    """The exported file's outputs differ from the PyTorch model's."""


def _batch_dim() -> Any:
    return torch.export.Dim("batch", min=1, max=4096)


def _export_onnx(model: nn.Module, example: torch.Tensor, path: Path, exporter: str, opset: int):
    names = {"input_names": [INPUT_NAME], "output_names": [OUTPUT_NAME]}
    if exporter == "dynamo":
        options = {
            "dynamic_shapes": ({0: _batch_dim()},),
            "external_data": False,  # one self-contained file; these networks are far below 2 GB
            "verbose": False,
        }
        quiet = contextlib.nullcontext()
    else:
        options = {"dynamic_axes": {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}}
        quiet = _quiet_tracing()
    with quiet:
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=exporter == "dynamo",
            opset_version=opset,
            **names,
            **options,
        )


@contextlib.contextmanager
def _quiet_tracing() -> Iterator[None]:
    """Tracing without its warnings: the ops' shape checks become constants (the check at
    another batch size tests what matters), and PyTorch marks torch.jit deprecated."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
        yield


def _export_torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    with _quiet_tracing():
        torch.jit.save(torch.jit.trace(model, example), str(path))


def _export_program(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    program = torch.export.export(model, (example,), dynamic_shapes=({0: _batch_dim()},))
    torch.export.save(program, str(path))


def run_exported(path: str | Path, fmt: str, images: torch.Tensor) -> torch.Tensor:
    """Run the exported file ``path`` of format ``fmt`` on ``images``; returns the logits.

    Raises:
        RuntimeError: ONNX Runtime is not installed (for ``onnx``).
    """
    if fmt == "onnx":
        try:
            import onnxruntime
        except ImportError as exc:
            raise RuntimeError(
                "checking an ONNX export needs ONNX Runtime: pip install 'nasfuse[onnx]'"
            ) from exc
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (output,) = session.run([OUTPUT_NAME], {INPUT_NAME: images.numpy()})
        return torch.from_numpy(output)
    if fmt == "torchscript":
        with _quiet_tracing():
            return torch.jit.load(str(path), map_location="cpu")(images)
    if fmt == "exported-program":
        return torch.export.load(str(path)).module()(images)
    raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")


def export_model(
    model: nn.Module,
    out: str | Path,
    fmt: str,
    input_shape: tuple[int, int, int],
    *,
    exporter: str = "dynamo",
    opset: int = ONNX_OPSET,
    tolerance: float = 1e-4,
    seed: int = 0,
) -> dict[str, Any]:
    """Export ``model`` (put in eval mode, on the CPU) to ``out`` and check it.

    Args:
        model: the network; ``(B, *input_shape) -> (B, num_classes)``.
        out: the file to write (``.onnx``, ``.pt`` for TorchScript, ``.pt2``).
        fmt: one of :data:`FORMATS`.
        input_shape: ``(channels, height, width)`` of one image.
        exporter: for ONNX, ``dynamo`` or ``legacy`` (see the module docstring).
        opset: the ONNX opset.
        tolerance: the largest absolute difference from PyTorch's logits accepted.
        seed: seed of the random batches.

    Returns:
        What was done: format, exporter, opset, batch sizes, the largest difference.

    Raises:
        ExportMismatchError: the file's outputs differ by more than ``tolerance`` (no
            file is left at ``out``).
        ValueError: unknown format or exporter.
    """
    out = Path(out)
    _check_request(out, fmt, exporter)
    model = model.to("cpu").eval()
    generator = torch.Generator().manual_seed(seed)
    example = torch.randn(EXPORT_BATCH, *input_shape, generator=generator)
    images = torch.randn(CHECK_BATCH, *input_shape, generator=generator)
    writers: dict[str, Callable[[Path], None]] = {
        "onnx": lambda path: _export_onnx(model, example, path, exporter, opset),
        "torchscript": lambda path: _export_torchscript(model, example, path),
        "exported-program": lambda path: _export_program(model, example, path),
    }
    tmp = _temporary_file_beside(out)
    try:
        with torch.no_grad():
            writers[fmt](tmp)
            expected = model(images)
            actual = run_exported(tmp, fmt, images)
        difference = _checked_difference(out, fmt, actual, expected, tolerance)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    report: dict[str, Any] = {
        "format": fmt,
        "file": str(out),
        "input": [EXPORT_BATCH, *input_shape],
        "dynamic_batch": True,
        "checked_batch": CHECK_BATCH,
        "max_abs_diff": difference,
        "tolerance": tolerance,
    }
    if fmt == "onnx":
        report.update(exporter=exporter, opset=opset, runtime="onnxruntime")
    if fmt == "torchscript":
        report["method"] = "trace (scripting cannot type the ops' Sequence[Tensor] inputs)"
    return report


def _check_request(out: Path, fmt: str, exporter: str) -> None:
    """Refuse an unknown format or exporter, and an ExportedProgram not named ``.pt2``."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if exporter not in ONNX_EXPORTERS:
        raise ValueError(f"unknown ONNX exporter {exporter!r}; expected dynamo or legacy")
    if fmt == "exported-program" and out.suffix != ".pt2":
        raise ValueError(f"{out}: torch.export.save writes .pt2 files; name it {out.stem}.pt2")


def _temporary_file_beside(out: Path) -> Path:
    """A new empty file in ``out``'s folder (created), with ``out``'s suffix, to move onto
    ``out`` once checked; readable as an ordinary file is (umask), not mkstemp's 0600."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=out.suffix, dir=out.parent)
    os.close(fd)
    tmp = Path(name)
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o666 & ~umask)
    return tmp


def _checked_difference(
    out: Path, fmt: str, actual: torch.Tensor, expected: torch.Tensor, tolerance: float
) -> float:
    """The largest ``|actual - expected|``, refused above ``tolerance`` or if not finite.

    Raises:
        ExportMismatchError: another output shape, or a difference over ``tolerance``.
    """
    if actual.shape != expected.shape:
        raise ExportMismatchError(
            f"{out}: the exported model gives outputs of shape {tuple(actual.shape)} for a "
            f"batch of {CHECK_BATCH}, PyTorch {tuple(expected.shape)}; nothing written"
        )
    difference = float((actual.float() - expected).abs().max())
    if not difference <= tolerance:  # also refuses NaN
        raise ExportMismatchError(
            f"{out}: the {fmt} export's outputs differ from PyTorch's by up to "
            f"{difference:.3g} (tolerance {tolerance:g}) on a random batch of "
            f"{CHECK_BATCH}; nothing written"
        )
    return difference
