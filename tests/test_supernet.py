"""The supernet, standalone models and their cost, over every space (tiny ones for the details)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from torch import nn

from nasfuse.ops import list_ops
from nasfuse.profile import count_params
from nasfuse.spaces import SearchSpace, SpaceError, list_spaces, load_space
from nasfuse.supernet import SiteChoice, Supernet, arch_cost, build_model

FIXTURES = Path(__file__).parent / "fixtures"
TINY_HRNET = FIXTURES / "tiny_hrnet.yaml"
TINY_RESNET = FIXTURES / "tiny_resnet.yaml"
ALL_SPACES = [*list_spaces(), str(TINY_HRNET), str(TINY_RESNET)]


def images(space: SearchSpace, batch: int = 2, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    size = space.input_size
    return torch.randn(batch, space.in_chans, size, size, generator=generator)


def settle_batchnorm(model: nn.Module, space: SearchSpace) -> None:
    """Two train-mode passes so every BN on the path has non-default running statistics."""
    model.train()
    with torch.no_grad():
        for seed in (1, 2):
            model(images(space, seed=seed))
    model.eval()


@pytest.fixture(scope="module", params=ALL_SPACES, ids=lambda name: Path(name).stem)
def supernet(request: pytest.FixtureRequest) -> Supernet:
    torch.manual_seed(0)
    return Supernet(load_space(request.param), num_classes=10)


def test_random_arch_trains_at_the_default_input_size(supernet: Supernet) -> None:
    space = supernet.space
    arch = supernet.sample_arch(rng=3)
    model = build_model(space, arch, num_classes=10).train()
    logits = model(images(space))
    assert logits.shape == (2, 10)
    logits.logsumexp(dim=1).mean().backward()
    assert torch.isfinite(logits).all()
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"
    assert model.arch == arch and model.space is space


def test_supernet_and_extracted_model_agree_in_eval_mode(supernet: Supernet) -> None:
    space = supernet.space
    for seed in (0, 1):
        arch = supernet.sample_arch(rng=seed)
        supernet.set_arch(arch)
        settle_batchnorm(supernet, space)
        model = supernet.extract()
        assert model.arch == arch and not model.training
        assert not any(isinstance(m, SiteChoice) for m in model.modules())
        x = images(space, seed=5)
        with torch.no_grad():
            torch.testing.assert_close(supernet(x), model(x), atol=1e-5, rtol=1e-5)


def test_supernet_with_an_arch_equals_build_model_with_the_same_weights(supernet: Supernet) -> None:
    space = supernet.space
    arch = supernet.sample_arch(rng=7)
    model = build_model(space, arch)
    settle_batchnorm(model, space)
    # Load the standalone model's weights into the supernet: a site's op state goes to the
    # same op among that site's candidates.
    state = {}
    for key, value in model.state_dict().items():
        for site, path in model.site_paths.items():
            if key.startswith(path + "."):
                key = f"{path}.candidates.{arch[site]}.{key[len(path) + 1 :]}"
                break
        state[key] = value
    result = supernet.net.load_state_dict(state, strict=False)
    assert not result.unexpected_keys
    assert all(".candidates." in key for key in result.missing_keys)
    supernet.set_arch(arch)
    supernet.eval()
    x = images(space, seed=6)
    with torch.no_grad():
        torch.testing.assert_close(supernet(x), model(x), atol=1e-5, rtol=1e-5)


def test_forward_runs_only_the_active_op_at_each_site() -> None:
    supernet = Supernet(load_space(TINY_HRNET))
    arch = supernet.sample_arch(rng=1)
    supernet.set_arch(arch)
    calls: dict[tuple[str, str], int] = {}
    for site, choice in supernet.choices.items():
        for op, module in choice.candidates.items():
            module.register_forward_hook(
                lambda *_, key=(site, op): calls.__setitem__(key, calls.get(key, 0) + 1)
            )
    supernet.train()
    supernet(images(supernet.space)).sum().backward()
    assert calls == {(site, op): 1 for site, op in arch.items()}
    for site, choice in supernet.choices.items():
        for op, module in choice.candidates.items():
            for param in module.parameters():
                assert (param.grad is not None) == (op == arch[site]), (site, op)


def test_set_arch_and_sample_arch() -> None:
    supernet = Supernet(load_space(TINY_HRNET))
    space = supernet.space
    assert supernet.arch == {name: site.ops[0] for name, site in space.sites.items()}
    first = supernet.sample_arch(rng=11)
    assert first == supernet.sample_arch(rng=random.Random(11))
    assert supernet.arch == {name: site.ops[0] for name, site in space.sites.items()}
    draws = [supernet.sample_arch(rng=seed) for seed in range(40)]
    assert len({tuple(d.values()) for d in draws}) > 10
    for draw in draws:
        assert space.validate_arch(draw) == draw
    counts = [
        sum(d[name] == "concat" for d in draws)
        for name, s in space.sites.items()
        if len(s.ops) == 2
    ]
    assert all(5 <= count <= 35 for count in counts), counts
    random.seed(5)
    a = supernet.sample_arch()
    random.seed(5)
    assert supernet.sample_arch() == a
    with pytest.raises(SpaceError, match="not allowed at site 'stage2.module0.branch0.block0'"):
        supernet.set_arch({**first, "stage2.module0.branch0.block0": "concat"})
    with pytest.raises(SpaceError, match="missing site"):
        supernet.set_arch({})


def test_extract_keeps_the_supernet_arch_and_copies_weights() -> None:
    supernet = Supernet(load_space(TINY_RESNET))
    active = supernet.sample_arch(rng=2)
    supernet.set_arch(active)
    other = {name: "concat" for name in supernet.space.sites}
    model = supernet.extract(other)
    assert model.arch == other and supernet.arch == active
    assert model.training
    site_path = model.site_paths["layer2.1"]
    torch.testing.assert_close(
        model.get_submodule(site_path).proj.weight,
        supernet.choices["layer2.1"].candidates["concat"].proj.weight,
    )
    model.get_submodule(site_path).proj.weight.data.zero_()
    assert supernet.choices["layer2.1"].candidates["concat"].proj.weight.abs().sum() > 0


def test_model_api_features_and_classifier() -> None:
    space = load_space(TINY_HRNET)
    model = build_model(space, space.uniform_arch("add"), num_classes=7).eval()
    x = images(space)
    features = model.forward_features(x)
    assert features.shape == (2, model.num_features, 4, 4)
    assert model(x).shape == (2, 7)
    assert model.get_classifier().out_features == 7
    model.reset_classifier(3)
    assert model(x).shape == (2, 3) and model.num_classes == 3
    model.reset_classifier(0)
    assert model(x).shape == (2, model.num_features)
    supernet = Supernet(space, num_classes=4, in_chans=1)
    assert supernet(torch.randn(2, 1, 16, 16)).shape == (2, 4)
    supernet.reset_classifier(6)
    assert supernet.extract()(torch.randn(2, 1, 16, 16)).shape == (2, 6)


def test_arch_cost_counts_the_model() -> None:
    space = load_space(TINY_RESNET)
    add = space.uniform_arch("add")
    concat = space.uniform_arch("concat")
    params_add, flops_add = arch_cost(space, add)
    params_concat, flops_concat = arch_cost(space, concat)
    assert params_add == count_params(build_model(space, add))
    # concat adds a 2C -> C projection and a BN per site.
    extra = sum(2 * s.channels * s.channels + 2 * s.channels for s in space.sites.values())
    assert params_concat - params_add == extra
    extra_flops = sum(2 * 2 * s.channels**2 * s.height * s.width for s in space.sites.values())
    assert flops_concat - flops_add == extra_flops
    assert arch_cost(space, add, input_size=32)[1] > 3 * flops_add


@pytest.mark.parametrize("op", list_ops())
def test_every_registered_op_trains_and_extracts_in_a_tiny_hrnet(op: str) -> None:
    # A new op is covered the moment it is registered: tiny_hrnet with every registered op.
    space = load_space(TINY_HRNET, {"ops": list_ops(), "restrict": {"cmgm": {"max_hw": 64}}})
    supernet = Supernet(space)
    arch = {name: op if op in site.ops else "add" for name, site in space.sites.items()}
    assert op in arch.values()
    supernet.set_arch(arch)
    supernet.train()
    supernet(images(space)).logsumexp(dim=1).mean().backward()
    for name, choice in supernet.choices.items():
        for param in choice.candidates[arch[name]].parameters():
            assert param.grad is not None and torch.isfinite(param.grad).all(), (name, op)
    settle_batchnorm(supernet, space)
    model = supernet.extract()
    x = images(space, seed=9)
    with torch.no_grad():
        torch.testing.assert_close(supernet(x), model(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", list_spaces())
def test_timm_builds_every_shipped_space(name: str) -> None:
    import timm

    import nasfuse  # noqa: F401  (registers the models)

    model = timm.create_model(f"nasfuse_{name}", num_classes=3)
    space = load_space(name)
    assert model.arch == space.uniform_arch("add")
    assert model.get_classifier().out_features == 3
    assert model.pretrained_cfg["input_size"] == (3, space.input_size, space.input_size)


def test_timm_model_from_an_arch_file_a_mapping_or_an_op(tmp_path: Path) -> None:
    import timm

    from nasfuse.arch import save_arch

    space = load_space("resnet20")
    arch = space.random_arch(rng=8)
    save_arch(arch, tmp_path / "arch.yaml", space)
    model = timm.create_model("nasfuse_resnet20", arch=str(tmp_path / "arch.yaml"), num_classes=10)
    assert model.arch == arch
    x = torch.randn(2, 3, 32, 32)
    assert model(x).shape == (2, 10)
    assert model.forward_features(x).shape == (2, 64, 8, 8)
    model.reset_classifier(4)
    assert model(x).shape == (2, 4)
    assert timm.create_model("nasfuse_resnet20", arch=arch).arch == arch
    half = timm.create_model("nasfuse_resnet20", arch="aff", space_options={"width_mult": 0.5})
    assert set(half.arch.values()) == {"aff"} and half.num_features == 32
    with pytest.raises(SpaceError, match="of space 'resnet20' cannot build nasfuse_resnet18"):
        timm.create_model("nasfuse_resnet18", arch=tmp_path / "arch.yaml")
    with pytest.raises(ValueError, match="no pretrained weights"):
        timm.create_model("nasfuse_resnet20", pretrained=True)
    with pytest.raises(ValueError, match="does not take drop_rate"):
        timm.create_model("nasfuse_resnet20", drop_rate=0.2)
    with pytest.raises(FileNotFoundError, match="neither an architecture file nor an op"):
        timm.create_model("nasfuse_resnet20", arch=str(tmp_path / "missing.yaml"))
