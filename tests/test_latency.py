"""Latency: measurement statistics, the lookup table, its file and refusals, the CLI.

No test asserts an absolute time; comparisons use work ratios of 4x so that a loaded
machine does not flip them.
"""

from __future__ import annotations

import copy
import json
import os
import random

import pytest
import torch
from torch import nn

import nasfuse.latency.passes as passes_module
import nasfuse.latency.timing as timing_module
from nasfuse.cli import main
from nasfuse.latency import (
    BuildOptions,
    LatencyStats,
    LatencyTable,
    LatencyTableError,
    RatioStats,
    default_table_path,
    latency_errors,
    measure_archs,
    measure_latency,
    measure_ratio,
    random_arch,
)
from nasfuse.ops import create_op
from nasfuse.supernet import build_model

FAST = {"warmup": 1, "runs": 3, "rounds": 1, "network_runs": 2, "progress": False, "threads": 1}


class MatmulChain(nn.Module):
    """``steps`` matrix products in a row: latency grows with ``steps`` by construction."""

    def __init__(self, size: int, steps: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(size, size) / size**0.5)
        self.steps = steps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.steps):
            x = x @ self.weight
        return x


class RepeatedOp(nn.Module):
    """One fusion op applied ``times`` times to the same inputs."""

    def __init__(self, op: nn.Module, times: int) -> None:
        super().__init__()
        self.op = op
        self.times = times

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        out = xs[0]
        for _ in range(self.times):
            out = self.op([out, *xs[1:]])
        return out


def test_measure_returns_positive_ordered_statistics() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
    stats = measure_latency(model, (4, 3, 16, 16), warmup=2, runs=15, threads=1)
    assert isinstance(stats, LatencyStats)
    assert 0 < stats.p10_ms <= stats.median_ms <= stats.p90_ms
    assert stats.mean_ms > 0
    assert (stats.runs, stats.batch_size, stats.input_shape) == (15, 4, (4, 3, 16, 16))
    assert stats.device.startswith("cpu:") and stats.threads == 1
    assert stats.device in str(stats)
    assert model.training, "the model's train/eval mode is restored"


def test_measure_sets_and_restores_the_thread_count() -> None:
    before = torch.get_num_threads()
    other = 2 if before == 1 else 1
    stats = measure_latency(nn.Identity(), (2, 3), warmup=0, runs=2, threads=other)
    assert stats.threads == other
    assert f"({other} thread" in stats.device
    assert torch.get_num_threads() == before


def test_measure_channels_last_leaves_weights_contiguous() -> None:
    model = nn.Conv2d(4, 4, 3, padding=1)
    stats = measure_latency(model, (2, 4, 8, 8), warmup=1, runs=3, channels_last=True)
    assert stats.median_ms > 0
    assert model.weight.is_contiguous()


def test_measure_times_a_fusion_op_on_a_list_of_inputs() -> None:
    op = create_op("concat", 8, 3)
    shapes_seen = []

    def make_inputs(device: torch.device) -> list[torch.Tensor]:
        xs = [torch.randn(5, 8, 4, 4, device=device) for _ in range(3)]
        shapes_seen.append([tuple(x.shape) for x in xs])
        return xs

    stats = measure_latency(op, inputs=make_inputs, warmup=1, runs=3)
    assert shapes_seen == [[(5, 8, 4, 4)] * 3]
    assert stats.batch_size == 5 and stats.input_shape == (5, 8, 4, 4)


def test_thread_clock_measures_work_and_needs_one_thread() -> None:
    short, long = MatmulChain(64, 5), MatmulChain(64, 20)
    options = {"warmup": 1, "runs": 5, "threads": 1, "clock": "thread"}
    stats_short = measure_latency(short, (16, 64, 64), **options)
    stats_long = measure_latency(long, (16, 64, 64), **options)
    assert stats_short.clock == "thread" and "thread CPU time" in str(stats_short)
    assert stats_long.median_ms > stats_short.median_ms > 0
    with pytest.raises(ValueError, match="threads=1"):
        measure_latency(short, (16, 64, 64), runs=1, threads=2, clock="thread")
    with pytest.raises(ValueError, match="clock must be one of"):
        measure_latency(short, (16, 64, 64), runs=1, clock="sundial")


def test_measure_needs_exactly_one_input_description() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        measure_latency(nn.Identity(), warmup=0, runs=1)
    with pytest.raises(ValueError, match="exactly one"):
        measure_latency(nn.Identity(), (1, 2), inputs=torch.zeros(1, 2), runs=1)


def test_more_work_measures_slower() -> None:
    short, long = MatmulChain(64, 5), MatmulChain(64, 20)
    stats_short = measure_latency(short, (16, 64, 64), warmup=2, runs=15, threads=1)
    stats_long = measure_latency(long, (16, 64, 64), warmup=2, runs=15, threads=1)
    assert stats_long.median_ms > stats_short.median_ms


def test_an_op_applied_four_times_measures_slower_than_once() -> None:
    op = create_op("concat", 16, 2)

    def make_inputs(device: torch.device) -> list[torch.Tensor]:
        return [torch.randn(8, 16, 16, 16, device=device) for _ in range(2)]

    once = measure_latency(RepeatedOp(op, 1), inputs=make_inputs, warmup=2, runs=15, threads=1)
    four = measure_latency(RepeatedOp(op, 4), inputs=make_inputs, warmup=2, runs=15, threads=1)
    assert four.median_ms > once.median_ms


def test_latency_errors_on_known_values() -> None:
    errors = latency_errors([11.0, 19.0, 30.0, 50.0], [10.0, 20.0, 30.0, 40.0])
    # absolute % errors: 10, 5, 0, 25
    assert errors["median_abs_pct_error"] == pytest.approx(7.5)
    assert errors["within_10pct"] == pytest.approx(0.75)
    assert errors["kendall_tau"] == pytest.approx(1.0)
    assert errors["samples"] == 4
    reversed_errors = latency_errors([4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0])
    assert reversed_errors["kendall_tau"] == pytest.approx(-1.0)


# -- the table -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_space():
    from nasfuse.spaces import load_space

    path = os.path.join(os.path.dirname(__file__), "fixtures", "tiny_hrnet.yaml")
    return load_space(path)


@pytest.fixture(scope="module")
def tiny_table(tiny_space) -> LatencyTable:
    return LatencyTable.build(tiny_space, BuildOptions(batch_size=4, **FAST))


def test_all_add_prediction_is_base_plus_add_entries(tiny_space, tiny_table) -> None:
    arch = tiny_space.uniform_arch("add")
    expected = tiny_table.base_ms + sum(tiny_table.entry(site, "add") for site in arch)
    assert tiny_table.predict(arch, calibrated=False) == pytest.approx(expected)
    assert tiny_table.predict(arch) == pytest.approx(expected)  # not calibrated yet
    # the base is what the all-add network measured, less its add entries
    assert tiny_table.reference.ops == ["add"]
    assert expected == pytest.approx(tiny_table.reference.measured_ms)


def test_prediction_adds_the_entry_difference_of_one_swapped_site(tiny_space, tiny_table) -> None:
    arch = tiny_space.uniform_arch("add")
    site = next(name for name, s in tiny_space.sites.items() if "concat" in s.ops)
    swapped = {**arch, site: "concat"}
    difference = tiny_table.entry(site, "concat") - tiny_table.entry(site, "add")
    assert tiny_table.predict(swapped) - tiny_table.predict(arch) == pytest.approx(difference)


def test_prediction_refuses_an_unknown_op_or_missing_site(tiny_space, tiny_table) -> None:
    arch = tiny_space.uniform_arch("add")
    site = next(iter(arch))
    with pytest.raises(ValueError, match="not allowed"):
        tiny_table.predict({**arch, site: "no_such_op"})
    del arch[site]
    with pytest.raises(ValueError, match="lacks"):
        tiny_table.predict(arch)


@pytest.mark.parametrize("method", ["isolated", "network"])
def test_sites_of_one_shape_share_measurements(tiny_space, monkeypatch, method) -> None:
    measured: list[str] = []

    def fake_measure(model, input_shape=None, inputs=None, warmup=0, runs=1, **options):
        value = inputs(torch.device("cpu")) if callable(inputs) else inputs
        for _ in range(warmup + runs):
            model(value)  # the network method reads the timers the calls fill
        first = value if isinstance(value, torch.Tensor) else value[0]
        measured.append("alone")
        return LatencyStats(
            1.0, 0.9, 1.1, 1.0, runs, first.shape[0], tuple(first.shape), "cpu:x", 1
        )

    def fake_ratio(model, reference, inputs=None, warmup=0, runs=1, **options):
        for _ in range(warmup + runs):
            model(inputs)
        assert not any(isinstance(m, timing_module.TimedFusion) for m in reference.modules())
        measured.append("against the reference")
        return RatioStats(1.0, 1.0, 1.0, 1.0, 1.0, runs, "cpu:x", 1)

    monkeypatch.setattr(timing_module, "measure_latency", fake_measure)
    monkeypatch.setattr(timing_module, "measure_ratio", fake_ratio)
    table = LatencyTable.build(tiny_space, BuildOptions(batch_size=2, method=method, **FAST))
    distinct: dict[tuple, set] = {}
    for site in tiny_space.sites.values():
        key = (site.channels, site.num_inputs, site.height, site.width)
        distinct.setdefault(key, set()).update(site.ops)
    expected_entries = sum(len(ops) for ops in distinct.values())
    assert len(distinct) < len(tiny_space.sites), "the fixture should repeat a site shape"
    assert table.measurement["op_entries"] == expected_entries
    if method == "isolated":
        # one measurement per (shape, op) entry plus one for the reference network
        assert len(measured) == expected_entries + 1
    else:
        # one network per op, whatever the number of sites and shapes, each timed
        # against the reference network (which has no timers)
        all_ops = {op for site in tiny_space.sites.values() for op in site.ops}
        assert len(measured) == len(all_ops) == table.measurement["measurements"]
        assert set(measured) == {"against the reference"}


def test_network_entries_account_for_the_reference_network(tiny_space, tiny_table) -> None:
    """With in-network timing the base is the add network less its timed fusion ops."""
    add_network = tiny_table.reference.networks["add"]
    assert tiny_table.base_ms == pytest.approx(add_network.measured_ms - add_network.fusion_ms)
    assert 0 < add_network.fusion_ms < add_network.measured_ms


def test_table_file_round_trip_and_refusals(tiny_space, tiny_table, tmp_path) -> None:
    path = tiny_table.save(tmp_path / "table.json")
    data = json.loads(path.read_text())
    for field in (
        "device",
        "torch",
        "batch_size",
        "input_size",
        "dtype",
        "channels_last",
        "space_hash",
    ):
        assert field in data["key"]
    loaded = LatencyTable.load(path, space=tiny_space, batch_size=4, device="cpu")
    arch = random_arch(tiny_space, random.Random(3))
    assert loaded.predict(arch) == pytest.approx(tiny_table.predict(arch))

    with pytest.raises(LatencyTableError, match=r"batch_size=4.*expected batch_size=8"):
        LatencyTable.load(path, space=tiny_space, batch_size=8)

    edited = dict(data, key=dict(data["key"], space_hash="0" * 16))
    (tmp_path / "other_space.json").write_text(json.dumps(edited))
    with pytest.raises(
        LatencyTableError, match=rf"space_hash='0{{16}}'.*expected space_hash='{tiny_space.hash}'"
    ):
        LatencyTable.load(tmp_path / "other_space.json", space=tiny_space)

    edited = dict(data, key=dict(data["key"], device="cuda:Imaginary GPU"))
    (tmp_path / "other_device.json").write_text(json.dumps(edited))
    with pytest.raises(
        LatencyTableError, match=r"device='cuda:Imaginary GPU'.*expected device='cpu:"
    ):
        LatencyTable.load(tmp_path / "other_device.json", device="cpu")

    with pytest.raises(FileNotFoundError, match="latency build"):
        LatencyTable.load(tmp_path / "missing.json")


@pytest.mark.parametrize(
    ("scale", "offset", "form"),
    [(1.0, 7.0, "offset"), (1.5, 0.0, "scale"), (1.5, 3.0, "scale+offset")],
)
def test_calibration_recovers_a_known_correction(
    tiny_space, tiny_table, scale, offset, form
) -> None:
    table = copy.deepcopy(tiny_table)
    table.entries = {
        key: {op: 1.0 + i for i, op in enumerate(ops)} for key, ops in table.entries.items()
    }
    archs = table.sample_archs(tiny_space, 6, random.Random(0))
    measured = [scale * table.predict_raw(arch) + offset for arch in archs]
    record = table.fit_calibration(archs, measured)
    assert record["form"] == form
    assert (record["scale"], record["offset_ms"]) == (pytest.approx(scale), pytest.approx(offset))
    assert record["after"]["median_abs_pct_error"] == pytest.approx(0.0, abs=1e-9)
    arch = tiny_space.uniform_arch("add")
    assert table.predict(arch) == pytest.approx(scale * table.predict_raw(arch) + offset)
    with pytest.raises(ValueError, match="used for calibration"):
        table.score(archs[:2], measured[:2])


def test_calibration_keeps_the_raw_table_when_no_fit_predicts_held_out_archs_better(
    tiny_space, tiny_table
) -> None:
    table = copy.deepcopy(tiny_table)
    table.entries = {
        key: {op: 1.0 + i for i, op in enumerate(ops)} for key, ops in table.entries.items()
    }
    archs = table.sample_archs(tiny_space, 6, random.Random(0))
    raw = [table.predict_raw(arch) for arch in archs]
    # Close to the table, but one measurement hit by load: every fitted form would
    # extrapolate from the outlier (once: scale 11.3, offset -248 ms, negative latencies).
    factors = [0.95, 1.0, 1.04, 0.97, 2.3, 1.02]
    measured = [value * factor for value, factor in zip(raw, factors, strict=True)]
    record = table.fit_calibration(archs, measured)
    assert record["form"] == "none"
    assert (record["scale"], record["offset_ms"]) == (1.0, 0.0)
    assert all(table.predict(arch) > 0 for arch in archs)


def test_calibration_and_validation_use_different_archs(tiny_space, tiny_table) -> None:
    table = copy.deepcopy(tiny_table)
    record = table.calibrate(tiny_space, samples=4, seed=0, progress=False)
    assert set(record) >= {"scale", "offset_ms", "before", "after"}
    assert record["after"]["samples"] == 4
    arch = tiny_space.uniform_arch("add")
    assert table.predict(arch) == pytest.approx(
        record["scale"] * table.predict_raw(arch) + record["offset_ms"]
    )
    result = table.validate(tiny_space, samples=4, seed=0, progress=False)
    assert result["samples"] == 4 and result["device"] == table.device
    # the same seed would draw the calibration archs again; validation skips them
    calibration_archs = set(record["archs"])  # one line each: the ops in site order
    validation_archs = set(result["archs"])
    decoded = table.decode_arch(result["archs"][0])
    assert table.encode_arch(decoded) == result["archs"][0] and set(decoded) == set(table.sites)
    assert len(validation_archs) == 4
    assert not calibration_archs & validation_archs
    assert tiny_table.calibration is None, "the fixture table was not touched"


def test_cli_build_and_validate_json(tiny_space, tmp_path, capsys) -> None:
    space_file = os.path.join(os.path.dirname(__file__), "fixtures", "tiny_hrnet.yaml")
    out = tmp_path / "t.json"
    common = ["--space", space_file, "--batch-size", "2", "--threads", "1"]
    assert (
        main(
            [
                "latency",
                "build",
                *common,
                "--out",
                str(out),
                "--runs",
                "2",
                "--rounds",
                "1",
                "--network-runs",
                "2",
                "--calibrate",
                "3",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "cpu:" in printed and str(out) in printed
    assert (
        main(["latency", "validate", *common, "--table", str(out), "--samples", "3", "--json"]) == 0
    )
    result = json.loads(capsys.readouterr().out)
    keys = {"device", "median_abs_pct_error", "within_10pct", "kendall_tau", "samples"}
    assert keys <= set(result) and result["clock"] == "wall"
    assert result["samples"] == 3 and result["device"].startswith("cpu:")
    assert json.loads(out.read_text())["validation"]["samples"] == 3


def test_cli_refuses_a_table_of_another_batch_size(tiny_space, tmp_path, capsys) -> None:
    space_file = os.path.join(os.path.dirname(__file__), "fixtures", "tiny_hrnet.yaml")
    table = LatencyTable.build(tiny_space, BuildOptions(batch_size=2, **FAST))
    path = table.save(tmp_path / "t.json")
    code = main(
        [
            "latency",
            "validate",
            "--space",
            space_file,
            "--batch-size",
            "3",
            "--threads",
            "1",
            "--table",
            str(path),
            "--samples",
            "2",
        ]
    )
    assert code == 2
    assert "expected batch_size=3" in capsys.readouterr().err


def test_default_table_path_names_space_hash_and_batch(tiny_space) -> None:
    path = default_table_path(tiny_space, 16)
    assert path.name == f"{tiny_space.name}-{tiny_space.hash}-b16.json"


def test_cli_measure_prints_stats_and_the_table_prediction(
    tiny_space, tiny_table, tmp_path, capsys
):
    from nasfuse.arch import save_arch

    arch = random_arch(tiny_space, random.Random(4))
    save_arch(arch, tmp_path / "arch.yaml", tiny_space)
    table_path = tiny_table.save(tmp_path / "t.json")
    args = ["latency", "measure", str(tmp_path / "arch.yaml"), "--batch-size", "4"]
    assert main([*args, "--runs", "3", "--warmup", "1", "--table", str(table_path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["predicted_ms"] == pytest.approx(tiny_table.predict(arch))
    assert result["threads"] == tiny_table.threads and result["device"] == tiny_table.device
    assert 0 < result["p10_ms"] <= result["median_ms"] <= result["p90_ms"]
    # the tiny table has drift control: the arch is also timed against its reference
    assert tiny_table.measurement["drift_reference_ms"] is not None
    assert result["at_table_speed_ms"] > 0


def test_corrected_entries_reproduce_each_per_op_network(tiny_space) -> None:
    """Each op's entries are scaled so its network's end-to-end time is predicted exactly."""
    table = LatencyTable.build(tiny_space, BuildOptions(batch_size=4, correct_entries=True, **FAST))
    networks = table.reference.networks
    assert networks["add"].correction is None  # the reference keeps its timed entries
    for op, network in networks.items():
        if network.correction is None:
            continue  # a factor taken for noise is not applied
        arch = {name: op if op in site.ops else "add" for name, site in tiny_space.sites.items()}
        assert table.predict_raw(arch) == pytest.approx(network.measured_ms)
    with pytest.raises(ValueError, match="corrected already"):
        table.correct_entries()


class _FakeClock:
    """A clock that only the fake models below advance; the machine slows as it runs."""

    def __init__(self) -> None:
        self.ns = 0
        self.speed = 1.0

    def perf_counter_ns(self) -> int:
        return self.ns


class _Costs(nn.Module):
    """Takes ``ms`` on the fake clock, times its speed, which then drops by 5%."""

    def __init__(self, clock: _FakeClock, ms: float) -> None:
        super().__init__()
        self.clock, self.ms = clock, ms

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.clock.ns += round(self.ms * 1e6 * self.clock.speed)
        self.clock.speed += 0.05
        return x


def test_measure_ratio_takes_out_a_steady_drift(monkeypatch) -> None:
    clock = _FakeClock()
    monkeypatch.setattr(passes_module, "time", clock)
    model, reference = _Costs(clock, 3.0), _Costs(clock, 2.0)
    alone = measure_latency(model, inputs=torch.zeros(1, 1), warmup=1, runs=6, threads=1)
    assert alone.p90_ms > 1.1 * alone.p10_ms  # the times drift...
    stats = measure_ratio(model, reference, inputs=torch.zeros(1, 1), warmup=1, runs=6, threads=1)
    # ...and every ratio to the mean of its neighbouring reference runs is exact
    assert stats.ratio == pytest.approx(1.5, rel=1e-6)
    assert stats.p10 == pytest.approx(1.5, rel=1e-6) and stats.p90 == pytest.approx(1.5, rel=1e-6)
    assert stats.model_ms > 3.0 and stats.reference_ms > 2.0


def test_tables_take_out_drift_with_the_reference_network(tiny_space, monkeypatch) -> None:
    # Fake timings: every model "takes" its parameter count in µs, times a machine speed
    # that slows by 5% with every measurement; the ratio to the reference is exact.
    calls = 0

    def params(model: nn.Module) -> float:
        return sum(p.numel() for p in model.parameters()) / 1000

    def speed() -> float:
        nonlocal calls
        calls += 1
        return 1 + 0.05 * calls

    def fake_measure(model, inputs=None, runs=1, **options):
        ms = params(model) * speed()
        return LatencyStats(ms, ms, ms, ms, runs, 2, (2,), "cpu:x", 1)

    def fake_ratio(model, reference, inputs=None, runs=1, **options):
        now = speed()
        ratio = params(model) / params(reference)
        model_ms, reference_ms = params(model) * now, params(reference) * now
        return RatioStats(ratio, ratio, ratio, model_ms, reference_ms, runs, "cpu:x", 1)

    monkeypatch.setattr(timing_module, "measure_latency", fake_measure)
    monkeypatch.setattr(timing_module, "measure_ratio", fake_ratio)
    archs = [random_arch(tiny_space, random.Random(seed)) for seed in range(4)]
    reference = tiny_space.uniform_arch("add")

    def arch_params(arch) -> float:
        return params(build_model(tiny_space, arch, num_classes=10))

    options = {"batch_size": 2, "threads": 1, "warmup": 0, "runs": 1, "rounds": 2}
    corrected = measure_archs(
        tiny_space, archs, reference_arch=reference, reference_ms=7.0, **options
    )
    expected = [7.0 * arch_params(arch) / arch_params(reference) for arch in archs]
    assert corrected == pytest.approx(expected, rel=1e-9)

    plain = measure_archs(tiny_space, archs, **options)
    drift = [ms / arch_params(arch) for ms, arch in zip(plain, archs, strict=True)]
    assert drift == sorted(drift) and drift[-1] > 1.05 * drift[0]
