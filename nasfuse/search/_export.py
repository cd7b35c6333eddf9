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
    if rule == "within-noise":
        return (
            "the fastest front point whose accuracy is within the noise of the highest "
            "(two binomial standard errors of the difference on the validation images, at "
            "least one image; ties: higher accuracy)"
        )
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


@dataclass
class _ExportedRun:
    """What every output of an export reads: the study's records and the space they ran on.

    Loaded once by :func:`_load_exported_run`, so the writers below agree on one reading of
    the study (a search still running may add trials between two reads).
    """

    run_dir: Path
    settings: dict[str, Any]
    study_name: str
    attrs: dict[str, Any]
    data: dict[str, Any]
    records: list[TrialRecord]
    front: list[TrialRecord]
    space: Any
    device: str
    latency_source: str
    sites: dict[str, list[str]]


# A row of the Pareto front: (rank, record, the arch file's path relative to the run).
_FrontRow = tuple[int, TrialRecord, str]


def _load_exported_run(run_dir: Path) -> _ExportedRun:
    """Read the run's study and space; refuse a run with nothing to export."""
    from nasfuse.spaces import load_space

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
    return _ExportedRun(
        run_dir=run_dir,
        settings=settings,
        study_name=study.study_name,
        attrs=attrs,
        data=data,
        records=records,
        front=front,
        space=space,
        device=str(attrs.get("device", "unknown")),
        latency_source=str(attrs.get("latency_source", "lut")),
        sites={name: list(site.ops) for name, site in space.sites.items()},
    )


def _write_arch_files(run: _ExportedRun) -> list[_FrontRow]:
    """One arch YAML per front point in ``<run>/pareto/``, replacing an earlier export's."""
    from nasfuse.arch import save_arch

    pareto_dir = run.run_dir / PARETO_DIR
    pareto_dir.mkdir(parents=True, exist_ok=True)
    # A smaller front than last time's must not leave the old files looking current.
    for stale in pareto_dir.glob("*.yaml"):
        stale.unlink()
    rows = []
    for rank, record in enumerate(run.front):
        name = _arch_file_name(rank, record)
        metrics = _metrics(record, run.device, run.latency_source)
        save_arch(record.arch, pareto_dir / name, run.space, metrics, **run.data)
        rows.append((rank, record, f"{PARETO_DIR}/{name}"))
    return rows


def _write_pareto_csv(run: _ExportedRun, rows: list[_FrontRow]) -> None:
    """``pareto.csv``: one line per front point, its metrics, its file and its op per site."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        [
            "rank",
            "trial",
            "arch_hash",
            "accuracy",
            "latency_ms",
            "params",
            "flops",
            "file",
            *run.sites,
        ]
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
                *(record.arch[s] for s in run.sites),
            ]
        )
    atomic_write_text(run.run_dir / PARETO_CSV, buffer.getvalue())


def _write_best(run: _ExportedRun, pick: str, out: str | Path | None) -> tuple[TrialRecord, Path]:
    """Pick a front point by the rule and save its architecture to ``out`` (or ``best.yaml``).

    Returns:
        The picked record and the path it was saved to.
    """
    from nasfuse.arch import save_arch

    points = [(r.accuracy, r.latency_ms) for r in run.front]
    samples = max((r.eval_samples or 0 for r in run.front), default=0) or None
    best = run.front[pick_index(points, pick, samples)]  # type: ignore[arg-type]
    best_path = Path(out) if out is not None else run.run_dir / BEST_FILE
    best_metrics = {**_metrics(best, run.device, run.latency_source), "pick": pick}
    save_arch(best.arch, best_path, run.space, best_metrics, **run.data)
    return best, best_path


def _report_summary(run: _ExportedRun) -> list[str]:
    """The bullet list at the top of ``report.md``: space, data, latency, trials, hypervolume."""
    attrs, settings = run.attrs, run.settings
    statuses = Counter(r.status for r in run.records)
    reference = float(attrs.get("reference_latency_ms", max(r.latency_ms for r in run.front) * 1.1))
    evaluated_points = [(r.accuracy, r.latency_ms) for r in run.records if r.on_objectives]
    return [
        f"- space: `{attrs['space']}` options {dict(attrs.get('space_options') or {})}, "
        f"hash {run.space.hash}, {len(run.sites)} sites",
        f"- dataset: {settings.get('dataset', attrs.get('dataset', '?'))}; "
        f"accuracy: validation top-1 with inherited supernet weights after BN recalibration",
        f"- latency: {run.latency_source} on `{run.device}`",
        f"- sampler: {settings.get('sampler', attrs.get('sampler', '?'))}; trials: "
        + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())),
        f"- hypervolume: {hypervolume(evaluated_points, reference):.4f} "
        f"(reference: accuracy 0, latency {reference:.3f} ms = the slowest architecture "
        f"by the table; normalised by that box)",
        f"- study: `{run.study_name}` in `{settings.get('storage') or 'study.db'}`; "
        f"resolved config: `{CONFIG_FILE}`",
    ]


def _write_report(
    run: _ExportedRun,
    rows: list[_FrontRow],
    pick: str,
    best: TrialRecord,
    best_path: Path,
    verdict_section: list[str],
) -> Path:
    """``report.md``: the summary, the pick, the verdict, the front and its op counts.

    Returns:
        The report's path.
    """
    lines = [
        f"# Search report: {run.space.name}",
        "",
        *_report_summary(run),
        "",
        "## Pick",
        "",
        f"Rule `{pick}`: {describe_pick(pick)}.",
        "",
        f"`{best_path.name}`: trial {best.number}, accuracy {best.accuracy:.4f}, "
        f"latency {best.latency_ms:.3f} ms, {best.params} params, {best.flops} FLOPs.",
        "",
        *verdict_section,
        f"## Pareto front ({len(run.front)} architectures)",
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
        op_count_markdown(run.front, run.sites),
        "",
    ]
    path = run.run_dir / REPORT_FILE
    atomic_write_text(path, "\n".join(lines))
    return path


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
        pick: ``knee``, ``max-acc``, ``max-latency=MS`` or ``within-noise`` (see
            :func:`describe_pick`).
        out: where to write the picked architecture; default ``<run_dir>/best.yaml``.
        tensorboard: also write the verdict and the scatter with the pick to the run's
            TensorBoard.

    Returns:
        :class:`ExportResult`.

    Raises:
        FileNotFoundError: no study in ``run_dir``.
        ValueError: no evaluated feasible trial yet, or no architecture fits the rule.
    """
    run_dir = Path(run_dir)
    parse_pick(pick)  # a bad rule is refused before the study is opened
    run = _load_exported_run(run_dir)
    # In this order, as before the split: a rule no front point fits fails after the
    # front's files are written, and a failed pick writes no report.
    rows = _write_arch_files(run)
    _write_pareto_csv(run, rows)
    best, best_path = _write_best(run, pick, out)
    verdict = build_verdict(run.records, run.front, best)
    verdict_section = verdict_markdown(verdict, run.sites)
    report_path = _write_report(run, rows, pick, best, best_path, verdict_section)
    if tensorboard:
        write_verdict(run_dir, run.records, best, "\n".join(verdict_section))
    return ExportResult(best_path, report_path, verdict)
