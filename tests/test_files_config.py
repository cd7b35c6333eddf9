from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
import torch

from nasfuse.config import ConfigError, load_config, save_config
from nasfuse.files import CheckpointError, load_checkpoint, save_checkpoint


@dataclasses.dataclass
class StageConfig:
    epochs: int = 10
    lr: float = 0.1
    name: str = "x"
    tags: list[str] = dataclasses.field(default_factory=list)
    limit: float | None = None


def test_overrides_win_over_file_and_keep_types(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 3\nlr: 1\n")
    cfg = load_config(StageConfig, path, ["lr=0.5", "tags=[a, b]", "limit=2"])
    assert cfg.epochs == 3 and cfg.lr == 0.5 and cfg.tags == ["a", "b"]
    assert isinstance(cfg.limit, float) and cfg.limit == 2.0


@pytest.mark.parametrize(
    ("text", "value"),
    [("1e-4", 1e-4), ("5e-4", 5e-4), (".5", 0.5), ("-2.5E3", -2500.0), ("1e5", 1e5), ("3", 3)],
)
def test_overrides_read_numbers_in_exponent_form_as_numbers(text: str, value: float) -> None:
    from nasfuse.config import parse_overrides

    parsed = parse_overrides([f"lr={text}"])["lr"]
    assert parsed == value and type(parsed) is type(value)
    # The --help example: a float field accepts it.
    assert load_config(StageConfig, overrides=[f"lr={text}"]).lr == pytest.approx(value)


def test_a_quoted_number_stays_a_string() -> None:
    from nasfuse.config import parse_overrides

    assert parse_overrides(["name='1e-4'", "tag=1e-4x"]) == {"name": "1e-4", "tag": "1e-4x"}


def test_unknown_key_names_file_and_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochz: 3\n")
    with pytest.raises(ConfigError, match=r"c\.yaml.*epochz"):
        load_config(StageConfig, path)


def test_wrong_type_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="epochs.*integer"):
        load_config(StageConfig, overrides=["epochs=three"])
    path = tmp_path / "bad.yaml"
    path.write_text("epochs: [1\n")
    with pytest.raises(ConfigError, match="bad.yaml.*not valid YAML"):
        load_config(StageConfig, path)


def test_saved_config_loads_back_equal(tmp_path):
    cfg = StageConfig(epochs=4, tags=["q"], limit=1.5)
    save_config(cfg, tmp_path / "resolved.yaml")
    assert load_config(StageConfig, tmp_path / "resolved.yaml") == cfg


def test_checkpoint_round_trip_and_refusals(tmp_path):
    path = tmp_path / "ck.pt"
    save_checkpoint({"kind": "model", "w": torch.arange(3)}, path)
    assert torch.equal(load_checkpoint(path, kind="model")["w"], torch.arange(3))
    with pytest.raises(CheckpointError, match="expected a 'supernet' checkpoint"):
        load_checkpoint(path, kind="supernet")
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def _training_state() -> dict:
    """A checkpoint as the training loops write one: a model with BatchNorm, its optimiser
    after a step, the RNG, numbers and strings."""
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3),
        torch.nn.BatchNorm2d(4),
        torch.nn.Flatten(),
        torch.nn.LazyLinear(2),
    )
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net(torch.randn(2, 3, 5, 5)).sum().backward()
    optimizer.step()
    return {
        "kind": "supernet",
        "epoch": 3,
        "model": net.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": {"torch": torch.get_rng_state()},
        "history": [{"loss": 0.5}],
        "extra": {
            "scalar": torch.tensor(2.5),
            "mask": torch.tensor([True, False]),
            "strided": torch.arange(12.0).view(3, 4).t(),
            "empty": torch.zeros(0, 3),
            "pair": (torch.ones(2, dtype=torch.float16), "x"),
        },
    }


def _assert_same(a, b) -> None:
    assert type(a) is type(b)
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            _assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same(x, y)
    else:
        assert a == b


def test_a_checkpoint_loads_back_exactly_from_a_few_packed_tensors(tmp_path) -> None:
    import zipfile

    state = _training_state()
    path = tmp_path / "ck.pt"
    save_checkpoint(state, path)
    loaded = load_checkpoint(path, kind="supernet")
    _assert_same(state, loaded)
    # The state dict keeps the version metadata load_state_dict reads.
    assert loaded["model"]._metadata == state["model"]._metadata
    # Every loaded tensor is its own copy, as torch.load gives.
    pointers = [t.untyped_storage().data_ptr() for t in loaded["model"].values() if t.numel()]
    assert len(set(pointers)) == len(pointers)
    # 21 tensors in, one record per dtype out (float32, int64, uint8, bool, float16).
    records = [n for n in zipfile.ZipFile(path).namelist() if "/data/" in n]
    assert len(records) == 5
    # Scalar entries stay readable without nasfuse.
    assert torch.load(path, weights_only=True)["epoch"] == 3


def test_a_checkpoint_saved_before_packing_still_loads(tmp_path) -> None:
    state = _training_state()
    path = tmp_path / "old.pt"
    torch.save(state, path)
    _assert_same(state, load_checkpoint(path, kind="supernet"))


@pytest.mark.parametrize("placeholder", [[0, 10**9, 2], [5, 0, 1], [-1, 0, 1], [0, 0, -1], "x"])
def test_a_packed_checkpoint_with_a_bad_placeholder_is_refused(tmp_path, placeholder) -> None:
    from nasfuse.files import pack_tensors

    packed = pack_tensors({"kind": "model", "model": {"w": torch.ones(3)}})
    packed["model"]["w"]["__nasfuse_tensor__"] = placeholder
    path = tmp_path / "bad.pt"
    torch.save(packed, path)
    with pytest.raises(CheckpointError, match="bad.pt: not a readable"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "name", ["../../ESCAPED", "/etc/passwd", "a\x00b", "..", ".hidden", "x/../../y", "", "C:\\w"]
)
def test_names_from_user_strings_stay_one_file_name(tmp_path, name: str) -> None:
    from nasfuse.files import safe_file_name

    safe = safe_file_name(name)
    assert safe and "/" not in safe and "\\" not in safe and "\x00" not in safe
    assert not safe.startswith(".")
    assert (tmp_path / safe).resolve().parent == tmp_path.resolve()
    assert safe_file_name("hrnet_lite-0.5") == "hrnet_lite-0.5"  # ordinary names unchanged


def test_a_space_named_to_escape_keeps_its_latency_table_in_the_folder(tmp_path) -> None:
    from pathlib import Path

    from nasfuse.latency.table import default_table_path
    from nasfuse.spaces import load_space

    fixture = Path(__file__).parent / "fixtures" / "tiny_resnet.yaml"
    hostile = tmp_path / "hostile.yaml"
    hostile.write_text(fixture.read_text().replace("name: tiny_resnet", "name: ../../ESCAPED"))
    space = load_space(hostile)
    path = default_table_path(space, 32, root=tmp_path / "latency")
    assert path.parent == tmp_path / "latency"
    assert path.name == f"ESCAPED-{space.hash}-b32.json"


# ------------------------------------------------- resume checks: run-only fields (issue 17)
def _config_types() -> dict[str, type]:
    from nasfuse.search import SearchConfig
    from nasfuse.training import RetrainConfig, SupernetTrainConfig

    return {
        "SupernetTrainConfig": SupernetTrainConfig,
        "RetrainConfig": RetrainConfig,
        "SearchConfig": SearchConfig,
    }


_TRAINING_RUN_ONLY = {"data_dir", "download", "num_workers", "threads", "progress", "eval_every"}
# Every config type whose resume is checked, and the fields a resume may change.
RUN_ONLY = {
    "SupernetTrainConfig": _TRAINING_RUN_ONLY | {"few_shot_epochs", "few_shot_site"},
    "RetrainConfig": _TRAINING_RUN_ONLY,
    "SearchConfig": {
        "data_dir",
        "download",
        "trials",
        "ray_address",
        "num_cpus",
        "concurrency",
        "latency_table",
        "threads",
        "pick",
    },
}


def _field_changes() -> list[tuple[str, str]]:
    return [
        (type_name, f.name)
        for type_name, cfg_type in _config_types().items()
        for f in dataclasses.fields(cfg_type)
    ]


@pytest.mark.parametrize("type_name", list(RUN_ONLY))
def test_run_only_fields_are_exactly_the_table(type_name: str) -> None:
    from nasfuse.config import run_only_fields

    assert run_only_fields(_config_types()[type_name]) == RUN_ONLY[type_name]


@pytest.mark.parametrize(("type_name", "field_name"), _field_changes())
def test_a_resume_accepts_a_run_only_change_and_refuses_any_other(
    type_name: str, field_name: str, one_field_changed: Callable[[object, str], object]
) -> None:
    """Each field on its own: changing a run-only one resumes, any other is refused."""
    from nasfuse.config import ResumeConflict, changed_fields, check_resumable

    saved = _config_types()[type_name]()
    current = one_field_changed(saved, field_name)
    record = dataclasses.asdict(saved)
    if field_name in RUN_ONLY[type_name]:
        assert changed_fields(record, current) == []
        check_resumable(record, current, "run", "start another")
    else:
        with pytest.raises(ResumeConflict) as refused:
            check_resumable(record, current, "run.pt", "start another --out")
        message = str(refused.value)
        before, after = getattr(saved, field_name), getattr(current, field_name)
        assert f"{field_name}: {before!r} -> {after!r}" in message
        assert message.startswith("run.pt: cannot resume") and "start another --out" in message
        free = ", ".join(sorted(RUN_ONLY[type_name]))
        assert f"only these may change on resume: {free}" in message


@pytest.mark.parametrize(("type_name", "field_name"), _field_changes())
def test_the_fingerprint_changes_exactly_with_the_fields_a_resume_refuses(
    type_name: str, field_name: str, one_field_changed: Callable[[object, str], object]
) -> None:
    from nasfuse.config import config_fingerprint

    base = _config_types()[type_name]()
    same = config_fingerprint(one_field_changed(base, field_name)) == config_fingerprint(base)
    assert same == (field_name in RUN_ONLY[type_name])


def test_a_field_the_run_predates_counts_as_its_default_and_an_old_one_as_a_change() -> None:
    from nasfuse.config import changed_fields, run_only

    @dataclasses.dataclass
    class Config:
        lr: float = 0.1
        mode: str = "a"
        threads: int | None = run_only(None)

    assert changed_fields({"lr": 0.1}, Config(threads=2)) == []  # mode was added since
    changes = [str(c) for c in changed_fields({"lr": 0.1, "gone": 3}, Config(mode="b"))]
    assert changes == [
        "mode: (not recorded, default 'a') -> 'b'",
        "gone: 3 -> (no such setting now)",
    ]


def test_a_subclass_must_keep_a_fields_classification() -> None:
    from nasfuse.config import run_only, run_only_fields

    @dataclasses.dataclass
    class Base:
        threads: int | None = run_only(None)

    @dataclasses.dataclass
    class Kept(Base):
        threads: int | None = run_only(1)

    @dataclasses.dataclass
    class Dropped(Base):
        threads: int | None = 1

    assert run_only_fields(Kept) == {"threads"}
    with pytest.raises(TypeError, match="Dropped.threads and Base.threads disagree"):
        run_only_fields(Dropped)
