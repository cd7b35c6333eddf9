"""``nasfuse export-model``: a retrained network as ONNX, TorchScript or an ExportedProgram.

Examples::

    nasfuse export-model runs/rt/arch.yaml --checkpoint runs/rt/model.pt --format onnx --out net.onnx
    nasfuse export-model best.yaml --checkpoint runs/rt/model.pt --format torchscript --out net.pt
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["register"]


def _export_model(args: argparse.Namespace) -> int:
    import torch

    from nasfuse.arch import load_arch
    from nasfuse.export import export_model
    from nasfuse.training import load_model

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    arch, space = load_arch(args.arch)
    model, info = load_model(args.checkpoint, arch=arch, space=space)
    shape = (int(info["in_chans"]), space.input_size, space.input_size)
    report = export_model(
        model,
        args.out,
        args.format,
        shape,
        exporter=args.onnx_exporter,
        opset=args.opset,
        tolerance=args.tolerance,
    )
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    how = {
        "onnx": f"ONNX opset {report.get('opset')} ({report.get('exporter')} exporter), "
        "checked in ONNX Runtime",
        "torchscript": f"TorchScript by {report.get('method')}",
        "exported-program": "torch.export ExportedProgram (torch.export.load(...).module())",
    }[args.format]
    dims = "x".join(str(n) for n in ["B", *shape])
    print(f"{report['file']}: {how}")
    print(
        f"input {dims} (B dynamic); a batch of {report['checked_batch']} agrees with "
        f"PyTorch within {report['max_abs_diff']:.2g} (tolerance {report['tolerance']:g})"
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``nasfuse export-model``."""
    from nasfuse.export import FORMATS, ONNX_EXPORTERS, ONNX_OPSET

    parser = subparsers.add_parser(
        "export-model",
        help="write a retrained network as ONNX, TorchScript or a torch.export program",
        description="Export the network of ARCH with the weights of a retrained model.pt; "
        "the file is run on a random batch and written only if its outputs match "
        "PyTorch's within --tolerance. ONNX is checked in ONNX Runtime (pip install "
        "'nasfuse[onnx]'); TorchScript is traced (scripting cannot type the ops).",
    )
    parser.add_argument("arch", type=Path, help="architecture YAML file")
    parser.add_argument("--checkpoint", type=Path, required=True, help="model.pt (retrain)")
    parser.add_argument("--format", choices=FORMATS, required=True, help="what to write")
    parser.add_argument("--out", type=Path, required=True, help="the file to write")
    parser.add_argument(
        "--onnx-exporter",
        choices=ONNX_EXPORTERS,
        default="dynamo",
        help="torch.onnx exporter (dynamo; legacy is the TorchScript-based one, faster)",
    )
    parser.add_argument("--opset", type=int, default=ONNX_OPSET, help=f"ONNX opset ({ONNX_OPSET})")
    parser.add_argument(
        "--tolerance", type=float, default=1e-4, help="largest |difference| accepted (1e-4)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=_export_model)
