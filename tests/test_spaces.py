"""Search spaces: loading, site shapes, op rules, overrides and every refusal."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nasfuse.arch import arch_hash
from nasfuse.files import CheckpointError
from nasfuse.ops import list_ops
from nasfuse.spaces import (
    Family,
    FusionNet,
    SearchSpace,
    Site,
    SpaceError,
    SpaceMismatchError,
    get_family,
    list_families,
    list_spaces,
    load_recorded_space,
    load_space,
    register_family,
    registered_at,
    unregister_family,
)
from nasfuse.spaces._net import conv_bn
from nasfuse.spaces._schema import Where, get_int, get_list
from nasfuse.supernet import Supernet, build_model

FIXTURES = Path(__file__).parent / "fixtures"
TINY_HRNET = FIXTURES / "tiny_hrnet.yaml"
TINY_RESNET = FIXTURES / "tiny_resnet.yaml"
ALL_SPACES = [*list_spaces(), str(TINY_HRNET), str(TINY_RESNET)]


def space_id(name: str) -> str:
    return Path(name).stem


def test_shipped_spaces_are_listed() -> None:
    assert {"hrnet_lite", "resnet20", "resnet18"} <= set(list_spaces())


@pytest.mark.parametrize("name", ALL_SPACES, ids=space_id)
def test_space_loads_with_valid_sites(name: str) -> None:
    space = load_space(name)
    registered = list_ops()
    assert space.sites, "a space without sites"
    for site_name, site in space.sites.items():
        assert site.name == site_name
        assert site.channels > 0 and site.height > 0 and site.width > 0
        assert site.num_inputs >= 2
        assert site.ops and set(site.ops) <= set(space.config["ops"]) <= set(registered)
        rule = space.config["restrict"].get("cmgm", {})
        if "cmgm" in site.ops and "max_hw" in rule:
            assert site.height * site.width <= rule["max_hw"]
    assert space.size() == math.prod(len(site.ops) for site in space.sites.values())
    assert len(space.hash) == 16 and int(space.hash, 16) >= 0


def assert_site_shapes_match_forward(space: SearchSpace) -> None:
    """Every site's module sees K inputs, and returns one output, of the site's shape."""
    model = build_model(space, space.uniform_arch("add")).eval()
    seen: dict[str, list[tuple[int, ...]]] = {}
    for site_name, module in model.fusion_modules().items():
        module.register_forward_hook(
            lambda mod, args, out, site_name=site_name: seen.__setitem__(
                site_name, [tuple(x.shape) for x in args[0]] + [tuple(out.shape)]
            )
        )
    with torch.no_grad():
        model(torch.randn(1, space.in_chans, space.input_size, space.input_size))
    assert list(seen) == list(space.sites), "sites not visited once each, in order"
    for site_name, site in space.sites.items():
        expected = (1, site.channels, site.height, site.width)
        assert seen[site_name] == [expected] * (site.num_inputs + 1), site_name


@pytest.mark.parametrize("name", ALL_SPACES, ids=space_id)
def test_site_shapes_match_the_tensors_seen_in_forward(name: str) -> None:
    assert_site_shapes_match_forward(load_space(name))


def test_site_shapes_match_with_overrides_and_odd_sizes() -> None:
    assert_site_shapes_match_forward(
        load_space("hrnet_lite", {"input_size": 224, "stem_stride": 4, "width_mult": 0.25})
    )
    assert_site_shapes_match_forward(load_space(TINY_HRNET, {"input_size": 13}))
    assert_site_shapes_match_forward(load_space(TINY_RESNET, {"input_size": 15, "stem_stride": 2}))


def test_shipped_space_shapes() -> None:
    hrnet = load_space("hrnet_lite")
    assert len(hrnet.sites) == 2 * (2 * 2 + 2) + 4 * (3 * 2 + 3) + 2 * (4 * 2 + 4) == 72
    site = hrnet.sites["stage3.module1.fuse.branch2"]
    assert (site.channels, site.num_inputs, site.height, site.width) == (160, 3, 8, 8)
    block = hrnet.sites["stage4.module1.branch3.block1"]
    assert (block.channels, block.num_inputs, block.height) == (320, 2, 4)
    assert len(load_space("resnet20").sites) == 9
    resnet18 = load_space("resnet18")
    assert list(resnet18.sites)[0] == "layer1.0" and len(resnet18.sites) == 8
    assert (resnet18.sites["layer4.1"].channels, resnet18.sites["layer4.1"].height) == (512, 7)


def test_hrnet_lite_at_224_with_stem_stride_4() -> None:
    space = load_space("hrnet_lite", {"input_size": 224, "stem_stride": 4})
    sizes = [space.sites[f"stage4.module0.fuse.branch{b}"].height for b in range(4)]
    assert sizes == [56, 28, 14, 7]
    cmgm_sites = [name for name, site in space.sites.items() if "cmgm" in site.ops]
    assert cmgm_sites and all(space.sites[n].height <= 14 for n in cmgm_sites)


def test_op_rules_restrict_ops_by_size() -> None:
    space = load_space(TINY_HRNET)
    for site in space.sites.values():
        assert ("concat" in site.ops) == (site.height * site.width <= 64)
        assert "add" in site.ops


def test_site_pattern_rule(tmp_path: Path) -> None:
    text = TINY_HRNET.read_text().replace("concat: {max_hw: 64}", 'concat: {sites: ["*.fuse.*"]}')
    path = tmp_path / "space.yaml"
    path.write_text(text)
    space = load_space(path)
    for name, site in space.sites.items():
        assert ("concat" in site.ops) == (".fuse." in name)


def test_overrides_are_applied_recorded_and_hashed() -> None:
    base = load_space(TINY_HRNET)
    half = load_space(TINY_HRNET, {"width_mult": 0.5})
    assert half.options == {"width_mult": 0.5}
    assert half.hash != base.hash
    for name, site in base.sites.items():
        assert half.sites[name].channels == round(site.channels * 0.5)
    fewer = load_space(TINY_HRNET, {"stages.1.blocks": 2})
    assert len(fewer.sites) == len(base.sites) + 3
    assert load_space(TINY_HRNET, {}).hash == base.hash


def test_check_hash_of_an_edited_space_names_both_hashes_options_and_remedy() -> None:
    space = load_space(TINY_HRNET)
    space.check_hash(space, "this file", "here.yaml", "never said")  # the same: no error
    half = load_space(TINY_HRNET, {"width_mult": 0.5})
    with pytest.raises(SpaceMismatchError) as info:
        space.check_hash(half, "this file", "here.yaml", "do X")
    message = str(info.value)
    assert message.startswith("here.yaml: space 'tiny_hrnet' has changed since this file was saved")
    assert half.hash in message and space.hash in message
    assert "{'width_mult': 0.5}" in message and message.endswith("; do X")
    # One type for every caller: a space refusal and a checkpoint refusal at once.
    assert isinstance(info.value, SpaceError) and isinstance(info.value, CheckpointError)


def test_check_hash_of_another_space_names_both_spaces() -> None:
    hrnet, resnet = load_space(TINY_HRNET), load_space(TINY_RESNET)
    record = {"space_name": resnet.name, "space_hash": resnet.hash}  # as a checkpoint keeps it
    with pytest.raises(SpaceMismatchError) as info:
        hrnet.check_hash(record, "this supernet", "sn.pt", "do Y")
    message = str(info.value)
    assert message.startswith("sn.pt: this supernet is for space 'tiny_resnet'")
    assert f"(hash {resnet.hash}, options not recorded), not 'tiny_hrnet'" in message
    assert f"(hash {hrnet.hash}, options {{}}); do Y" in message


def test_every_random_architecture_is_the_space_s_draw_as_before() -> None:
    """The latency table's samples, validation's mixed pool and the training sampler all
    draw through SearchSpace.random_arch; the hashes were drawn before they did, so the
    same seeds still give the same architectures (saved sampler states, pools, tables)."""
    from nasfuse.latency import random_arch
    from nasfuse.training.samplers import UniformSampler
    from nasfuse.validation import mixed_random_arch

    space = load_space("hrnet_lite")
    assert arch_hash(random_arch(space, random.Random(3))) == "7ccadb044e29f8d9"
    assert random_arch(space, random.Random(3)) == space.random_arch(3)
    rng = random.Random(5)
    mixed = [arch_hash(mixed_random_arch(space, rng)) for _ in range(3)]
    assert mixed == ["fc5995eb065839ad", "42c6cb06c897fed4", "f6afbb3132eda275"]
    sampler = UniformSampler(space, seed=7, fixed={"stage3.module0.fuse.branch1": "add"})
    drawn = [sampler.next_arch() for _ in range(3)]
    assert [arch_hash(arch) for arch in drawn] == [
        "e3df697b2b3c7730",
        "bef949e7e860097a",
        "7155ce55e2e49ce4",
    ]
    assert all(arch["stage3.module0.fuse.branch1"] == "add" for arch in drawn)


def test_random_arch_within_ops_falls_back_where_a_site_allows_none() -> None:
    space = load_space("hrnet_lite")
    arch = space.random_arch(0, ops={"cmgm"})  # cmgm is allowed at the small sites only
    for name, site in space.sites.items():
        assert arch[name] == "cmgm" if "cmgm" in site.ops else arch[name] in site.ops
    assert set(arch.values()) != {"cmgm"}


def test_load_recorded_space_loads_it_as_recorded_or_refuses(tmp_path: Path) -> None:
    half = load_space(TINY_HRNET, {"width_mult": 0.5})
    record = {"space": str(TINY_HRNET), "space_options": half.options, "space_hash": half.hash}
    assert load_recorded_space(record, "this file", "f.yaml", "do Z").hash == half.hash
    with pytest.raises(SpaceMismatchError, match=r"f\.yaml: space 'tiny_hrnet' has changed"):
        load_recorded_space({**record, "space_options": {}}, "this file", "f.yaml", "do Z")
    gone = {**record, "space": str(tmp_path / "gone.yaml")}
    with pytest.raises(SpaceMismatchError, match=r"f\.yaml: cannot load the space .*gone.*; do Z"):
        load_recorded_space(gone, "this file", "f.yaml", "do Z")


def test_space_loads_from_a_path_like_from_its_name() -> None:
    repo_file = Path(__file__).parent.parent / "search_spaces" / "resnet20.yaml"
    if not repo_file.is_file():
        pytest.skip("not running from a source checkout")
    by_path = load_space(repo_file)
    by_name = load_space("resnet20")
    assert by_path.hash == by_name.hash
    assert by_name.source == "resnet20" and by_path.source == str(repo_file.resolve())


def write_variant(tmp_path: Path, old: str, new: str, base: Path = TINY_HRNET) -> Path:
    text = base.read_text()
    assert old in text, f"fixture changed: {old!r} not in it"
    path = tmp_path / "variant.yaml"
    path.write_text(text.replace(old, new))
    return path


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "head_channels: 16",
            "head_channels: 16\nheadchannels: 3",
            "unknown key(s) 'headchannels'",
        ),
        (
            "modules: 1, blocks: 1}\n  - {branches: 3",
            "modules: 1, blocks: 1, bloks: 2}\n  - {branches: 3",
            "'stages[0].bloks'",
        ),
        ("ops: [add, concat]", "ops: [add, concat, sum]", "key 'ops': unknown op 'sum'"),
        (
            "channels: [8, 16]",
            "channels: [8, 16, 32]",
            "key 'stages[0].channels': expected 2 widths",
        ),
        (
            "channels: [8, 16, 16]",
            "channels: [8, 16]",
            "key 'stages[1].channels': expected 3 widths",
        ),
        ("input_size: 16", "input_size: 0", "key 'input_size': expected an integer >= 1"),
        ("channels: [8, 16]", "channels: [8, -16]", "key 'stages[0].channels': expected positive"),
        (
            "modules: 1, blocks: 1}\n  - {branches: 3",
            "modules: 0, blocks: 1}\n  - {branches: 3",
            "key 'stages[0].modules'",
        ),
        ("width_mult: 1.0", "width_mult: -0.5", "key 'width_mult': expected a positive number"),
        ("stem_stride: 1", "stem_stride: 3", "key 'stem_stride': expected a power of 2"),
        ("family: hrnet", "family: vgg", "key 'family': expected one of hrnet, resnet"),
        ("concat: {max_hw: 64}", "concat: {max_hw: 64, max_area: 3}", "'restrict.concat.max_area'"),
        ("concat: {max_hw: 64}", "dwff: {max_hw: 64}", "'restrict.dwff'"),
        ("ops: [add, concat]", "ops: [concat]", "no op is left at site"),
        ("{branches: 3,", "{branches: 1,", "key 'stages[1].branches': expected at least 2"),
        (
            "input_size: 16",
            "input_size: 16\ninput_size: 32",
            "line 7, column 1: not valid YAML: key 'input_size' is given twice",
        ),
        ("stages:", "stages: [", "line"),
    ],
)
def test_bad_space_files_are_refused(tmp_path: Path, old: str, new: str, expected: str) -> None:
    path = write_variant(tmp_path, old, new)
    with pytest.raises(SpaceError) as caught:
        load_space(path)
    message = str(caught.value)
    assert str(path) in message
    assert expected in message


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write_variant(tmp_path, "head_channels: 16", "head_channels: [16")
    with pytest.raises(SpaceError, match=r"variant\.yaml: line \d+, column \d+: not valid YAML"):
        load_space(path)


def test_bad_overrides_are_refused() -> None:
    with pytest.raises(SpaceError, match=r"with overrides .*key 'width_mult': expected a positive"):
        load_space(TINY_HRNET, {"width_mult": 0})
    with pytest.raises(SpaceError, match="unknown key.*'depth'"):
        load_space(TINY_HRNET, {"depth": 3})
    with pytest.raises(SpaceError, match="override 'stages.5.blocks'"):
        load_space(TINY_HRNET, {"stages.5.blocks": 3})
    with pytest.raises(SpaceError, match="no key 'stem'"):
        load_space(TINY_HRNET, {"stem.stride.x": 3})


def test_unknown_names_and_missing_files() -> None:
    with pytest.raises(SpaceError, match="unknown search space 'hrnet_big'.*hrnet_lite"):
        load_space("hrnet_big")
    with pytest.raises(FileNotFoundError, match="nowhere/space.yaml"):
        load_space("nowhere/space.yaml")


def test_uniform_arch_refuses_an_op_not_allowed_everywhere() -> None:
    space = load_space(TINY_HRNET)
    assert set(space.uniform_arch("add").values()) == {"add"}
    with pytest.raises(SpaceError, match="'concat' is not allowed at 4 site"):
        space.uniform_arch("concat")


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> None:
    """Give every BN non-trivial running statistics and affine parameters."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            shape = module.running_mean.shape
            module.running_mean.copy_(torch.randn(shape, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(shape, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(shape, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(shape, generator=generator) * 0.1)


def reference_conv_bn(
    x: torch.Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d, stride: int = 1, groups: int = 1
) -> torch.Tensor:
    """``BN(conv(x))`` written out with the functional API and the layers' tensors."""
    y = F.conv2d(x, conv.weight, stride=stride, padding=conv.kernel_size[0] // 2, groups=groups)
    return F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias, eps=bn.eps)


def test_hrnet_fuse_layer_equals_a_hand_written_hrnet_sum() -> None:
    space = load_space(TINY_HRNET)
    model = build_model(space, space.uniform_arch("add")).eval()
    randomize_batchnorm(model)
    fuse = model.stages[1][0].fuse  # stage3: 3 branches at 16, 8, 4
    widths = [8, 16, 16]
    xs = [torch.randn(2, c, 16 >> b, 16 >> b) for b, c in enumerate(widths)]
    originals = [x.clone() for x in xs]

    def down(x: torch.Tensor, i: int, j: int) -> torch.Tensor:
        # Each step: depthwise 3x3 stride 2 -> BN -> pointwise 1x1 -> BN, ReLU between steps.
        convs = [m for m in fuse.align[i][j] if isinstance(m, nn.Conv2d)]
        norms = [m for m in fuse.align[i][j] if isinstance(m, nn.BatchNorm2d)]
        assert len(convs) == 2 * (i - j)
        for step in range(i - j):
            depthwise, pointwise = convs[2 * step], convs[2 * step + 1]
            x = reference_conv_bn(x, depthwise, norms[2 * step], stride=2, groups=x.shape[1])
            x = reference_conv_bn(x, pointwise, norms[2 * step + 1])
            if step < i - j - 1:
                x = F.relu(x)
        return x

    def up(x: torch.Tensor, i: int, j: int) -> torch.Tensor:
        project = fuse.align[i][j].project
        y = reference_conv_bn(x, project[0], project[1])
        return F.interpolate(y, scale_factor=2 ** (j - i), mode="nearest")

    expected = []
    for i in range(3):
        total = xs[i].clone()
        for j in range(3):
            if j < i:
                total = total + down(xs[j], i, j)
            elif j > i:
                total = total + up(xs[j], i, j)
        expected.append(F.relu(total))
    with torch.no_grad():
        outputs = fuse(xs)
    for out, ref in zip(outputs, expected, strict=True):
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    for x, original in zip(xs, originals, strict=True):
        assert torch.equal(x, original), "the fuse layer wrote into its inputs"


def test_shipped_spaces_are_found_in_the_wheel_before_the_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nasfuse.spaces import _loading

    wheel, checkout = tmp_path / "wheel", tmp_path / "checkout"
    wheel.mkdir()
    checkout.mkdir()
    (checkout / "tiny.yaml").write_text(TINY_RESNET.read_text())
    (checkout / "other.yaml").write_text(TINY_RESNET.read_text())
    (wheel / "tiny.yaml").write_text(TINY_HRNET.read_text())
    monkeypatch.setattr(_loading, "shipped_space_dirs", lambda: [wheel, checkout])
    assert list_spaces() == ["other", "tiny"]
    assert load_space("tiny").name == "tiny_hrnet"
    assert load_space("other").name == "tiny_resnet"


def test_cli_space_show_prints_every_site(capsys: pytest.CaptureFixture[str]) -> None:
    from nasfuse.cli import main

    assert main(["space", "show", str(TINY_HRNET), "--set", "width_mult=0.5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    space = load_space(TINY_HRNET, {"width_mult": 0.5})
    rows = {line.split()[0]: line.split()[1:] for line in lines if line.startswith("stage")}
    assert list(rows) == list(space.sites)
    assert rows["stage3.module0.fuse.branch2"] == ["8", "3", "4x4", "add", "concat"]
    assert rows["stage2.module0.branch0.block0"] == ["4", "2", "16x16", "add"]
    assert lines[-1].startswith("10 sites; space size 64 architectures")
    assert space.hash in lines[0] and "width_mult': 0.5" in lines[0]


def test_cli_space_list_and_cost(capsys: pytest.CaptureFixture[str]) -> None:
    from nasfuse.cli import main
    from nasfuse.profile import count_params

    assert main(["space", "list"]) == 0
    listed = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:]}
    assert set(listed) == set(list_spaces())
    assert listed["resnet20"][3] == "9" and listed["resnet18"][3] == "8"
    assert main(["space", "cost", str(TINY_RESNET), "--arch", "concat"]) == 0
    out = capsys.readouterr().out
    space = load_space(TINY_RESNET)
    params = count_params(build_model(space, space.uniform_arch("concat")))
    assert f"params {params:,}" in out


def test_cli_space_errors_name_the_problem(capsys: pytest.CaptureFixture[str]) -> None:
    from nasfuse.cli import main

    assert main(["space", "show", str(TINY_HRNET), "--set", "stem_stride=3"]) == 2
    assert "key 'stem_stride': expected a power of 2" in capsys.readouterr().err
    assert main(["space", "cost", str(TINY_RESNET), "--arch", "no_such_op"]) == 2
    assert "neither an architecture file nor an op" in capsys.readouterr().err


# --- memory: refused before allocating (issue 19) ---------------------------------------

GIB = 2**30


@pytest.fixture
def machine_with_24_gib(monkeypatch: pytest.MonkeyPatch) -> None:
    from nasfuse.spaces import _memory

    monkeypatch.setattr(_memory, "physical_memory_bytes", lambda: 24 * GIB)


@pytest.mark.parametrize(
    ("override", "part"),
    [({"width_mult": 1000}, "of weights"), ({"input_size": 100_000}, "activations per sample")],
)
def test_a_space_that_cannot_fit_is_refused_on_load_with_the_estimate(
    machine_with_24_gib: None, override: dict, part: str
) -> None:
    with pytest.raises(SpaceError, match=r"refused before allocating") as refused:
        load_space("resnet20", override)
    message = str(refused.value)
    assert "resnet20" in message and part in message and "24.0 GiB" in message
    assert "at site 'layer1.0'" in message  # layer1 has the largest inputs per sample


def test_training_memory_is_checked_at_the_batch_size(machine_with_24_gib: None) -> None:
    space = load_space("resnet20", {"input_size": 2000})  # about 2.5 GiB a sample: loads
    space.check_training_memory(batch_size=4)
    with pytest.raises(SpaceError, match=r"at batch size 32 needs at least 8\d\.\d GiB"):
        space.check_training_memory(batch_size=32)


@pytest.mark.filterwarnings("ignore:cmgm")
@pytest.mark.parametrize("name", ["resnet20", "hrnet_lite"])
def test_memory_floor_counts_the_weights_of_the_real_networks(name: str) -> None:
    from nasfuse import Supernet
    from nasfuse.spaces._memory import memory_floor

    space = load_space(name, {"width_mult": 0.25})
    plain = build_model(space, space.uniform_arch("add"), num_classes=0)
    supernet = Supernet(space, num_classes=0)
    bytes_per_weight = 3 * 4  # weight, gradient, momentum; float32
    count = lambda net: sum(p.numel() for p in net.parameters())  # noqa: E731
    assert memory_floor(space).weights == bytes_per_weight * count(plain)
    assert memory_floor(space, every_op=True).weights == bytes_per_weight * count(supernet)


def test_narrowing_the_ops_drops_the_removed_ops_rules() -> None:
    # resnet20.yaml restricts cmgm by size; an op list without cmgm must still load, and
    # the remaining ops' sites are unchanged.
    space = load_space("resnet20", {"ops": ["add", "concat"]})
    assert space.config["ops"] == ["add", "concat"]
    assert "cmgm" not in space.config["restrict"]
    full = load_space("resnet20")
    assert list(space.sites) == list(full.sites)


def test_a_rule_for_an_op_the_file_does_not_offer_is_still_refused(tmp_path) -> None:
    text = (Path(__file__).parent.parent / "search_spaces" / "resnet20.yaml").read_text()
    path = tmp_path / "narrow.yaml"
    path.write_text(
        text.replace("ops: [add, concat, dwff, aff, iaff, cmgm, dynconv, pmfs]", "ops: [add]")
    )
    with pytest.raises(SpaceError, match="restrict.cmgm"):
        load_space(path)


# ------------------------------------------------------------------ the family registry
def test_the_shipped_families_are_registered_and_their_spaces_listed() -> None:
    assert {"hrnet", "resnet"} <= set(list_families())
    assert {"hrnet_lite", "resnet20"} <= set(list_spaces())
    for name in ("hrnet_lite", "resnet20"):
        space = load_space(name)
        assert get_family(space.family).name == space.family
    assert registered_at("resnet").startswith(str(Path(nasfuse_spaces_dir(), "resnet.py")))


def nasfuse_spaces_dir() -> Path:
    import nasfuse.spaces

    return Path(nasfuse.spaces.__file__).parent


def test_a_family_name_registered_twice_is_refused_naming_the_first() -> None:
    resnet = get_family("resnet")
    first = registered_at("resnet")
    with pytest.raises(ValueError, match=rf"'resnet' is already registered \(at {first}\)"):
        register_family(
            Family("resnet", resnet.keys, resnet.resolve, resnet.layout, resnet.network)
        )
    assert get_family("resnet") is resnet and registered_at("resnet") == first


def test_an_unknown_family_names_the_registered_ones(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(TINY_RESNET.read_text().replace("family: resnet", "family: vgg"))
    with pytest.raises(SpaceError, match=r"key 'family': expected one of .*resnet.*, got 'vgg'"):
        load_space(path)


def _plain_resolve(raw, where: Where) -> dict:
    widths = get_list(raw, "stages", where)
    return {"stages": [get_int({"width": w}, "width", where.child("stages")) for w in widths]}


def _plain_layout(config) -> list[tuple[str, int, int, int, int]]:
    size = config["input_size"]
    return [(f"block{i}", width, 2, size, size) for i, width in enumerate(config["stages"])]


class PlainNet(FusionNet):
    """A test family: a 3x3 conv per site, whose output is fused with its input."""

    def __init__(self, space: SearchSpace, make_fusion, num_classes: int, in_chans: int) -> None:
        layout = _plain_layout(space.config)
        super().__init__(space, layout[-1][1], num_classes)
        self.stem = conv_bn(in_chans, layout[0][1], 3)
        self.convs = nn.ModuleList(conv_bn(width, width, 3) for _, width, *_ in layout)
        self.fusions = nn.ModuleList(make_fusion(space.sites[name]) for name, *_ in layout)
        self.register_sites({name: f for (name, *_), f in zip(layout, self.fusions, strict=True)})

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for conv, fusion in zip(self.convs, self.fusions, strict=True):
            x = fusion([conv(x), x])
        return x


@pytest.fixture
def plain_family():
    family = register_family(Family("plain", ("stages",), _plain_resolve, _plain_layout, PlainNet))
    yield family
    unregister_family("plain")


def test_a_family_registered_in_a_test_loads_and_builds(plain_family, tmp_path: Path) -> None:
    assert "plain" in list_families()
    path = tmp_path / "plain.yaml"
    path.write_text(
        "name: plain4\nfamily: plain\ninput_size: 8\nstages: [4, 4]\nops: [add, concat]\n"
    )
    space = load_space(path)
    assert list(space.sites) == ["block0", "block1"]
    assert space.sites["block1"] == Site("block1", 4, 2, 8, 8, ("add", "concat"))
    model = build_model(space, space.uniform_arch("concat"), num_classes=3)
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 3)
    assert_site_shapes_match_forward(space)
    supernet = Supernet(space, num_classes=3)
    supernet.set_arch(supernet.sample_arch(rng=0))
    assert supernet(torch.randn(2, 3, 8, 8)).shape == (2, 3)
