"""Issue 13's measurement: does a search that starts from the baselines reach all-add, and how
does its hypervolume compare with the search before it and with random search?

Reads finished search run directories (their ``study.db`` and ``latency_table.json``) and
prints, for each, one markdown row:

- all-add's latency as the run's latency table predicts it, and the front's fastest latency
  (equal when all-add, the cheapest network, is on the front);
- the hypervolume after the first N counted trials (trial order) and at the end, with the
  study's own reference latency (the table's slowest architecture), so runs on the same
  supernet and table compare.

The runs are made with ``nasfuse search`` (see experiments/README.md, "Baselines first"); this
script only reads them.

Usage:
    python experiments/bench_baselines.py --at 50 --at 150 new=runs/q-new old=runs/q-old \\
        random=runs/q-random
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from nasfuse.search import front_records, hypervolume, load_search_study, trial_records
from nasfuse.search._baselines import uniform_baselines
from nasfuse.search._study import COUNTED_STATUSES


def measure(run_dir: Path, checkpoints: list[int]) -> dict[str, Any]:
    """The figures of one run directory (see the module doc)."""
    from nasfuse.latency import LatencyTable
    from nasfuse.spaces import load_space

    study = load_search_study(run_dir)
    attrs = study.user_attrs
    space = load_space(attrs["space"], attrs.get("space_options") or {})
    table = LatencyTable.load(run_dir / "latency_table.json", space=space)
    sites = {name: list(site.ops) for name, site in space.sites.items()}
    all_add = uniform_baselines(sites)[0].arch
    records = [r for r in trial_records(study) if r.status in COUNTED_STATUSES]
    reference = float(attrs["reference_latency_ms"])
    front = front_records(records)

    def hv_after(count: int) -> float | None:
        if count > len(records):
            return None
        points = [(r.accuracy, r.latency_ms) for r in records[:count] if r.on_objectives]
        return hypervolume(points, reference)  # type: ignore[arg-type]

    return {
        "run": str(run_dir),
        "trials": len(records),
        "sampler": attrs.get("sampler"),
        "all_add_predicted_ms": table.predict(all_add),
        "front_fastest_ms": min(r.latency_ms for r in front),  # type: ignore[type-var]
        "front_size": len(front),
        "all_add_on_front": any(set(r.arch.values()) == {"add"} for r in front),
        "reference_latency_ms": reference,
        "hv_end": hv_after(len(records)),
        **{f"hv_at_{n}": hv_after(n) for n in checkpoints},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="NAME=RUN_DIR")
    parser.add_argument("--at", type=int, action="append", default=[], help="HV after N trials")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    rows = []
    for item in args.runs:
        name, _, path = item.partition("=")
        rows.append({"name": name, **measure(Path(path), args.at)})

    def cell(value: Any) -> str:
        if value is None:
            return "—"
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    columns = ["trials", "all_add_predicted_ms", "front_fastest_ms", "all_add_on_front"]
    columns += ["front_size", *(f"hv_at_{n}" for n in args.at), "hv_end"]
    print("| run | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for row in rows:
        print(f"| {row['name']} | " + " | ".join(cell(row[c]) for c in columns) + " |")
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
