"""Retraining an arch file, its outputs, resume, supernet init, and ``nasfuse eval``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from fixture_paths import TINY_HRNET, TINY_RESNET

from nasfuse.arch import save_arch
from nasfuse.cli import main
from nasfuse.config import load_config
from nasfuse.data import build_loaders
from nasfuse.files import CheckpointError, load_checkpoint
from nasfuse.spaces import load_space
from nasfuse.training import (
    RetrainConfig,
    Retrainer,
    SupernetTrainConfig,
    evaluate,
    load_model,
    load_supernet,
    retrain,
    train_supernet,
)


def tiny_retrain_config(**overrides: object) -> RetrainConfig:
    settings = {"epochs": 2, "batch_size": 32, "train_subset": 128, "progress": False}
    return load_config(RetrainConfig, overrides={**settings, **overrides})


@pytest.fixture(scope="module")
def arch_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("archs")
    space = load_space(TINY_RESNET)
    paths = {}
    for op in ("add", "concat"):
        paths[op] = folder / f"{op}.yaml"
        save_arch(space.uniform_arch(op), paths[op], space)
    hrnet = load_space(TINY_HRNET)
    paths["hrnet"] = folder / "hrnet.yaml"
    save_arch(hrnet.uniform_arch("add"), paths["hrnet"], hrnet)
    return paths


@pytest.fixture(scope="module")
def retrained(arch_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("retrained")
    retrain(arch_files["add"], tiny_retrain_config(), out)
    return out


@pytest.fixture(scope="module")
def tiny_supernet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("supernet")
    cfg = load_config(
        SupernetTrainConfig,
        overrides={
            "space": TINY_RESNET,
            "epochs": 1,
            "batch_size": 32,
            "train_subset": 64,
            "eval_archs": 0,
            "progress": False,
        },
    )
    return train_supernet(cfg, out)


def test_retrain_writes_model_metrics_config_and_curves(retrained: Path) -> None:
    metrics = json.loads((retrained / "metrics.json").read_text())
    for key in ("test_acc", "val_acc", "params", "flops", "epochs", "wall_time_s"):
        assert key in metrics
    assert metrics["epochs"] == 2 and 0.0 <= metrics["test_acc"] <= 1.0
    assert metrics["params"] > 0 and metrics["flops"] > 0
    checkpoint = load_checkpoint(retrained / "model.pt", kind="model")
    assert checkpoint["arch"] == load_space(TINY_RESNET).uniform_arch("add")
    assert checkpoint["space_hash"] == load_space(TINY_RESNET).hash
    assert "epochs: 2" in (retrained / "config.yaml").read_text()

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(retrained / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/acc", "train/lr", "val/acc", "test/acc"} <= tags
    assert events.Scalars("test/acc")[-1].value == pytest.approx(metrics["test_acc"])


def test_validating_every_third_epoch_trains_the_same_network(
    arch_files: dict[str, Path], tmp_path: Path
) -> None:
    every, third = tmp_path / "every", tmp_path / "third"
    retrain(arch_files["concat"], tiny_retrain_config(epochs=3), every)
    retrain(arch_files["concat"], tiny_retrain_config(epochs=3, eval_every=3), third)
    a, b = (load_checkpoint(d / "checkpoint.pt", kind="retrain_state") for d in (every, third))
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    scored = [[h["epoch"] for h in c["history"] if "val/acc" in h] for c in (a, b)]
    assert scored == [[1, 2, 3], [3]]
    test_acc = [json.loads((d / "metrics.json").read_text())["test_acc"] for d in (every, third)]
    assert test_acc[0] == test_acc[1]


def test_eval_every_below_one_is_refused(arch_files: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="eval_every must be >= 1"):
        retrain(arch_files["add"], tiny_retrain_config(eval_every=0), tmp_path)


def test_load_model_gives_the_scored_network(retrained: Path) -> None:
    model, info = load_model(retrained / "model.pt")
    bundle = build_loaders("digits", input_size=16, batch_size=64)
    assert evaluate(model, bundle.test) == pytest.approx(info["metrics"]["test_acc"])
    assert model.arch == info["arch"] and not model.training


def test_retrain_resumes_exactly_after_a_crash(
    arch_files: dict[str, Path], retrained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Killed(Exception):
        pass

    def dies(self: Retrainer, step: int) -> None:
        if step == 5:  # in the second epoch (4 steps per epoch)
            raise Killed

    monkeypatch.setattr(Retrainer, "before_step", dies)
    with pytest.raises(Killed):
        retrain(arch_files["add"], tiny_retrain_config(), tmp_path)
    monkeypatch.undo()
    assert not (tmp_path / "model.pt").exists()
    retrain(arch_files["add"], tiny_retrain_config(), tmp_path, resume=True)
    resumed = load_checkpoint(tmp_path / "model.pt")["model"]
    straight = load_checkpoint(retrained / "model.pt")["model"]
    assert all(torch.equal(resumed[key], straight[key]) for key in straight)


def test_retrain_resume_accepts_run_only_fields_and_refuses_others(
    arch_files: dict[str, Path], retrained: Path, tmp_path: Path
) -> None:
    """Issue 17: the retraining's checkpoint resumes with other threads, progress,
    eval_every or data location, and refuses another seed or learning rate."""
    import shutil

    shutil.copy(retrained / "checkpoint.pt", tmp_path / "checkpoint.pt")
    changed = tiny_retrain_config(threads=1, progress=True, eval_every=2, data_dir=str(tmp_path))
    metrics = retrain(arch_files["add"], changed, tmp_path, resume=True)
    assert metrics["epochs"] == 2
    resumed = load_checkpoint(tmp_path / "model.pt")["model"]
    straight = load_checkpoint(retrained / "model.pt")["model"]
    assert all(torch.equal(resumed[key], straight[key]) for key in straight)
    for change, shown in (({"seed": 1}, "seed: 0 -> 1"), ({"lr": 0.1}, "lr: 0.05 -> 0.1")):
        other = tmp_path / f"other-{next(iter(change))}"
        other.mkdir()
        shutil.copy(retrained / "checkpoint.pt", other / "checkpoint.pt")
        with pytest.raises(ValueError, match="cannot resume") as refused:
            retrain(arch_files["add"], tiny_retrain_config(**change), other, resume=True)
        assert shown in str(refused.value)
        assert "only these may change on resume: data_dir, download, eval_every, num_workers" in (
            str(refused.value)
        )


def test_init_from_supernet_copies_its_weights(
    arch_files: dict[str, Path], tiny_supernet: Path, tmp_path: Path
) -> None:
    cfg = tiny_retrain_config(init="supernet", supernet=str(tiny_supernet))
    trainer = Retrainer(arch_files["concat"], cfg, tmp_path)
    supernet = load_supernet(tiny_supernet)
    expected = supernet.extract(load_space(TINY_RESNET).uniform_arch("concat")).state_dict()
    state = trainer.net.state_dict()
    assert all(torch.equal(state[key], expected[key]) for key in expected)
    fresh = Retrainer(arch_files["concat"], tiny_retrain_config(), tmp_path / "fresh").net
    assert any(not torch.equal(fresh.state_dict()[k], expected[k]) for k in expected)


def test_init_from_supernet_refusals(
    arch_files: dict[str, Path], tiny_supernet: Path, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="--supernet CKPT"):
        Retrainer(arch_files["add"], tiny_retrain_config(init="supernet"), tmp_path)
    cfg = tiny_retrain_config(init="supernet", supernet=str(tiny_supernet))
    with pytest.raises(ValueError, match="this supernet is for space 'tiny_resnet'"):
        Retrainer(arch_files["hrnet"], cfg, tmp_path)


def test_load_model_refuses_corrupted_and_mismatched(
    retrained: Path, arch_files: dict[str, Path], tmp_path: Path
) -> None:
    corrupted = tmp_path / "model.pt"
    corrupted.write_bytes((retrained / "model.pt").read_bytes()[:200])
    with pytest.raises(CheckpointError, match=str(corrupted)):
        load_model(corrupted)
    space = load_space(TINY_RESNET)
    with pytest.raises(CheckpointError, match="another architecture"):
        load_model(retrained / "model.pt", arch=space.uniform_arch("concat"), space=space)
    with pytest.raises(CheckpointError, match="not 'tiny_hrnet'"):
        load_model(retrained / "model.pt", space=load_space(TINY_HRNET))
    with pytest.raises(CheckpointError, match="expected a 'model' checkpoint"):
        load_model(retrained / "checkpoint.pt")


def test_cli_eval_prints_accuracy_params_flops(
    retrained: Path, arch_files: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    assert main(["eval", str(arch_files["add"]), "--checkpoint", str(retrained / "model.pt")]) == 0
    out = capsys.readouterr().out
    metrics = json.loads((retrained / "metrics.json").read_text())
    assert f"test accuracy: {metrics['test_acc']:.4f}" in out
    assert f"params: {metrics['params']:,}" in out and "FLOPs:" in out

    argv = ["eval", str(arch_files["concat"]), "--checkpoint", str(retrained / "model.pt")]
    assert main(argv) == 2
    assert "another architecture" in capsys.readouterr().err


def test_cli_eval_with_supernet_weights(
    tiny_supernet: Path, arch_files: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    argv = ["eval", str(arch_files["add"]), "--checkpoint", str(tiny_supernet), "--json"]
    assert main([*argv, "--calib-batches", "2"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["kind"] == "supernet" and 0.0 <= result["accuracy"] <= 1.0
    assert main(["eval", str(arch_files["hrnet"]), "--checkpoint", str(tiny_supernet)]) == 2
    assert "this supernet is for space 'tiny_resnet'" in capsys.readouterr().err


def test_cli_retrain(
    arch_files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    # key=value overrides follow ARCH directly (argparse reads positionals in one run).
    argv = ["retrain", str(arch_files["add"]), "train_subset=64", "--epochs", "1"]
    argv += ["--batch-size", "32", "--lr", "0.1", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    assert "test accuracy" in capsys.readouterr().out
    saved = load_checkpoint(out / "model.pt", kind="model")
    assert saved["config"]["lr"] == 0.1 and saved["config"]["train_subset"] == 64
