"""From a study to files: ``pareto.csv``, one arch YAML per front point, ``best.yaml``, ``report.md``.

Everything is read back from the Optuna study, so a finished (or interrupted) run can be
exported again with another pick rule: ``nasfuse export --run DIR --pick max-acc``.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nasfuse.files import atomic_write_text, read_yaml_mapping
from nasfuse.search._pareto import hypervolume, parse_pick, pick_index
from nasfuse.search._study import (
    TrialRecord,
    front_records,
    load_search_study,
    trial_records,
)
from nasfuse.search._tensorboard import op_count_markdown, write_verdict
from nasfuse.search._verdict import Verdict, build_verdict, verdict_markdown

__all__ = [
    "ExportResult",
    "export_run",
    "export_search",
    "describe_pick",
    "CONFIG_FILE",
    "PARETO_CSV",
    "PARETO_DIR",
    "BEST_FILE",
    "REPORT_FILE",
]

CONFIG_FILE = "search_config.yaml"
PARETO_CSV = "pareto.csv"
PARETO_DIR = "pareto"
BEST_FILE = "best.yaml"
REPORT_FILE = "report.md"


def describe_pick(pick: str) -> str:
    """The rule in words, for report.md."""
    rule, bound = parse_pick(pick)
    if rule == "knee":
        return (
            "knee of the front: accuracy and latency normalised to [0, 1] over the front, "
            "the point farthest above the line from the fastest to the most accurate point "
            "(max of accuracy_norm - latency_norm; ties: higher accuracy)"
        )
    if rule == "max-acc":
        return "highest accuracy on the front (ties: lower latency)"
    return f"highest accuracy with latency <= {bound:g} ms (ties: lower latency)"


def _run_settings(run_dir: Path) -> dict[str, Any]:
    path = run_dir / CONFIG_FILE
    if path.is_file():
        return read_yaml_mapping(path, "the saved search settings", allow_empty=True)
    return {}


def _arch_file_name(rank: int, record: TrialRecord) -> str:
    return f"{rank:02d}_trial{record.number:04d}_{record.arch_hash}.yaml"


def _metrics(record: TrialRecord, device: str, latency_source: str) -> dict[str, Any]:
    return {
        "accuracy": record.accuracy,
        "latency_ms": record.latency_ms,
        "params": record.params,
        "flops": record.flops,
        "device": device,
        "latency_source": latency_source,
        "trial": record.number,
    }


@dataclass
class ExportResult:
    """What :func:`export_search` wrote, and the verdict it found."""

    best_path: Path
    report_path: Path
    verdict: Verdict


def export_run(run_dir: str | Path, pick: str = "knee", out: str | Path | None = None) -> Path:
    """Write the run's Pareto front and its pick; see :func:`export_search`.

    Returns:
        The path of the picked architecture file.
    """
    return export_search(run_dir, pick, out).best_path


def export_search(
    run_dir: str | Path,
    pick: str = "knee",
    out: str | Path | None = None,
    tensorboard: bool = True,
) -> ExportResult:
    """Write the run's Pareto front, its pick and the verdict on fusion.

    Args:
        run_dir: a search run directory (with ``study.db``, or a ``search_config.yaml``
            naming the storage).
        pick: ``knee``, ``max-acc`` or ``max-latency=MS`` (see :func:`describe_pick`).
        out: where to write the picked architecture; default ``<run_dir>/best.yaml``.
        tensorboard: also write the verdict and the scatter with the pick to the run's
            TensorBoard.

    Returns:
        :class:`ExportResult`.

    Raises:
        FileNotFoundError: no study in ``run_dir``.
        ValueError: no evaluated feasible trial yet, or no architecture fits the rule.
    """
    from nasfuse.arch import save_arch
    from nasfuse.spaces import load_space

    run_dir = Path(run_dir)
    parse_pick(pick)
    settings = _run_settings(run_dir)
    study = load_search_study(run_dir, settings.get("storage"), settings.get("study_name"))
    attrs = study.user_attrs
    data = dict(attrs.get("data") or {})  # studies from before it was recorded have none
    records = trial_records(study)
    front = front_records(records)
    if not front:
        raise ValueError(
            f"{run_dir}: the study has no evaluated feasible trial yet "
            f"({len(records)} trials); nothing to export"
        )
    if "space" not in attrs:
        raise ValueError(f"{run_dir}: the study does not record its search space")
    space = load_space(attrs["space"], attrs.get("space_options") or {})
    if attrs.get("space_hash"):  # studies from before it was recorded have none
        space.check_hash(attrs, "the search's study", run_dir, "restore the space file it ran on")
    device = str(attrs.get("device", "unknown"))
    latency_source = str(attrs.get("latency_source", "lut"))
    sites = {name: list(site.ops) for name, site in space.sites.items()}

    pareto_dir = run_dir / PARETO_DIR
    pareto_dir.mkdir(parents=True, exist_ok=True)
    for stale in pareto_dir.glob("*.yaml"):
        stale.unlink()
    rows = []
    for rank, record in enumerate(front):
        name = _arch_file_name(rank, record)
        save_arch(
            record.arch, pareto_dir / name, space, _metrics(record, device, latency_source), **data
        )
        rows.append((rank, record, f"{PARETO_DIR}/{name}"))

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        ["rank", "trial", "arch_hash", "accuracy", "latency_ms", "params", "flops", "file", *sites]
    )
    for rank, record, name in rows:
        writer.writerow(
            [
                rank,
                record.number,
                record.arch_hash,
                f"{record.accuracy:.6f}",
                f"{record.latency_ms:.6f}",
                record.params,
                record.flops,
                name,
                *(record.arch[s] for s in sites),
            ]
        )
    atomic_write_text(run_dir / PARETO_CSV, buffer.getvalue())

    points = [(r.accuracy, r.latency_ms) for r in front]
    best = front[pick_index(points, pick)]  # type: ignore[arg-type]
    best_path = Path(out) if out is not None else run_dir / BEST_FILE
    best_metrics = {**_metrics(best, device, latency_source), "pick": pick}
    save_arch(best.arch, best_path, space, best_metrics, **data)

    verdict = build_verdict(records, front, best)
    verdict_section = verdict_markdown(verdict, sites)
    statuses = Counter(r.status for r in records)
    reference = float(attrs.get("reference_latency_ms", max(p[1] for p in points) * 1.1))
    evaluated_points = [(r.accuracy, r.latency_ms) for r in records if r.on_objectives]
    lines = [
        f"# Search report: {space.name}",
        "",
        f"- space: `{attrs['space']}` options {dict(attrs.get('space_options') or {})}, "
        f"hash {space.hash}, {len(sites)} sites",
        f"- dataset: {settings.get('dataset', attrs.get('dataset', '?'))}; "
        f"accuracy: validation top-1 with inherited supernet weights after BN recalibration",
        f"- latency: {latency_source} on `{device}`",
        f"- sampler: {settings.get('sampler', attrs.get('sampler', '?'))}; trials: "
        + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())),
        f"- hypervolume: {hypervolume(evaluated_points, reference):.4f} "
        f"(reference: accuracy 0, latency {reference:.3f} ms = the slowest architecture "
        f"by the table; normalised by that box)",
        f"- study: `{study.study_name}` in `{settings.get('storage') or 'study.db'}`; "
        f"resolved config: `{CONFIG_FILE}`",
        "",
        "## Pick",
        "",
        f"Rule `{pick}`: {describe_pick(pick)}.",
        "",
        f"`{best_path.name}`: trial {best.number}, accuracy {best.accuracy:.4f}, "
        f"latency {best.latency_ms:.3f} ms, {best.params} params, {best.flops} FLOPs.",
        "",
        *verdict_section,
        f"## Pareto front ({len(front)} architectures)",
        "",
        "| rank | trial | accuracy | latency (ms) | params | MFLOPs | file |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    for rank, record, name in rows:
        mflops = f"{record.flops / 1e6:.2f}" if record.flops is not None else ""
        marker = f" ({record.baseline})" if record.baseline else ""
        marker += " **best**" if record is best else ""
        lines.append(
            f"| {rank} | {record.number} | {record.accuracy:.4f} | {record.latency_ms:.3f} | "
            f"{record.params} | {mflops} | `{name}`{marker} |"
        )
    lines += [
        "",
        "## Op choices across the front (count per site)",
        "",
        op_count_markdown(front, sites),
        "",
    ]
    atomic_write_text(run_dir / REPORT_FILE, "\n".join(lines))
    if tensorboard:
        write_verdict(run_dir, records, best, "\n".join(verdict_section))
    return ExportResult(best_path, run_dir / REPORT_FILE, verdict)
