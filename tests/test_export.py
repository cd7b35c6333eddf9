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
