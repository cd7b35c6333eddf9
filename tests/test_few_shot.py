"""Few-shot sub-supernets: fixed-site sampling, inherited weights, reuse and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from fixture_paths import TINY_HRNET, TINY_RESNET

from nasfuse.config import load_config
from nasfuse.files import CheckpointError, load_checkpoint
from nasfuse.spaces import load_space
from nasfuse.training import (
    FewShotSupernets,
    SupernetTrainConfig,
    create_sampler,
    train_few_shot,
    train_supernet,
)


def _config(space: str = TINY_HRNET, **overrides: object) -> SupernetTrainConfig:
    settings = {
        "space": space,
        "epochs": 1,
        "batch_size": 32,
        "train_subset": 64,
        "eval_archs": 0,
        "warmup_epochs": 0,
        "progress": False,
        "threads": 1,
        **overrides,
    }
    return load_config(SupernetTrainConfig, overrides=settings)


@pytest.fixture(scope="module")
def one_shot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("one_shot")
    return train_supernet(_config(), out)


@pytest.mark.parametrize("name", ["uniform", "fair"])
def test_samplers_hold_fixed_sites_and_sample_the_rest(name: str) -> None:
    space = load_space(TINY_HRNET)
    first, *others = list(space.sites)
    sampler = create_sampler(name, space, seed=0, fixed={first: "add"})
    draws = [sampler.next_arch() for _ in range(40)]
    assert {arch[first] for arch in draws} == {"add"}
    assert sampler.counts[first] == {"add": 40}
    assert any(len({arch[site] for arch in draws}) > 1 for site in others)
    with pytest.raises(ValueError, match="not a site"):
        create_sampler(name, space, fixed={"nowhere": "add"})
    with pytest.raises(ValueError, match="'pmfs' is not allowed"):
        create_sampler(name, space, fixed={first: "pmfs"})


def test_sub_supernets_inherit_and_train_only_with_their_op(one_shot: Path) -> None:
    split = train_few_shot(one_shot, epochs=1)
    space = load_space(TINY_HRNET)
    site = list(space.sites)[-1]
    assert split.site == site and list(split.supernets) == list(space.sites[site].ops)
    base = load_checkpoint(one_shot, kind="supernet")["model"]
    compared = 0
    for op, supernet in split.supernets.items():
        checkpoint = load_checkpoint(one_shot.parent / "few_shot" / op / "supernet.pt")
        assert checkpoint["config"]["fixed_sites"] == {site: op}
        assert checkpoint["config"]["init_from"] == str(one_shot.resolve())
        assert checkpoint["extra"]["sampler"]["counts"][site] == {op: checkpoint["global_step"]}
        state = supernet.state_dict()
        path = next(n for n, m in supernet.named_modules() if m is supernet.choices[site])
        prefix = f"{path}.candidates."
        for key, value in state.items():
            if key.startswith(prefix) and not key.startswith(prefix + op + "."):
                # The split site's other ops never ran: they keep the one-shot weights.
                assert torch.equal(value, base[key]), key
                compared += 1
        trained = [k for k in state if k.startswith("net.") and state[k].is_floating_point()]
        assert any(not torch.equal(state[k], base[k]) for k in trained)  # it did train
    assert compared > 0  # concat's weights in the add sub-supernet, at least
    arch = {name: space.sites[name].ops[0] for name in space.sites}
    for op in split.supernets:
        assert split.for_arch({**arch, site: op}) is split.supernets[op]
    manifest = json.loads((one_shot.parent / "few_shot" / "few_shot.json").read_text())
    assert manifest["cost_ratio"] > 0 and set(manifest["wall_time_s"]) == set(split.supernets)


def test_a_finished_split_is_reused_and_another_is_refused(one_shot: Path) -> None:
    train_few_shot(one_shot, epochs=1)
    files = sorted((one_shot.parent / "few_shot").glob("*/supernet.pt"))
    stamps = [path.stat().st_mtime_ns for path in files]
    again = train_few_shot(one_shot, epochs=1)
    assert [path.stat().st_mtime_ns for path in files] == stamps
    assert isinstance(again, FewShotSupernets)
    with pytest.raises(CheckpointError, match="holds a few-shot split"):
        train_few_shot(one_shot, epochs=2)
    with pytest.raises(ValueError, match="not a site"):
        train_few_shot(one_shot, epochs=1, site="nowhere", out_dir=one_shot.parent / "other")


def test_init_from_another_space_is_refused(one_shot: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="the init_from supernet is for space"):
        train_supernet(_config(TINY_RESNET, init_from=str(one_shot)), tmp_path / "run")
