"""The exported architecture outside nasfuse: timm, safetensors, ONNX, TorchScript.

Every shipped space is built small (width 0.25, 16x16 input, HRNet stages of one module
of one block) so that each of its uniform architectures and a random one is checked.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

import nasfuse  # noqa: F401  (registers the timm models)
from nasfuse.arch import save_arch
from nasfuse.spaces import list_spaces, load_space
from nasfuse.timm_models import OldArchFileWarning


def small_options(name: str) -> dict:
    """Options that make the shipped space ``name`` quick to build, run and export."""
    options = {"width_mult": 0.25, "input_size": 16}
    space = load_space(name, options)
    if space.family == "hrnet":
        for index in range(len(space.config["stages"])):
            options[f"stages.{index}.modules"] = 1
            options[f"stages.{index}.blocks"] = 1
    return options


def arch_cases() -> list:
    cases = []
    for name in list_spaces():
        space = load_space(name, small_options(name))
        for which in ["random", *space.config["ops"]]:
            cases.append(pytest.param(name, which, id=f"{name}-{which}"))
    return cases


def arch_of(space, which: str) -> dict[str, str]:
    return space.random_arch(rng=3) if which == "random" else space.uniform_arch(which)


@pytest.fixture(scope="module")
def digits16():
    from nasfuse.data import build_loaders

    return build_loaders("digits", input_size=16, batch_size=32)


def perturbed(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """``model`` with every float parameter and BN statistic moved off its initial value,
    so that outputs agree only where the weights were really loaded."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            noise = torch.rand(tensor.shape, generator=generator)
            if name.endswith("running_var"):
                tensor.copy_(0.5 + noise)
            else:
                tensor.add_(0.1 * (noise - 0.5))
    return model.eval()


def write_trained_model(out: Path, name: str, which: str, bundle) -> tuple[Path, dict]:
    """The files ``nasfuse retrain`` writes, for a (perturbed, untrained) model."""
    from nasfuse.supernet import build_model
    from nasfuse.training.retraining import save_model_files

    space = load_space(name, small_options(name))
    arch = arch_of(space, which)
    model = perturbed(build_model(space, arch, bundle.num_classes, bundle.in_chans))
    save_model_files(out, model, arch, space, bundle, {"test_acc": 0.5})
    return out, arch


@pytest.mark.parametrize(("name", "which"), arch_cases())
def test_timm_round_trip_of_a_retrained_model(
    tmp_path: Path, name: str, which: str, digits16
) -> None:
    import timm
    from timm.data import resolve_data_config

    from nasfuse.training import load_model

    run, arch = write_trained_model(tmp_path, name, which, digits16)
    images = next(iter(digits16.test))[0][:8]
    # What `nasfuse eval` runs: load_model on model.pt.
    reference, _info = load_model(run / "model.pt")
    with torch.no_grad():
        expected = reference(images)

    # The steps: the arch file alone builds the 1-channel, 10-class network, and
    # the checkpoint's state dict loads into it strictly.
    with warnings.catch_warnings():
        warnings.simplefilter("error", OldArchFileWarning)  # a file with data facts is new
        net = timm.create_model(f"nasfuse_{name}", arch=run / "arch.yaml").eval()
    assert net.arch == arch and net.stem[0].in_channels == 1 and net.num_classes == 10
    net.load_state_dict(torch.load(run / "model.pt", weights_only=True)["model"])
    with torch.no_grad():
        torch.testing.assert_close(net(images), expected, rtol=0, atol=0)
        if which == "random":  # loading is what made them agree
            fresh = timm.create_model(f"nasfuse_{name}", arch=run / "arch.yaml").eval()
            assert not torch.allclose(fresh(images), expected)

    config = resolve_data_config({}, model=net)
    normalize = digits16.test.dataset.finish.transforms[-1]
    assert config["input_size"] == (1, 16, 16)
    assert config["mean"] == tuple(normalize.mean) and config["std"] == tuple(normalize.std)
    assert config["interpolation"] == "bilinear" and config["crop_pct"] == 1.0

    # Without pickle: the safetensors file, both ways timm offers.
    weights = str(run / "model.safetensors")
    ways = [{"pretrained": True, "pretrained_cfg_overlay": {"file": weights}}]
    if which == "random":
        ways.append({"checkpoint_path": weights})
    for way in ways:
        loaded = timm.create_model(f"nasfuse_{name}", arch=run / "arch.yaml", **way).eval()
        with torch.no_grad():
            torch.testing.assert_close(loaded(images), expected, rtol=0, atol=0)


def test_explicit_arguments_win_and_timm_adapts_the_head(tmp_path: Path, digits16) -> None:
    import timm

    run, _arch = write_trained_model(tmp_path, "resnet20", "random", digits16)
    net = timm.create_model(
        "nasfuse_resnet20",
        arch=run / "arch.yaml",
        num_classes=4,
        pretrained=True,
        pretrained_cfg_overlay={"file": str(run / "model.safetensors")},
    )
    assert net.num_classes == 4 and net.stem[0].in_channels == 1
    assert net.pretrained_cfg["num_classes"] == 10  # the cfg describes the weights
    assert (
        timm.create_model("nasfuse_resnet20", arch=run / "arch.yaml", in_chans=3)
        .stem[0]
        .in_channels
        == 3
    )
    with pytest.raises(ValueError, match="no pretrained weights of its own"):
        timm.create_model("nasfuse_resnet20", arch=run / "arch.yaml", pretrained=True)


def test_an_arch_file_without_data_warns_and_keeps_the_defaults(tmp_path: Path) -> None:
    import timm

    space = load_space("resnet20")
    save_arch(space.uniform_arch("add"), tmp_path / "old.yaml", space)  # as before data facts
    with pytest.warns(
        OldArchFileWarning, match=r"old\.yaml: this architecture file records no data"
    ):
        net = timm.create_model("nasfuse_resnet20", arch=tmp_path / "old.yaml")
    assert net.stem[0].in_channels == 3 and net.num_classes == 10
    assert "mean" not in net.pretrained_cfg
    with warnings.catch_warnings():
        warnings.simplefilter("error", OldArchFileWarning)  # no file, nothing to warn about
        timm.create_model("nasfuse_resnet20", arch="add")


def exported_case(tmp_path: Path, name: str, which: str, bundle) -> tuple[torch.nn.Module, tuple]:
    """A retrained model of the case, read back as ``nasfuse export-model`` reads it."""
    from nasfuse.training import load_model

    run, _arch = write_trained_model(tmp_path / "run", name, which, bundle)
    model, info = load_model(run / "model.pt")
    return model, (int(info["in_chans"]), int(info["input_size"]), int(info["input_size"]))


def onnx_logits(path: Path, images: torch.Tensor) -> torch.Tensor:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {session.get_inputs()[0].name: images.numpy()})
    return torch.from_numpy(logits)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "which"), arch_cases())
def test_onnx_export_runs_in_onnx_runtime_like_pytorch(
    tmp_path: Path, name: str, which: str, digits16
) -> None:
    """Every case through the legacy exporter (it failed on HRNet's adaptive pooling
    before the head pooled by fixed factors); one through the default, dynamo, as well
    (10 s or more per network here, most of it the exporter's start-up; legacy 0.2-4 s)."""
    from nasfuse.export import ONNX_OPSET, export_model

    model, shape = exported_case(tmp_path, name, which, digits16)
    images = next(iter(digits16.test))[0][:5]  # another batch size than export or check
    with torch.no_grad():
        expected = model(images)
    exporters = ["legacy", "dynamo"] if (name, which) == ("resnet20", "aff") else ["legacy"]
    for exporter in exporters:
        out = tmp_path / f"{exporter}.onnx"
        report = export_model(model, out, "onnx", shape, exporter=exporter)
        assert report["opset"] == ONNX_OPSET and report["max_abs_diff"] <= 1e-4
        torch.testing.assert_close(onnx_logits(out, images), expected, rtol=0, atol=1e-4)
        torch.testing.assert_close(onnx_logits(out, images[:1]), expected[:1], rtol=0, atol=1e-4)
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted(["run", *(f"{e}.onnx" for e in exporters)])  # no leftovers


def test_an_export_that_differs_from_pytorch_is_refused(
    tmp_path: Path, digits16, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import nasfuse.export
    from nasfuse.cli import main
    from nasfuse.export import ExportMismatchError, export_model

    model, shape = exported_case(tmp_path, "resnet20", "add", digits16)
    real = nasfuse.export.run_exported
    # An exporter or runtime that gets one logit 1e-3 wrong.
    monkeypatch.setattr(
        nasfuse.export,
        "run_exported",
        lambda path, fmt, images: real(path, fmt, images) + torch.tensor([1e-3] + [0.0] * 9),
    )
    out = tmp_path / "net.onnx"
    with pytest.raises(ExportMismatchError, match=r"differ from PyTorch's by up to 0\.001"):
        export_model(model, out, "onnx", shape, exporter="legacy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no file, no leftover
    # The same difference passes a looser tolerance, so the check is what refused.
    export_model(model, out, "onnx", shape, exporter="legacy", tolerance=2e-3)
    out.unlink()
    run = tmp_path / "run"
    command = ["export-model", str(run / "arch.yaml"), "--checkpoint", str(run / "model.pt")]
    assert main([*command, "--format", "torchscript", "--out", str(out.with_suffix(".pt"))]) == 2
    assert "differ from PyTorch's by up to 0.001" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


@pytest.mark.slow
def test_export_model_command_torchscript_and_exported_program(
    tmp_path: Path, digits16, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from nasfuse.cli import main
    from nasfuse.training import load_model

    run, _arch = write_trained_model(tmp_path / "run", "resnet20", "dwff", digits16)
    model, _info = load_model(run / "model.pt")
    images = next(iter(digits16.test))[0][:5]
    with torch.no_grad():
        expected = model(images)
    command = ["export-model", str(run / "arch.yaml"), "--checkpoint", str(run / "model.pt")]
    traced, program = tmp_path / "net.pt", tmp_path / "net.pt2"
    assert main([*command, "--format", "torchscript", "--out", str(traced), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["method"].startswith("trace") and report["input"] == [2, 1, 16, 16]
    assert main([*command, "--format", "exported-program", "--out", str(program)]) == 0
    assert "torch.export" in capsys.readouterr().out
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated
        torch.testing.assert_close(torch.jit.load(str(traced))(images), expected, rtol=0, atol=1e-5)
        loaded = torch.export.load(str(program)).module()
        torch.testing.assert_close(loaded(images), expected, rtol=0, atol=1e-5)
    assert main([*command, "--format", "exported-program", "--out", str(tmp_path / "x.onnx")]) == 2
    assert "writes .pt2 files" in capsys.readouterr().err


@pytest.mark.parametrize("side", [16, 15, 9])
def test_hrnet_head_pooling_equals_adaptive_pooling(side: int) -> None:
    from nasfuse.spaces._schema import halve
    from nasfuse.spaces.hrnet import pool_to

    x = torch.randn(2, 3, side, side)
    for factor in (2, 4):
        size = (halve(side, factor.bit_length() - 1),) * 2
        torch.testing.assert_close(
            pool_to(x, size, factor), torch.nn.functional.adaptive_avg_pool2d(x, size)
        )


@pytest.mark.slow
def test_retrain_then_timm_scores_like_nasfuse_eval(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The user's path: a search's arch file, `nasfuse retrain`, then timm with the
    safetensors weights scores the test split exactly as `nasfuse eval` does."""
    import json

    import timm

    from nasfuse.cli import main
    from nasfuse.data import build_loaders
    from nasfuse.training import evaluate

    space = load_space("resnet20", small_options("resnet20"))
    save_arch(space.random_arch(rng=5), tmp_path / "best.yaml", space)
    run = tmp_path / "rt"
    argv = ["retrain", str(tmp_path / "best.yaml"), "train_subset=128", "--epochs", "1"]
    assert (
        main([*argv, "--batch-size", "32", "--threads", "1", "--out", str(run), "--no-progress"])
        == 0
    )
    assert {"model.pt", "model.safetensors", "arch.yaml"} <= {p.name for p in run.iterdir()}
    capsys.readouterr()
    assert (
        main(["eval", str(run / "arch.yaml"), "--checkpoint", str(run / "model.pt"), "--json"]) == 0
    )
    scored = json.loads(capsys.readouterr().out)

    net = timm.create_model(
        "nasfuse_resnet20",
        arch=run / "arch.yaml",
        pretrained=True,
        pretrained_cfg_overlay={"file": str(run / "model.safetensors")},
    )
    bundle = build_loaders("digits", input_size=16, batch_size=128)
    assert evaluate(net, bundle.test) == scored["accuracy"]
    assert sum(p.numel() for p in net.parameters()) == scored["params"]


def test_export_model_refuses_a_checkpoint_of_another_architecture(
    tmp_path: Path, digits16, capsys: pytest.CaptureFixture[str]
) -> None:
    from nasfuse.cli import main

    run, _arch = write_trained_model(tmp_path / "run", "resnet20", "add", digits16)
    space = load_space("resnet20", small_options("resnet20"))
    save_arch(space.uniform_arch("concat"), tmp_path / "other.yaml", space)
    out = tmp_path / "net.onnx"
    argv = ["export-model", str(tmp_path / "other.yaml"), "--checkpoint", str(run / "model.pt")]
    assert main([*argv, "--format", "onnx", "--out", str(out)]) == 2
    assert "this model is of another architecture" in capsys.readouterr().err
    assert not out.exists()
