"""The latency table's pieces on their own: calibration statistics, the key, run counts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import nasfuse.latency.checking as checking_module
from nasfuse.latency import BuildOptions, LatencyTable, TableKey
from nasfuse.latency.calibration import (
    best_form,
    calibration_record,
    fit_form,
    leave_one_out_error,
)
from nasfuse.latency.entries import ShapeKey
from nasfuse.latency.table_file import KeyMismatch, expected_key
from nasfuse.latency.timing import DEFAULT_RUNS

RAW = np.array([10.0, 12.0, 15.0, 20.0, 26.0])


@pytest.mark.parametrize(
    ("form", "scale", "offset"),
    [("none", 1.0, 0.0), ("offset", 1.0, 4.0), ("scale", 1.25, 0.0), ("scale+offset", 1.5, -2.0)],
)
def test_each_form_recovers_its_own_exact_correction(form, scale, offset) -> None:
    meas = scale * RAW + offset
    assert fit_form(form, RAW, meas) == (pytest.approx(scale), pytest.approx(offset))
    assert leave_one_out_error(form, RAW, meas) == pytest.approx(0.0, abs=1e-9)
    assert best_form(RAW, meas)[0] == form


def test_two_points_are_no_evidence_for_a_line_and_a_reversing_fit_no_correction() -> None:
    assert leave_one_out_error("scale+offset", RAW[:3], RAW[:3]) == float("inf")
    assert leave_one_out_error("scale", RAW, -RAW) == float("inf")


def test_the_calibration_record_names_its_form_and_leaves_out_infinite_errors() -> None:
    meas = 1.25 * RAW[:2]
    record = calibration_record(list(RAW[:2]), list(meas), ["a", "b"], seed=3)
    assert record["form"] == "scale" and record["scale"] == pytest.approx(1.25)
    assert record["leave_one_out_median_abs_pct_error"]["scale+offset"] is None
    assert (record["samples"], record["seed"], record["archs"]) == (2, 3, ["a", "b"])
    with pytest.raises(ValueError, match="at least 2"):
        calibration_record([1.0], [1.0], ["a"], seed=None)


def test_a_shape_key_reads_back_what_it_writes() -> None:
    key = ShapeKey(40, 2, 16, 8)
    assert str(key) == "C40_K2_H16_W8" and ShapeKey.parse(str(key)) == key
    with pytest.raises(ValueError, match="not a site shape"):
        ShapeKey.parse("40_2_16_8")


def _key(**changes) -> TableKey:
    fields = {
        "device": "cpu:x (1 thread)",
        "torch": torch.__version__,
        "batch_size": 32,
        "input_size": 16,
        "in_chans": 3,
        "dtype": "float32",
        "channels_last": False,
        "threads": 1,
        "clock": "wall",
        "space_hash": "abc",
    }
    return TableKey(**{**fields, **changes})


def test_the_key_lists_its_mismatches_in_refusal_order_and_checks_only_what_is_asked() -> None:
    key = _key()
    assert key.mismatches({"threads": 1, "torch": torch.__version__}) == []
    assert key.mismatches({"torch": "0.0", "threads": 2, "batch_size": 32}) == [
        KeyMismatch("threads", 1, 2),
        KeyMismatch("torch", torch.__version__, "0.0"),
    ]
    assert expected_key(1) == {"torch": torch.__version__}
    assert expected_key(1, batch_size=8, dtype=torch.float16, clock="thread") == {
        "torch": torch.__version__,
        "batch_size": 8,
        "dtype": "float16",
        "clock": "thread",
    }


def test_a_key_without_a_clock_stays_without_one() -> None:
    data = _key().to_dict()
    del data["clock"]
    key = TableKey.from_dict(data)
    assert key.clock is None and key.to_dict() == data
    assert key.mismatches({"clock": "wall"}) == [KeyMismatch("clock", None, "wall")]


def test_build_and_measure_share_one_default_of_run_counts(monkeypatch) -> None:
    options = BuildOptions()
    counts = (options.warmup, options.runs, options.rounds, options.network_runs)
    assert counts == (
        DEFAULT_RUNS.warmup,
        DEFAULT_RUNS.runs,
        DEFAULT_RUNS.rounds,
        DEFAULT_RUNS.network_runs,
    )
    # A table that does not record its run counts is measured with the same defaults.
    path = Path(__file__).parent / "fixtures" / "latency" / "tiny_hrnet_isolated.json"
    data = json.loads(path.read_text())
    for field in ("warmup", "rounds", "network_runs"):
        del data["measurement"][field]
    table = LatencyTable.from_dict(data)
    seen = []
    monkeypatch.setattr(
        checking_module,
        "measure_networks",
        lambda networks, archs, timing, *rest: seen.append(timing),
    )
    monkeypatch.setattr(table, "_check_space", lambda space: None)
    table.measure(object(), [], progress=False)
    (timing,) = seen
    assert (timing.warmup, timing.rounds, timing.runs) == (
        DEFAULT_RUNS.warmup,
        DEFAULT_RUNS.rounds,
        DEFAULT_RUNS.network_runs,
    )


def test_timing_pauses_the_collector_after_freeing_young_garbage_only() -> None:
    import gc
    import weakref

    from nasfuse.latency.measure import measure_latency
    from nasfuse.latency.passes import measuring, pause_collector

    class Node:
        pass

    model = torch.nn.Linear(4, 4)
    thresholds = gc.get_threshold()
    gc.set_threshold(10**6, 10**6, 10**6)  # count only the collections the code asks for
    try:
        full_collections = gc.get_stats()[2]["collections"]
        with measuring([model], torch.device("cpu"), 1, False, "wall"):
            cycle = Node()
            cycle.self = cycle
            alive = weakref.ref(cycle)
            del cycle
            pause_collector()
            assert alive() is None  # the young cycle was collected
            assert not gc.isenabled()  # and nothing collects while timing
        assert gc.isenabled()  # measuring restores it
        measure_latency(model, (1, 4), runs=2, warmup=1)
        # Neither the pause nor a measurement walked the whole heap (the oldest generation).
        assert gc.get_stats()[2]["collections"] == full_collections
    finally:
        gc.set_threshold(*thresholds)
