"""Architecture files: hash, round trip over every space, and every refusal."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from nasfuse.arch import arch_hash, load_arch, save_arch
from nasfuse.spaces import SpaceError, list_spaces, load_space

FIXTURES = Path(__file__).parent / "fixtures"
TINY_HRNET = FIXTURES / "tiny_hrnet.yaml"
TINY_RESNET = FIXTURES / "tiny_resnet.yaml"
ALL_SPACES = [*list_spaces(), str(TINY_HRNET), str(TINY_RESNET)]


def test_arch_hash_is_order_independent_and_sensitive() -> None:
    arch = {"layer1.0": "add", "layer2.0": "concat", "layer2.1": "add"}
    reordered = dict(reversed(list(arch.items())))
    assert arch_hash(arch) == arch_hash(reordered)
    assert arch_hash(arch) != arch_hash({**arch, "layer2.1": "concat"})
    assert len(arch_hash(arch)) == 16 and int(arch_hash(arch), 16) >= 0


@pytest.mark.parametrize("name", ALL_SPACES, ids=lambda name: Path(name).stem)
def test_round_trip(tmp_path: Path, name: str) -> None:
    space = load_space(name)
    arch = space.random_arch(rng=4)
    path = tmp_path / "arch.yaml"
    save_arch(arch, path, space, metrics={"accuracy": np.float32(0.5), "latency_ms": 3.25})
    loaded, loaded_space = load_arch(path)
    assert loaded == arch and list(loaded) == list(space.sites)
    assert loaded_space.hash == space.hash and loaded_space.source == space.source
    assert load_arch(path, space)[0] == arch
    document = yaml.safe_load(path.read_text())
    assert document["metrics"] == {"accuracy": 0.5, "latency_ms": 3.25}
    assert document["space_hash"] == space.hash


def test_round_trip_keeps_space_options(tmp_path: Path) -> None:
    space = load_space(TINY_HRNET, {"width_mult": 0.5})
    arch = space.uniform_arch("add")
    save_arch(arch, tmp_path / "arch.yaml", space)
    loaded, loaded_space = load_arch(tmp_path / "arch.yaml")
    assert loaded_space.options == {"width_mult": 0.5}
    assert loaded_space.hash == space.hash
    with pytest.raises(SpaceError, match="has changed since this architecture was saved"):
        load_arch(tmp_path / "arch.yaml", load_space(TINY_HRNET))


def test_arch_for_another_space_is_refused(tmp_path: Path) -> None:
    resnet = load_space(TINY_RESNET)
    save_arch(resnet.uniform_arch("add"), tmp_path / "arch.yaml", resnet)
    with pytest.raises(
        SpaceError,
        match=r"arch\.yaml: this architecture is for space .*tiny_resnet.*not 'tiny_hrnet'",
    ):
        load_arch(tmp_path / "arch.yaml", load_space(TINY_HRNET))


def test_arch_for_an_edited_space_is_refused(tmp_path: Path) -> None:
    space_file = tmp_path / "space.yaml"
    shutil.copy(TINY_HRNET, space_file)
    space = load_space(space_file)
    save_arch(space.uniform_arch("add"), tmp_path / "arch.yaml", space)
    space_file.write_text(space_file.read_text().replace("head_channels: 16", "head_channels: 24"))
    with pytest.raises(SpaceError, match="has changed since this architecture was saved"):
        load_arch(tmp_path / "arch.yaml")
    # Comments and the description are not part of the space.
    space_file.write_text(
        space_file.read_text()
        .replace("head_channels: 24", "head_channels: 16")
        .replace("description: tiny", "description: small")
        + "# a comment\n"
    )
    assert load_arch(tmp_path / "arch.yaml")[1].hash == space.hash


def edit_arch(path: Path, change: callable) -> None:
    document = yaml.safe_load(path.read_text())
    change(document)
    path.write_text(yaml.safe_dump(document, sort_keys=False))


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d["arch"].pop("layer2.1"), r"missing site\(s\) layer2.1"),
        (lambda d: d["arch"].__setitem__("layer9.0", "add"), r"unknown site\(s\) layer9.0"),
        (
            lambda d: d["arch"].__setitem__("layer2.1", "aff_typo"),
            "op 'aff_typo' is not allowed at site 'layer2.1'",
        ),
        (lambda d: d.__setitem__("score", 1), r"unknown key\(s\) score"),
        (lambda d: d.pop("space_hash"), r"missing key\(s\) space_hash"),
        (lambda d: d.__setitem__("arch", ["add"]), "key 'arch': expected a mapping"),
    ],
)
def test_bad_arch_files_are_refused(tmp_path: Path, change: callable, expected: str) -> None:
    space = load_space(TINY_RESNET)
    path = tmp_path / "arch.yaml"
    save_arch(space.uniform_arch("add"), path, space)
    edit_arch(path, change)
    with pytest.raises(SpaceError, match=expected) as caught:
        load_arch(path, space)
    assert str(path) in str(caught.value)


def test_op_not_allowed_at_its_site_is_refused(tmp_path: Path) -> None:
    space = load_space(TINY_HRNET)
    path = tmp_path / "arch.yaml"
    save_arch(space.uniform_arch("add"), path, space)
    edit_arch(path, lambda d: d["arch"].__setitem__("stage2.module0.fuse.branch0", "concat"))
    with pytest.raises(
        SpaceError,
        match=r"'concat' is not allowed at site 'stage2.module0.fuse.branch0' \(8x16x16\); allowed: add",
    ):
        load_arch(path)


def test_save_refuses_a_bad_arch_and_load_a_missing_file(tmp_path: Path) -> None:
    space = load_space(TINY_RESNET)
    with pytest.raises(SpaceError, match="missing site"):
        save_arch({"layer1.0": "add"}, tmp_path / "arch.yaml", space)
    assert not (tmp_path / "arch.yaml").exists()
    with pytest.raises(FileNotFoundError, match="architecture file not found"):
        load_arch(tmp_path / "nope.yaml")
    (tmp_path / "broken.yaml").write_text("space: [unclosed\n")
    with pytest.raises(SpaceError, match=r"broken\.yaml: line 2"):
        load_arch(tmp_path / "broken.yaml")


def test_space_arch_command_writes_a_uniform_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from nasfuse.cli import main

    out = tmp_path / "all-concat.yaml"
    assert main(["space", "arch", str(TINY_RESNET), "--op", "concat", "--out", str(out)]) == 0
    arch, space = load_arch(out)
    assert set(arch.values()) == {"concat"} and len(arch) == len(space.sites)
    assert main(["space", "arch", str(TINY_RESNET), "--op", "nope", "--out", str(out)]) == 2
    assert "neither an architecture file nor an op" in capsys.readouterr().err
    assert set(load_arch(out)[0].values()) == {"concat"}  # the refusal wrote nothing


DIGITS_FACTS = {
    "dataset": "digits",
    "in_chans": 1,
    "num_classes": 10,
    "input_size": 16,  # tiny_resnet's
    "mean": [0.3],
    "std": [0.4],
    "interpolation": "bilinear",
    "crop_pct": 1.0,
}


def test_data_facts_round_trip_and_old_files_have_none(tmp_path: Path) -> None:
    from nasfuse.arch import read_arch

    space = load_space(TINY_RESNET)
    facts = {**DIGITS_FACTS, "mean": (np.float32(0.25),)}
    save_arch(space.uniform_arch("add"), tmp_path / "new.yaml", space, **facts)
    loaded = read_arch(tmp_path / "new.yaml")
    assert loaded.data == {**facts, "mean": [0.25]}
    assert yaml.safe_load((tmp_path / "new.yaml").read_text())["data"]["in_chans"] == 1
    save_arch(space.uniform_arch("add"), tmp_path / "old.yaml", space)
    assert "data" not in yaml.safe_load((tmp_path / "old.yaml").read_text())
    assert read_arch(tmp_path / "old.yaml").data == {}


def test_data_facts_of_a_bundle() -> None:
    from nasfuse.arch import data_fields
    from nasfuse.data import build_loaders

    bundle = build_loaders("digits", input_size=16, batch_size=32)
    facts = data_fields(bundle)
    assert facts["dataset"] == "digits" and facts["in_chans"] == 1 and facts["num_classes"] == 10
    assert facts["input_size"] == 16 and facts["crop_pct"] == 1.0
    normalize = bundle.test.dataset.finish.transforms[-1]
    assert facts["mean"] == list(normalize.mean) and facts["std"] == list(normalize.std)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"in_chans": 0}, r"data\.in_chans': expected a positive integer"),
        ({"mean": [0.1, 0.2]}, r"data\.mean': expected a list of 1 numbers"),
        ({"std": [0.0]}, r"data\.std': expected a list of 1 positive numbers"),
        ({"input_size": 64}, r"data\.input_size': 64 is not the input size of its space \(16\)"),
        ({"interpolation": "lanczos9"}, r"data\.interpolation': expected one of"),
        ({"crop_pct": 1.5}, r"data\.crop_pct': expected a number in \(0, 1\]"),
        ({"colour": "red"}, r"key 'data': unknown key\(s\) colour"),
    ],
)
def test_bad_data_facts_are_refused(tmp_path: Path, change: dict, expected: str) -> None:
    space = load_space(TINY_RESNET)
    path = tmp_path / "arch.yaml"
    save_arch(space.uniform_arch("add"), path, space, **DIGITS_FACTS)
    edit_arch(path, lambda d: d["data"].update(change))
    with pytest.raises(SpaceError, match=expected) as caught:
        load_arch(path)
    assert str(path) in str(caught.value)
    if "colour" not in change:  # save_arch checks the same way and writes nothing
        with pytest.raises(SpaceError, match=expected):
            save_arch(
                space.uniform_arch("add"), tmp_path / "x.yaml", space, **{**DIGITS_FACTS, **change}
            )
        assert not (tmp_path / "x.yaml").exists()
