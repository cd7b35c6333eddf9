"""Checking a latency table against end-to-end measurements: calibration and validation.

:class:`TableChecks` holds the methods of :class:`~nasfuse.latency.table.LatencyTable`
that measure architectures the way the table was built and compare the measurements with
its predictions: :meth:`~TableChecks.calibrate` fits a correction to them,
:meth:`~TableChecks.validate` reports the errors on a fresh sample. The statistics are in
:mod:`~nasfuse.latency.calibration`.
"""

from __future__ import annotations

import datetime
import random
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from nasfuse.arch import arch_hash
from nasfuse.latency.build import BuildOptions
from nasfuse.latency.calibration import calibration_record, latency_errors
from nasfuse.latency.entries import TableSite, add_network
from nasfuse.latency.sampling import sample_archs
from nasfuse.latency.table_file import TableKey, refuse_mismatch, space_key
from nasfuse.latency.timing import (
    DEFAULT_RUNS,
    Measurements,
    SpaceNetworks,
    Timing,
    measure_networks,
)

__all__ = ["TableChecks", "measurement_timing"]


def measurement_timing(
    key: TableKey,
    measurement: Mapping[str, Any],
    runs: int | None = None,
    rounds: int | None = None,
    progress: bool = True,
) -> Timing:
    """How a table with ``key`` and ``measurement`` record measures networks end to end.

    Same device, threads, clock and memory format as the table; its warm-up,
    ``network_runs`` and ``rounds`` unless ``runs`` and ``rounds`` are given (for a table
    that does not record them, the defaults of :class:`BuildOptions`).
    """
    device = str(key.device)
    return Timing(
        device=torch.device("cuda") if device.startswith("cuda") else torch.device("cpu"),
        threads=int(key.threads),
        warmup=int(measurement.get("warmup", DEFAULT_RUNS.warmup)),
        runs=runs
        if runs is not None
        else int(measurement.get("network_runs", DEFAULT_RUNS.network_runs)),
        rounds=rounds
        if rounds is not None
        else int(measurement.get("rounds", DEFAULT_RUNS.rounds)),
        channels_last=bool(key.channels_last),
        clock=str(key.clock or "wall"),
        progress=progress,
    )


class TableChecks:
    """Calibration and validation of a :class:`~nasfuse.latency.table.LatencyTable`.

    A base class of the table: it uses the table's key, records and predictions.
    """

    if TYPE_CHECKING:
        key: TableKey
        space_info: dict[str, Any]
        measurement: dict[str, Any]
        sites: dict[str, TableSite]
        calibration: dict[str, Any] | None
        validation: dict[str, Any] | None
        device: str
        clock: str
        batch_size: int

        def predict(self, arch: Mapping[str, str], calibrated: bool = True) -> float: ...
        def predict_raw(self, arch: Mapping[str, str]) -> float: ...
        def encode_arch(self, arch: Mapping[str, str]) -> str: ...
        def decode_arch(self, line: str) -> dict[str, str]: ...

    def sample_archs(
        self,
        space: Any,
        samples: int,
        rng: random.Random,
        exclude: Sequence[Mapping[str, str]] = (),
    ) -> list[dict[str, str]]:
        """``samples`` distinct random architectures of ``space``, none of ``exclude``."""
        self._check_space(space)
        return sample_archs(space, samples, rng, exclude)

    def measure(
        self,
        space: Any,
        archs: Sequence[Mapping[str, str]],
        runs: int | None = None,
        rounds: int | None = None,
        progress: bool = True,
        desc: str = "measure archs",
    ) -> Measurements:
        """End-to-end latency of ``archs``, measured the way this table was built.

        Same device, threads, clock, batch size, dtype and memory format; ``runs`` and
        ``rounds`` default to the table's ``network_runs`` and ``rounds`` (for a table
        that does not record them, to the defaults of :class:`BuildOptions`). A table built
        with drift control times each architecture against its reference network and
        gives the latencies at the speed the reference had while the table was built.

        Returns:
            :class:`Measurements`: ``.ms`` holds the latencies (ms), ``.raw_ms`` the
            times without drift correction.
        """
        self._check_space(space)
        recorded = self.measurement
        timing = measurement_timing(self.key, recorded, runs, rounds, progress)
        networks = SpaceNetworks(
            space,
            self.batch_size,
            getattr(torch, self.key.dtype),
            int(recorded.get("num_classes", BuildOptions.num_classes)),
        )
        drift_reference_ms = recorded.get("drift_reference_ms")
        reference = None if drift_reference_ms is None else add_network(self.sites)
        return measure_networks(networks, archs, timing, desc, reference, drift_reference_ms)

    def calibration_archs(self) -> list[dict[str, str]]:
        """The architectures the table was calibrated on (none before calibration)."""
        return [self.decode_arch(line) for line in (self.calibration or {}).get("archs", [])]

    def calibrate(
        self,
        space: Any,
        samples: int = 20,
        seed: int = 0,
        rng: random.Random | None = None,
        runs: int | None = None,
        rounds: int | None = None,
        progress: bool = True,
    ) -> dict[str, Any]:
        """Measure ``samples`` random architectures end to end and :meth:`fit_calibration`.

        Returns:
            The calibration record (also stored in the table).
        """
        if samples < 2:
            raise ValueError(f"calibration needs at least 2 architectures, got {samples}")
        archs = self.sample_archs(space, samples, rng if rng is not None else random.Random(seed))
        measured = self.measure(space, archs, runs, rounds, progress, "calibrate").ms
        return self.fit_calibration(archs, measured, seed=seed if rng is None else None)

    def fit_calibration(
        self,
        archs: Sequence[Mapping[str, str]],
        measured: Sequence[float],
        seed: int | None = None,
    ) -> dict[str, Any]:
        """Fit ``measured ~ scale * raw + offset`` by least squares.

        Three forms are fitted: offset only (scale 1), scale only (offset 0), and both.
        The one with the smallest leave-one-out median absolute % error on this sample is
        kept, so that a small noisy sample cannot produce a wild scale; the raw table
        ("none") competes too, with its plain error, and wins when no fit predicts held-out
        samples better (a noisy sample once gave scale 11.3, offset -248 ms and negative
        predictions). The errors before and after (on this same sample), the leave-one-out
        errors, the measurements and the architectures (so that :meth:`validate` can
        exclude them) are recorded in :attr:`calibration`, which is returned (see
        :func:`~nasfuse.latency.calibration.calibration_record`).
        """
        raw = [self.predict_raw(arch) for arch in archs]
        lines = [self.encode_arch(arch) for arch in archs]
        self.calibration = calibration_record(raw, measured, lines, seed)
        return self.calibration

    def validate(
        self,
        space: Any,
        samples: int = 30,
        seed: int = 1,
        runs: int | None = None,
        rounds: int | None = None,
        progress: bool = True,
    ) -> dict[str, Any]:
        """Errors of :meth:`predict` on ``samples`` fresh random architectures.

        Architectures used for calibration are never drawn. See :meth:`score`.
        """
        archs = self.sample_archs(
            space, samples, random.Random(seed), exclude=self.calibration_archs()
        )
        measured = self.measure(space, archs, runs, rounds, progress, "validate").ms
        return self.score(archs, measured, seed=seed)

    def score(
        self,
        archs: Sequence[Mapping[str, str]],
        measured: Sequence[float],
        seed: int | None = None,
    ) -> dict[str, Any]:
        """Errors of :meth:`predict` against ``measured`` ms, stored in :attr:`validation`.

        Raises ``ValueError`` if one of ``archs`` was used for calibration: validation
        figures come from architectures the calibration never saw.
        """
        calibrated = {arch_hash(arch) for arch in self.calibration_archs()}
        if any(arch_hash(arch) in calibrated for arch in archs):
            raise ValueError("an architecture to validate on was used for calibration")
        predicted = [self.predict(arch) for arch in archs]
        raw = [self.predict_raw(arch) for arch in archs]
        result = {
            "device": self.device,
            "clock": self.clock,
            "seed": seed,
            **latency_errors(predicted, measured),
            "raw": latency_errors(raw, measured),
            "calibrated": self.calibration is not None,
            "predicted_ms": predicted,
            "measured_ms": [float(value) for value in measured],
            "archs": [self.encode_arch(arch) for arch in archs],
            "validated_at": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"
            ),
        }
        self.validation = result
        return result

    def _check_space(self, space: Any) -> None:
        refuse_mismatch(self.key, space_key(space), "(in memory)", self.space_info)
