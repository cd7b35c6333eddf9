"""Supernet training: path samplers, BN recalibration, evaluation, checkpoints and exact resume."""

from __future__ import annotations

import copy
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from fixture_paths import TINY_HRNET
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nasfuse.config import load_config
from nasfuse.files import CheckpointError, load_checkpoint, save_checkpoint
from nasfuse.spaces import load_space
from nasfuse.supernet import Supernet
from nasfuse.training import (
    FairSampler,
    SupernetTrainConfig,
    SupernetTrainer,
    UniformSampler,
    batchnorm_layers,
    create_sampler,
    evaluate,
    evaluate_arch,
    load_supernet,
    preserved_bn_stats,
    recalibrate_bn,
    train_supernet,
)

STEPS_PER_EPOCH = 4  # train_subset 128 / batch 32


def tiny_config(**overrides: object) -> SupernetTrainConfig:
    settings = {
        "space": TINY_HRNET,
        "epochs": 2,
        "batch_size": 32,
        "train_subset": 128,
        "eval_archs": 1,
        "eval_calib_batches": 2,
        "progress": False,
        **overrides,
    }
    return load_config(SupernetTrainConfig, overrides=settings)


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny supernet trained for two epochs without interruption."""
    out = tmp_path_factory.mktemp("straight")
    train_supernet(tiny_config(), out)
    return out


def assert_same_checkpoints(a: dict, b: dict) -> None:
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for state_a, state_b in zip(
        a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True
    ):
        assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert a["extra"]["sampler"] == b["extra"]["sampler"]
    assert (a["epoch"], a["global_step"]) == (b["epoch"], b["global_step"])


# ------------------------------------------------------------------ samplers
def test_uniform_sampler_counts_and_continues_from_its_state() -> None:
    space = load_space("resnet20")
    sampler = UniformSampler(space, seed=4)
    for _ in range(10):
        sampler.next_arch()
    assert all(sum(counts.values()) == 10 for counts in sampler.counts.values())
    state = copy.deepcopy(sampler.state_dict())
    expected = [sampler.next_arch() for _ in range(5)]
    resumed = UniformSampler(space, seed=99)
    resumed.load_state_dict(state)
    assert [resumed.next_arch() for _ in range(5)] == expected
    assert resumed.counts == sampler.counts
    assert UniformSampler(space, seed=5).next_arch() != UniformSampler(space, seed=4).next_arch()


def test_fair_sampler_visits_every_op_once_per_block() -> None:
    space = load_space("hrnet_lite")  # sites with 7 and with 8 allowed ops
    lengths = {len(site.ops) for site in space.sites.values()}
    assert len(lengths) > 1
    sampler = create_sampler("fair", space, seed=0)
    steps = 3 * 7 * 8
    archs = [sampler.next_arch() for _ in range(steps)]
    for name, site in space.sites.items():
        n = len(site.ops)
        for start in range(0, steps - n + 1, n):
            block = [arch[name] for arch in archs[start : start + n]]
            assert sorted(block) == sorted(site.ops), (name, start)
        counts = sampler.counts[name].values()
        assert max(counts) - min(counts) <= 1


def test_fair_sampler_resumes_mid_block() -> None:
    space = load_space("resnet20")
    sampler = FairSampler(space, seed=1)
    for _ in range(3):
        sampler.next_arch()
    state = copy.deepcopy(sampler.state_dict())
    expected = [sampler.next_arch() for _ in range(9)]
    resumed = FairSampler(space, seed=1)
    resumed.load_state_dict(state)
    assert [resumed.next_arch() for _ in range(9)] == expected


def test_sampler_state_of_another_sampler_is_refused() -> None:
    space = load_space("resnet20")
    with pytest.raises(ValueError, match="'uniform' sampler, not 'fair'"):
        FairSampler(space).load_state_dict(UniformSampler(space).state_dict())
    with pytest.raises(ValueError, match="unknown sampler 'greedy'"):
        create_sampler("greedy", space)


# ------------------------------------------------------- BN recalibration
def _batches(count: int, size: int = 8, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randn(size, 1, 6, 6, generator=generator) * 2 + 1,
            torch.zeros(size, dtype=torch.long),
        )
        for _ in range(count)
    ]


def test_recalibrate_bn_averages_the_batch_statistics() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    model.eval()
    batches = _batches(4)
    recalibrate_bn(model, batches, batches=3)
    bn = model[1]
    with torch.no_grad():
        features = [model[0](x) for x, _ in batches[:3]]
    means = torch.stack([f.mean(dim=(0, 2, 3)) for f in features]).mean(0)
    variances = torch.stack([f.var(dim=(0, 2, 3), unbiased=True) for f in features]).mean(0)
    assert torch.allclose(bn.running_mean, means, atol=1e-5)
    assert torch.allclose(bn.running_var, variances, atol=1e-4)
    assert bn.momentum == 0.1 and not model.training
    assert int(bn.num_batches_tracked) == 3


def _last_shared_bn(supernet: Supernet) -> tuple[str, nn.BatchNorm2d]:
    named = [
        (name, module)
        for name, module in supernet.named_modules()
        if isinstance(module, nn.BatchNorm2d) and "candidates" not in name
    ]
    return named[-1]


def test_recalibration_gives_the_statistics_of_the_active_path() -> None:
    from nasfuse.data import build_loaders

    space = load_space(TINY_HRNET)
    bundle = build_loaders("digits", input_size=space.input_size, batch_size=16, train_subset=64)
    torch.manual_seed(0)
    supernet = Supernet(space, num_classes=10, in_chans=1)
    all_add = {name: "add" for name in space.sites}
    last_op = {name: site.ops[-1] for name, site in space.sites.items()}
    assert all_add != last_op
    name, bn = _last_shared_bn(supernet)

    supernet.set_arch(all_add)
    recalibrate_bn(supernet, bundle.calib, batches=3)
    stats_add = bn.running_mean.clone()
    # The statistics computed directly: the inputs that reach this BN on the active path.
    inputs: list[torch.Tensor] = []
    twin = copy.deepcopy(supernet).train()
    twin.get_submodule(name).register_forward_pre_hook(lambda m, args: inputs.append(args[0]))
    with torch.no_grad():
        for index, (images, _) in enumerate(bundle.calib):
            if index == 3:
                break
            twin(images)
    direct = torch.stack([x.mean(dim=(0, 2, 3)) for x in inputs]).mean(0)
    assert torch.allclose(stats_add, direct, atol=1e-5)

    supernet.set_arch(last_op)
    recalibrate_bn(supernet, bundle.calib, batches=3)
    assert not torch.allclose(bn.running_mean, stats_add, atol=1e-3)
    supernet.set_arch(all_add)
    recalibrate_bn(supernet, bundle.calib, batches=3)
    assert torch.allclose(bn.running_mean, stats_add)


def test_preserved_bn_stats_puts_them_back() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4))
    before = [t.clone() for t in model[1].state_dict().values()]
    with preserved_bn_stats(model):
        recalibrate_bn(model, _batches(2), batches=2)
        assert not torch.equal(model[1].running_mean, before[0])
    assert all(
        torch.equal(a, b) for a, b in zip(model[1].state_dict().values(), before, strict=True)
    )


# ------------------------------------------------------------- evaluation
class _ReadsTheLabel(nn.Module):
    """Predicts the class written in pixel (0, 0): a perfect classifier for the test data."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(x[:, 0, 0, 0].long(), 10).float() * self.scale


def test_evaluate_is_top1_accuracy() -> None:
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 0])
    images = torch.zeros(12, 1, 2, 2)
    images[:, 0, 0, 0] = labels.float()
    images[-2:, 0, 0, 0] = 5  # two wrong
    loader = DataLoader(TensorDataset(images, labels), batch_size=5)
    model = _ReadsTheLabel().train()
    assert evaluate(model, loader) == pytest.approx(10 / 12)
    assert model.training


def test_evaluate_refuses_non_finite_logits() -> None:
    images, labels = torch.zeros(4, 1, 2, 2), torch.zeros(4, dtype=torch.long)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    with torch.no_grad():
        model[1].bias.fill_(float("nan"))
    # argmax would say class 0 for every image: 100% here, 9.7% on digits.
    with pytest.raises(ValueError, match="logits are not finite"):
        evaluate(model, DataLoader(TensorDataset(images, labels), batch_size=2))


def test_evaluate_arch_sets_the_arch_and_recalibrates() -> None:
    from nasfuse.data import build_loaders

    space = load_space(TINY_HRNET)
    bundle = build_loaders("digits", input_size=space.input_size, batch_size=16, train_subset=64)
    supernet = Supernet(space, num_classes=10, in_chans=1)
    arch = {name: site.ops[-1] for name, site in space.sites.items()}
    layers = batchnorm_layers(supernet)
    before = [layer.running_mean.clone() for layer in layers]
    accuracy = evaluate_arch(supernet, arch, bundle, calib_batches=2, recalibrate=False)
    assert 0.0 <= accuracy <= 1.0 and supernet.arch == arch
    assert all(torch.equal(a, layer.running_mean) for a, layer in zip(before, layers, strict=True))
    evaluate_arch(supernet, arch, bundle, calib_batches=2)
    assert any(
        not torch.equal(a, layer.running_mean) for a, layer in zip(before, layers, strict=True)
    )


def test_finetune_takes_exactly_the_steps_and_learns() -> None:
    from nasfuse.training import finetune

    torch.manual_seed(0)
    images = torch.randn(40, 1, 2, 2)
    labels = (images[:, 0, 0, 0] > 0).long()
    loader = DataLoader(TensorDataset(images, labels), batch_size=8)  # 5 batches
    seen = []
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2)).eval()
    model.register_forward_hook(lambda module, args, out: seen.append(len(args[0])))
    loss = nn.CrossEntropyLoss()
    before = float(loss(model(images), labels).detach())
    seen.clear()
    finetune(model, loader, steps=12, lr=0.5)
    assert len(seen) == 12  # the loader restarted twice
    assert not model.training  # mode restored
    assert float(loss(model(images), labels).detach()) < before - 0.1
    with pytest.raises(ValueError, match="no batches"):
        finetune(model, DataLoader(TensorDataset(images[:0], labels[:0])), steps=1)


def test_evaluate_arch_finetunes_a_copy_and_repeats() -> None:
    from nasfuse.data import build_loaders

    space = load_space(TINY_HRNET)
    bundle = build_loaders("digits", input_size=space.input_size, batch_size=16, train_subset=64)
    torch.manual_seed(0)
    supernet = Supernet(space, num_classes=10, in_chans=1)
    arch = {name: site.ops[-1] for name, site in space.sites.items()}
    weights = {k: v.clone() for k, v in supernet.state_dict().items()}
    plain = evaluate_arch(supernet, arch, bundle, calib_batches=2)
    tuned = evaluate_arch(
        supernet, arch, bundle, calib_batches=2, finetune_steps=8, finetune_lr=0.1
    )
    again = evaluate_arch(
        supernet, arch, bundle, calib_batches=2, finetune_steps=8, finetune_lr=0.1
    )
    assert tuned == again  # same batches, same steps
    assert tuned != plain  # the copy was trained
    after = supernet.state_dict()
    assert all(
        torch.equal(weights[k], after[k]) for k in weights if "running" not in k and "num_batches" not in k
    )  # fmt: skip


def test_divergence_names_the_loss_or_the_parameter() -> None:
    from nasfuse.training._loop import divergence

    model = nn.Sequential(nn.Linear(2, 2))
    assert divergence(model, 2.3) is None
    assert "mean training loss is 7.8e+07" in divergence(model, 7.8e7)
    assert "mean training loss is nan" in divergence(model, float("nan"))
    with torch.no_grad():
        model[0].weight[0, 0] = 4e19
    assert "0.weight reached |w| = 4e+19" in divergence(model, 2.3)
    with torch.no_grad():
        model[0].weight[0, 0] = float("nan")
    assert divergence(model, 2.3) == "parameter 0.weight is not finite"


def test_a_diverged_epoch_is_not_saved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("nasfuse.training._loop.DIVERGED_WEIGHT", 1e-3)  # every net exceeds it
    with pytest.raises(RuntimeError, match=r"epoch 1/2: training diverged \(parameter .*lr=0.05"):
        train_supernet(tiny_config(eval_archs=0), tmp_path / "run")
    assert not (tmp_path / "run" / "supernet.pt").exists()


def test_a_supernet_with_nan_weights_is_refused(straight_run: Path, tmp_path: Path) -> None:
    checkpoint = load_checkpoint(straight_run / "supernet.pt", kind="supernet")
    name = next(k for k, v in checkpoint["model"].items() if v.is_floating_point() and v.ndim == 4)
    checkpoint["model"][name][0].fill_(float("nan"))
    save_checkpoint(checkpoint, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match=f"weight {re.escape(name)} is not finite"):
        load_supernet(tmp_path / "nan.pt")


# ------------------------------------------------------ training and resume
def test_supernet_checkpoint_holds_what_resume_needs(straight_run: Path) -> None:
    checkpoint = load_checkpoint(straight_run / "supernet.pt", kind="supernet")
    assert checkpoint["epoch"] == 2 and checkpoint["global_step"] == 2 * STEPS_PER_EPOCH
    for key in ("optimizer", "scheduler", "rng", "extra", "space_hash", "config"):
        assert key in checkpoint
    assert (checkpoint["num_classes"], checkpoint["in_chans"]) == (10, 1)
    assert checkpoint["space_hash"] == load_space(TINY_HRNET).hash
    counts = checkpoint["extra"]["sampler"]["counts"]
    assert all(sum(ops.values()) == 2 * STEPS_PER_EPOCH for ops in counts.values())
    assert (straight_run / "config.yaml").read_text().count("tiny_hrnet.yaml") == 1


def test_resume_after_a_crash_mid_epoch_is_exact(
    straight_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Killed(Exception):
        pass

    original = SupernetTrainer.before_step

    def dies_in_epoch_two(self: SupernetTrainer, step: int) -> None:
        if step == STEPS_PER_EPOCH + 2:
            raise Killed
        original(self, step)

    monkeypatch.setattr(SupernetTrainer, "before_step", dies_in_epoch_two)
    with pytest.raises(Killed):
        train_supernet(tiny_config(), tmp_path)
    assert load_checkpoint(tmp_path / "supernet.pt")["epoch"] == 1
    monkeypatch.setattr(SupernetTrainer, "before_step", original)
    train_supernet(tiny_config(), tmp_path, resume=True)
    assert_same_checkpoints(
        load_checkpoint(straight_run / "supernet.pt"), load_checkpoint(tmp_path / "supernet.pt")
    )


@pytest.mark.slow
def test_resume_after_sigkill_is_exact(tmp_path: Path) -> None:
    killed, straight = tmp_path / "killed", tmp_path / "straight"
    settings = {**tiny_config().__dict__, "epochs": 4}
    # The child sleeps in every step (which changes nothing it computes) so that it is
    # surely killed during its second epoch, right after its first checkpoint.
    script = textwrap.dedent(
        f"""
        import time
        import torch
        torch.set_num_threads(1)
        from nasfuse.config import load_config
        from nasfuse.training import SupernetTrainConfig, SupernetTrainer, train_supernet
        original = SupernetTrainer.before_step
        def slow_step(self, step):
            time.sleep(0.3)
            original(self, step)
        SupernetTrainer.before_step = slow_step
        train_supernet(load_config(SupernetTrainConfig, overrides={settings!r}), {str(killed)!r})
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script])
    checkpoint = killed / "supernet.pt"
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert load_checkpoint(checkpoint)["epoch"] == 1
    cfg = load_config(SupernetTrainConfig, overrides=settings)
    train_supernet(cfg, killed, resume=True)
    train_supernet(cfg, straight)
    assert_same_checkpoints(load_checkpoint(checkpoint), load_checkpoint(straight / "supernet.pt"))


def test_existing_run_is_not_overwritten(straight_run: Path) -> None:
    with pytest.raises(ValueError, match="pass --resume"):
        train_supernet(tiny_config(), straight_run)


def test_resume_with_another_config_is_refused(straight_run: Path, tmp_path: Path) -> None:
    import shutil

    shutil.copy(straight_run / "supernet.pt", tmp_path / "supernet.pt")
    with pytest.raises(ValueError, match=r"lr: 0.05 -> 0.1"):
        train_supernet(tiny_config(lr=0.1), tmp_path, resume=True)


def test_resume_accepts_the_run_only_fields_and_trains_nothing_more(
    straight_run: Path, tmp_path: Path
) -> None:
    """Issue 17: threads, progress, eval_every, where the data is and the few-shot split
    after the training may change on resume; the finished run stays as it was."""
    import shutil

    shutil.copy(straight_run / "supernet.pt", tmp_path / "supernet.pt")
    changed = tiny_config(
        threads=1,
        progress=True,
        eval_every=1,
        data_dir=str(tmp_path),
        download=True,
        few_shot_site="not used without few_shot_epochs",
    )
    train_supernet(changed, tmp_path, resume=True)
    assert_same_checkpoints(
        load_checkpoint(straight_run / "supernet.pt"), load_checkpoint(tmp_path / "supernet.pt")
    )


@pytest.mark.parametrize(
    ("change", "shown"),
    [
        ({"epochs": 3}, "epochs: 2 -> 3"),  # the cosine schedule's length: not an extension
        ({"sampler": "fair"}, "sampler: 'uniform' -> 'fair'"),
        ({"op_init": "paper"}, "op_init: 'sum' -> 'paper'"),
        ({"seed": 1}, "seed: 0 -> 1"),
    ],
)
def test_resume_refuses_a_result_field_naming_it_and_the_free_ones(
    straight_run: Path, tmp_path: Path, change: dict, shown: str
) -> None:
    import shutil

    shutil.copy(straight_run / "supernet.pt", tmp_path / "supernet.pt")
    with pytest.raises(ValueError, match="cannot resume") as refused:
        train_supernet(tiny_config(**change), tmp_path, resume=True)
    message = str(refused.value)
    assert shown in message and "use the run's config.yaml" in message
    assert "only these may change on resume: data_dir, download, eval_every, few_shot_epochs" in (
        message
    )


def test_fair_training_trains_every_op_equally(tmp_path: Path) -> None:
    train_supernet(tiny_config(epochs=1, sampler="fair", eval_archs=0), tmp_path)
    counts = load_checkpoint(tmp_path / "supernet.pt")["extra"]["sampler"]["counts"]
    for ops in counts.values():
        assert max(ops.values()) - min(ops.values()) <= 1


def test_scoring_the_fixed_archs_less_often_changes_nothing_but_the_curve(tmp_path: Path) -> None:
    every = tmp_path / "every"
    third = tmp_path / "third"
    train_supernet(tiny_config(epochs=3, eval_every=1), every)
    train_supernet(tiny_config(epochs=3, eval_every=3), third)
    a, b = load_checkpoint(every / "supernet.pt"), load_checkpoint(third / "supernet.pt")
    assert_same_checkpoints(a, b)
    scored = [[h["epoch"] for h in c["history"] if "val/acc_mean" in h] for c in (a, b)]
    assert scored == [[1, 2, 3], [3]]
    assert a["history"][-1]["val/acc_mean"] == b["history"][-1]["val/acc_mean"]


def test_eval_every_below_one_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="eval_every must be >= 1"):
        train_supernet(tiny_config(eval_every=0), tmp_path)


def test_tensorboard_has_the_scalar_tags(straight_run: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(straight_run / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for tag in ("train/loss", "train/acc", "train/lr"):
        assert tag in tags
        assert [event.step for event in events.Scalars(tag)] == [1, 2]
    # eval_every (5) is longer than the run: the fixed archs are scored after the last epoch.
    for tag in ("val/acc_mean", "val/acc_min"):
        assert [event.step for event in events.Scalars(tag)] == [2]
    space = load_space(TINY_HRNET)
    for name, site in space.sites.items():
        for op in site.ops:
            values = [event.value for event in events.Scalars(f"sampling/{name}/{op}")]
            assert len(values) == 2 and values[1] >= values[0]
    totals = Counter()
    site = next(iter(space.sites))
    for op in space.sites[site].ops:
        totals[op] = events.Scalars(f"sampling/{site}/{op}")[-1].value
    assert sum(totals.values()) == 2 * STEPS_PER_EPOCH


# --------------------------------------------------------- load_supernet
def test_load_supernet_gives_the_trained_weights(straight_run: Path) -> None:
    supernet = load_supernet(straight_run / "supernet.pt")
    saved = load_checkpoint(straight_run / "supernet.pt")["model"]
    assert all(torch.equal(value, saved[key]) for key, value in supernet.state_dict().items())
    assert supernet.space.hash == load_space(TINY_HRNET).hash and supernet.in_chans == 1


def test_load_supernet_refuses_bad_checkpoints(straight_run: Path, tmp_path: Path) -> None:
    good = (straight_run / "supernet.pt").read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="truncated.pt"):
        load_supernet(truncated)

    checkpoint = load_checkpoint(straight_run / "supernet.pt")
    edited = tmp_path / "edited.pt"
    save_checkpoint({**checkpoint, "space_hash": "0" * 16}, edited)
    with pytest.raises(CheckpointError, match="has changed"):
        load_supernet(edited)

    missing = tmp_path / "missing_weights.pt"
    weights = dict(checkpoint["model"])
    weights.pop(next(iter(weights)))
    save_checkpoint({**checkpoint, "model": weights}, missing)
    with pytest.raises(CheckpointError, match="weights do not fit"):
        load_supernet(missing)

    other_kind = tmp_path / "model.pt"
    save_checkpoint({**checkpoint, "kind": "model"}, other_kind)
    with pytest.raises(CheckpointError, match="expected a 'supernet' checkpoint"):
        load_supernet(other_kind)


# -------------------------------------------------------------------- CLI
def test_cli_train_supernet_and_refusal(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from nasfuse.cli import main

    out = tmp_path / "run"
    argv = [
        "train-supernet",
        "--space",
        TINY_HRNET,
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--out",
        str(out),
        "--sampler",
        "fair",
        "--no-progress",
        "--train-subset",
        "64",
        "eval_archs=0",
    ]
    assert main(argv) == 0
    checkpoint = load_checkpoint(out / "supernet.pt", kind="supernet")
    assert checkpoint["config"]["sampler"] == "fair" and checkpoint["config"]["train_subset"] == 64
    assert checkpoint["global_step"] == 2  # 64 images, batch 32: the subset was trained on
    assert main(argv) == 2
    assert "pass --resume" in capsys.readouterr().err
    # --resume with only --out reads the run's config.yaml and finds nothing left to do.
    assert main(["train-supernet", "--out", str(out), "--resume", "--no-progress"]) == 0
