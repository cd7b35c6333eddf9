"""Run one experiment recipe; write its table (markdown), its data (JSON) and its plot (PNG).

Usage::

    python experiments/run_experiment.py experiments/recipes/ranking_resnet20_digits.yaml

A recipe (``experiments/recipes/*.yaml``) names the space, its options, the dataset, the
budgets and the seeds; ``kind`` says which experiment it is:

- ``ranking``: a supernet per path sampler (uniform, fair), each validated with
  :func:`nasfuse.validation.validate_supernet` (Kendall τ, Spearman ρ, top-k precision
  against stand-alone training of architectures spread over the latency range).
- ``baselines``: the ``best.yaml`` of a search against uniform fusion networks (all-add,
  all-concat, ...), each trained from scratch with several seeds: test accuracy mean ± std,
  params, FLOPs and measured latency.
- ``search_efficiency``: hypervolume against the number of trials for several Optuna
  samplers and seeds, all on one supernet and one latency table.

Outputs: ``experiments/results/<name>.md``, ``.json`` and ``.png``. Everything heavy lives
under ``runs/experiments/`` (git-ignored) and is shared by settings: a supernet, latency
table, search or stand-alone training with the same settings is trained once and reused
by every recipe and every rerun, so an interrupted recipe continues where it stopped.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import hashlib
import itertools
import json
import os
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
KINDS = ("ranking", "baselines", "search_efficiency")
# Keys every recipe has; the rest depend on the kind (see the recipes).
COMMON_KEYS = {"kind", "name", "description", "space", "space_options", "dataset", "device"}
KIND_KEYS = {
    "ranking": {"supernet", "samplers", "validation", "standalone", "latency_table", "resources"},
    "baselines": {
        "baselines",
        "seeds",
        "standalone",
        "latency_table",
        "latency_measurement",
        "resources",
    },
    "search_efficiency": {"supernet", "search", "samplers", "seeds", "latency_table", "resources"},
}
# A baselines recipe without ``search`` (and ``supernet``) compares the uniform networks only.
OPTIONAL_KEYS = {"expected_cost", "data_dir", "scorings", "search", "supernet"}


# ----------------------------------------------------------------------------- recipes
def load_recipe(path: str | Path) -> dict[str, Any]:
    """Read a recipe; refuse an unknown kind, and missing or unknown keys, naming them."""
    path = Path(path)
    recipe = yaml.safe_load(path.read_text())
    if not isinstance(recipe, dict) or recipe.get("kind") not in KINDS:
        raise ValueError(f"{path}: 'kind' must be one of {', '.join(KINDS)}")
    expected = COMMON_KEYS | KIND_KEYS[recipe["kind"]]
    missing = sorted(expected - set(recipe) - {"description", "device"})
    unknown = sorted(set(recipe) - expected - OPTIONAL_KEYS)
    if missing or unknown:
        raise ValueError(
            f"{path}: missing keys {missing or 'none'}, unknown keys {unknown or 'none'} "
            f"for kind {recipe['kind']!r}"
        )
    recipe.setdefault("space_options", {})
    recipe["recipe_file"] = str(path)
    return recipe


def settings_hash(settings: Any) -> str:
    """10 hex chars naming a settings mapping (for the shared run directories)."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def load_space_of(recipe: Mapping[str, Any]) -> Any:
    from nasfuse.spaces import load_space

    return load_space(recipe["space"], recipe["space_options"])


# --------------------------------------------------------------- shared, reusable stages
def supernet_config(recipe: Mapping[str, Any], sampler: str) -> Any:
    """The SupernetTrainConfig of a recipe's ``supernet`` block for one path sampler."""
    from nasfuse.config import load_config
    from nasfuse.training import SupernetTrainConfig

    values = {
        "space": recipe["space"],
        "space_options": dict(recipe["space_options"]),
        "dataset": recipe["dataset"],
        "data_dir": recipe.get("data_dir"),
        "sampler": sampler,
        "eval_archs": 0,
        "progress": False,
        "threads": 1,
        **recipe["supernet"],
    }
    return load_config(SupernetTrainConfig, None, values)


def supernet_dir(root: Path, cfg: Any) -> Path:
    """``<root>/supernets/<space>-<sampler>-<hash of the config>``.

    The hash covers the fields a resumed training refuses to change
    (:func:`nasfuse.config.result_fields`), so a recipe reuses, or resumes, exactly the
    supernets it could have trained itself.
    """
    from nasfuse.config import result_fields

    settings = result_fields(cfg)
    return root / "supernets" / f"{Path(cfg.space).stem}-{cfg.sampler}-{settings_hash(settings)}"


def _train_supernet_task(cfg: Any, out_dir: str) -> str:
    """A Ray task: train (or resume) one supernet and mark it done."""
    from nasfuse.files import atomic_write_text
    from nasfuse.training import train_supernet

    out = Path(out_dir)
    path = train_supernet(cfg, out, resume=(out / "supernet.pt").is_file())
    atomic_write_text(out / "done", "trained\n")
    return str(path)


def ensure_supernets(
    configs: Sequence[Any], root: Path, resources: Mapping[str, float]
) -> list[Path]:
    """Train the supernets not trained yet, in parallel as Ray tasks; their run directories."""
    import ray

    dirs = [supernet_dir(root, cfg) for cfg in configs]
    pending = [(cfg, d) for cfg, d in zip(configs, dirs, strict=True) if not (d / "done").is_file()]
    if pending:
        task = ray.remote(
            num_cpus=resources.get("cpus_per_trial", 1), num_gpus=resources.get("gpus_per_trial", 0)
        )(_train_supernet_task)
        started = time.perf_counter()
        print(f"training {len(pending)} supernet(s): {', '.join(d.name for _, d in pending)}")
        ray.get([task.remote(cfg, str(d)) for cfg, d in pending])
        print(f"supernets trained in {time.perf_counter() - started:.0f} s", flush=True)
    return dirs


def ensure_latency_table(recipe: Mapping[str, Any], space: Any, root: Path) -> Path:
    """The space's latency table, built once per (space, settings) with the machine quiet."""
    from nasfuse.latency import LatencyTable

    settings = dict(recipe["latency_table"])
    path = root / "latency" / f"{space.name}-{space.hash}-{settings_hash(settings)}.json"
    if not path.is_file():
        calibrate = int(settings.pop("calibrate", 0))
        started = time.perf_counter()
        LatencyTable.load_or_build(space, path=path, calibrate=calibrate, **settings)
        print(f"latency table built in {time.perf_counter() - started:.0f} s -> {path}")
    return path


def retrain_config(recipe: Mapping[str, Any], seed: int = 0) -> Any:
    """The stand-alone budget of a recipe as a RetrainConfig."""
    from nasfuse.config import load_config
    from nasfuse.training import RetrainConfig

    budget = dict(recipe["standalone"])
    options = budget.pop("options", {}) or {}
    values = {
        "dataset": recipe["dataset"],
        "data_dir": recipe.get("data_dir"),
        **options,
        **budget,
        "seed": seed,
        "threads": 1,
        "progress": False,
    }
    return load_config(RetrainConfig, None, values)


def ensure_search(
    recipe: Mapping[str, Any],
    supernet_path: Path,
    table_path: Path,
    sampler: str,
    seed: int,
    root: Path,
    num_cpus: int | None,
) -> Path:
    """A finished search on the given supernet and table; reused when one with the same
    settings exists (its ``best.yaml`` marks it finished), resumed when one was cut short."""
    from nasfuse.search import SearchConfig, run_search

    # The sampler and seed come as arguments; the rest of the block is the search budget.
    search = {k: v for k, v in recipe["search"].items() if k not in ("sampler", "seed")}
    cfg = SearchConfig(
        space=recipe["space"],
        space_options=dict(recipe["space_options"]),
        dataset=recipe["dataset"],
        data_dir=recipe.get("data_dir"),
        sampler=sampler,
        seed=seed,
        supernet=str(supernet_path.resolve()),
        latency_table=str(table_path.resolve()),
        num_cpus=num_cpus,
        threads=1,
        **search,
    )
    key = settings_hash(
        {"search": search, "supernet": str(supernet_path), "table": table_path.name}
    )
    run_dir = root / "searches" / f"{load_space_of(recipe).name}-{sampler}-s{seed}-{key}"
    if (run_dir / "best.yaml").is_file():
        return run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    resume = (run_dir / "study.db").is_file()
    result = run_search(cfg, run_dir, resume=resume)
    print(f"search {run_dir.name}: {result.wall_seconds:.0f} s", flush=True)
    return run_dir


# ----------------------------------------------------------------------------- helpers
def machine() -> str:
    from nasfuse.runtime import default_device, device_name

    return device_name(default_device())


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    values = [float(v) for v in values]
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _shown_path(path: str | Path) -> str:
    """``path`` relative to the repository when it is inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


#: The 1-minute load average when this run started (the cores may have been shared).
LOAD_AT_START: float | None = None


def header(recipe: Mapping[str, Any], command: str, wall: float) -> list[str]:
    """The lines every result file starts with: what, the command, machine, date, time."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    options = ", ".join(f"{k}={v}" for k, v in recipe["space_options"].items()) or "none"
    return [
        f"# {recipe['name']}",
        "",
        str(recipe.get("description", "")).strip(),
        "",
        f"- space: `{recipe['space']}` (options: {options}); dataset: `{recipe['dataset']}`",
        f"- recipe: `{_shown_path(recipe['recipe_file'])}`",
        f"- command: `{command}`",
        f"- machine: {machine()}, {os.cpu_count()} cores; date: {now}; wall time {wall / 60:.1f} min"
        + (f"; load average {LOAD_AT_START:.2f} when it started" if LOAD_AT_START else ""),
        "",
    ]


def results_data(
    recipe: Mapping[str, Any], command: str, wall: float, **data: Any
) -> dict[str, Any]:
    """What a result's JSON holds: the recipe, the command and its wall time, then ``data``."""
    return {"recipe": recipe, "command": command, "wall_time_s": wall, **data}


def write_results(
    name: str, results_dir: Path, markdown: str, data: Mapping[str, Any], image: Any = None
) -> None:
    from nasfuse.files import atomic_write_text
    from nasfuse.plots import save_png

    results_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(results_dir / f"{name}.md", markdown.rstrip() + "\n")
    atomic_write_text(results_dir / f"{name}.json", json.dumps(data, indent=2, default=str) + "\n")
    if image is not None:
        save_png(image, results_dir / f"{name}.png")
    print(f"results: {results_dir / name}.md/.json{'/.png' if image is not None else ''}")


def budget_line(recipe: Mapping[str, Any]) -> str:
    b = recipe["standalone"]
    return (
        f"stand-alone budget (every architecture alike): {b['epochs']} epochs on a fixed "
        f"stratified subset of {b.get('train_subset') or 'all'} training images, "
        f"options {b.get('options') or {}}; scored on the test split"
    )


# ----------------------------------------------------------------------------- ranking
def run_ranking(recipe: dict[str, Any], args: argparse.Namespace, command: str) -> None:
    from nasfuse.validation import ValidationConfig, validate_supernet

    started = time.perf_counter()
    root = args.work_dir
    resources = recipe["resources"]
    table = ensure_latency_table(recipe, load_space_of(recipe), root)
    configs = [supernet_config(recipe, sampler) for sampler in recipe["samplers"]]
    dirs = ensure_supernets(configs, root, resources)
    val = dict(recipe["validation"])
    budget = dict(recipe["standalone"])
    # Each scoring method (inherited weights, fine-tuning, few-shot, ...) is one row per
    # sampler; the stand-alone trainings are shared by all of them (one cache).
    scorings = recipe.get("scorings") or [{"name": "inherited"}]
    reports = {}
    for (sampler, run_dir), scoring in itertools.product(
        zip(recipe["samplers"], dirs, strict=True), scorings
    ):
        # A costly scoring (few-shot) may name the samplers it is run for.
        if sampler not in scoring.get("samplers", recipe["samplers"]):
            continue
        method = {key: value for key, value in scoring.items() if key not in ("name", "samplers")}
        row = sampler if len(scorings) == 1 else f"{sampler}, {scoring['name']}"
        cfg = ValidationConfig(
            **method,
            archs=int(val["archs"]),
            include_ops=val.get("include_ops"),  # None: every uniform architecture
            calib_batches=int(val.get("calib_batches", 20)),
            top_k=val.get("top_k"),
            epochs=int(budget["epochs"]),
            # Older recipes trained one seed (no noise ceiling); their figures still reproduce.
            seeds=int(budget.get("seeds", 1)),
            train_subset=budget.get("train_subset"),
            seed=int(budget.get("seed", 0)),
            retrain_options=dict(budget.get("options") or {}),
            standalone_dir=str(root / "standalone"),
            latency_table=str(table),
            ray_address=args.ray_address,
            num_cpus=args.num_cpus,
            gpus_per_training=float(resources.get("gpus_per_trial", 0)),
        )
        suffix = sampler if len(scorings) == 1 else f"{sampler}-{scoring['name']}"
        result = validate_supernet(run_dir, cfg, root / recipe["name"] / f"validation-{suffix}")
        reports[row] = result.report
        write_ranking(recipe, reports, command, time.perf_counter() - started, args.results_dir)


def scoring_cost(scoring: Mapping[str, Any]) -> float | None:
    """What scoring the architectures cost, as a ratio to the supernet's own training:
    the scoring itself (BN recalibration, fine-tuning, evaluation) plus, for few-shot, the
    sub-supernets' training. None for reports written before the ratio was recorded."""
    ratio = scoring.get("ratio_to_supernet_training")
    if ratio is None:
        return None
    few_shot = scoring.get("few_shot") or {}
    return ratio + (few_shot.get("cost_ratio") or 0.0)


def write_ranking(
    recipe: Mapping[str, Any],
    reports: Mapping[str, Mapping[str, Any]],
    command: str,
    wall: float,
    results_dir: Path,
) -> None:
    """The ranking table (one row per sampler), the per-sampler detail, the scatter plot."""
    from nasfuse.plots import ChartSeries, chart_image
    from nasfuse.validation import format_validation_table

    lines = header(recipe, command, wall)
    sn = recipe["supernet"]
    lines += [
        f"- supernet: {sn.get('epochs')} epochs, batch {sn.get('batch_size', 64)}, "
        f"lr {sn.get('lr', 0.05)}, training subset {sn.get('train_subset') or 'all'}, "
        f"seed {sn.get('seed', 0)}; scored on the val split after BN recalibration on "
        f"{recipe['validation'].get('calib_batches', 20)} batches",
        f"- {budget_line(recipe)}",
        "",
        "| sampler | archs | Kendall τ | p | Spearman ρ | top-k precision | τ without BN recal. "
        "| τ vs stand-alone val | τ noise ceiling | τ latency predictor | τ params predictor "
        "| stand-alone test acc (min–max) | supernet acc (min–max) "
        "| scoring cost (× supernet training) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|",
    ]
    series = []
    for sampler, report in reports.items():
        r = report["ranking"]
        no_recal = report["ranking_without_recalibration"] or {}
        on_val = report["ranking_against_standalone_val"] or {}
        ceiling = report.get("noise_ceiling") or {}
        predictors = report.get("predictors") or {}
        test = [e["standalone_test_acc"] for e in report["archs"]]
        sup = [e["supernet_acc"] for e in report["archs"]]
        lines.append(
            f"| {sampler} | {r['count']} | {fmt(r['kendall_tau'])} | {fmt(r['kendall_p'], 3)} | "
            f"{fmt(r['spearman_rho'])} | {fmt(r['top_k_precision'], 2)} (k={r['top_k']}) | "
            f"{fmt(no_recal.get('kendall_tau'))} | {fmt(on_val.get('kendall_tau'))} | "
            f"{fmt(ceiling.get('kendall_tau'))} | "
            f"{fmt((predictors.get('latency') or {}).get('kendall_tau'))} | "
            f"{fmt((predictors.get('params') or {}).get('kendall_tau'))} | "
            f"{min(test):.3f}–{max(test):.3f} | {min(sup):.3f}–{max(sup):.3f} | "
            f"{fmt(scoring_cost(report['scoring']), 2)} |"
        )
        series.append(
            ChartSeries(
                f"{sampler}: tau {fmt(r['kendall_tau'], 2)}",
                sup,
                test,
                labels=[
                    e["label"] if e["label"].startswith("all-") else "" for e in report["archs"]
                ],
            )
        )
    for sampler, report in reports.items():
        lines += ["", f"## {sampler}", "", format_validation_table(report)]
        lines.append(
            f"\nWall time: supernet scoring {report['wall_time_s']['supernet_scoring']:.0f} s, "
            f"stand-alone trainings {report['wall_time_s']['standalone_trainings_sum']:.0f} s "
            "(sum over trainings, 2 at a time)."
        )
    image = chart_image(
        series,
        title=f"{recipe['name']}: supernet vs stand-alone accuracy",
        x_label="supernet accuracy (val, inherited weights, BN recalibrated)",
        y_label="stand-alone test accuracy",
    )
    data = results_data(recipe, command, wall, reports=reports)
    write_results(recipe["name"], results_dir, "\n".join(lines), data, image)


# --------------------------------------------------------------------------- baselines
def run_baselines(recipe: dict[str, Any], args: argparse.Namespace, command: str) -> None:
    from nasfuse.latency import LatencyTable, measure_archs
    from nasfuse.latency.measure import device_name_at
    from nasfuse.plots import ChartSeries, chart_image
    from nasfuse.validation import StandaloneJob, train_standalone, uniform_archs

    started = time.perf_counter()
    root = args.work_dir
    resources = recipe["resources"]
    space = load_space_of(recipe)
    table_path = ensure_latency_table(recipe, space, root)
    table = LatencyTable.load(table_path, space=space)
    archs, search_dir, searched_line = searched_archs(recipe, space, table_path, root, args)
    # The op wherever it is allowed, add elsewhere ("all-cmgm+add"), as the search's baselines.
    archs.update(uniform_archs(space, recipe["baselines"]))
    seeds = [int(s) for s in recipe["seeds"]]
    jobs = {
        (name, seed): StandaloneJob.of(arch, seed) for name, arch in archs.items() for seed in seeds
    }
    cfg = retrain_config(recipe)
    training_started = time.perf_counter()
    metrics = train_standalone(
        space,
        list(jobs.values()),
        cfg,
        root / "standalone",
        args.ray_address,
        args.num_cpus,
        gpus_per_trial=float(resources.get("gpus_per_trial", 0)),
        allow_failures=True,
    )
    training_wall = time.perf_counter() - training_started
    measurement = dict(recipe["latency_measurement"])
    measured = measure_archs(space, list(archs.values()), **measurement)
    rows: list[dict[str, Any]] = []
    for (name, arch), latency in zip(archs.items(), measured, strict=True):
        runs = [metrics[jobs[(name, seed)]] for seed in seeds if jobs[(name, seed)] in metrics]
        if not runs:
            print(f"warning: no training of {name} finished; left out", file=sys.stderr)
            continue
        acc_mean, acc_std = mean_std([m["test_acc"] for m in runs])
        rows.append(
            {
                "arch": name,
                "test_acc_mean": acc_mean,
                "test_acc_std": acc_std,
                "test_acc": [m["test_acc"] for m in runs],
                "params": runs[0]["params"],
                "flops": runs[0]["flops"],
                "measured_latency_ms": latency,
                "predicted_latency_ms": table.predict(arch),
                "train_wall_time_s": [m["wall_time_s"] for m in runs],
            }
        )
    device = device_name_at(measurement.get("device"), measurement.get("threads"))
    wall = time.perf_counter() - started
    lines = header(recipe, command, wall)
    lines += [
        *([searched_line] if searched_line else []),
        f"- {budget_line(recipe)}; seeds {seeds}",
        f"- measured latency: batch {measurement.get('batch_size')}, median of "
        f"{measurement.get('rounds', 3)} rounds of {measurement.get('runs', 10)} runs, on {device}",
        "",
        "| architecture | test acc (mean ± std, "
        f"{len(seeds)} seeds) | params | MFLOPs | measured latency (ms) | table's prediction (ms) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        seeds_note = "" if len(row["test_acc"]) == len(seeds) else f" (n={len(row['test_acc'])})"
        lines.append(
            f"| {row['arch']} | {row['test_acc_mean']:.4f} ± {row['test_acc_std']:.4f}{seeds_note} | "
            f"{row['params']:,} | {row['flops'] / 1e6:.2f} | {row['measured_latency_ms']:.3f} | "
            f"{row['predicted_latency_ms']:.3f} |"
        )
    for searched in [name for name in archs if name.startswith("searched")]:
        same_as = [
            name
            for name, arch in archs.items()
            if not name.startswith("searched") and arch == archs[searched]
        ]
        if same_as:
            lines += ["", f"The {searched} architecture is the same network as {same_as[0]}."]
        lines += [
            "",
            f"The {searched} architecture (site -> op):",
            "",
            "```yaml",
            yaml.safe_dump(archs[searched], sort_keys=False).rstrip(),
            "```",
        ]
    lines += [
        "",
        f"Stand-alone trainings: {training_wall:.0f} s wall in this run "
        f"({sum(sum(r['train_wall_time_s']) for r in rows):.0f} s summed over trainings, "
        "some possibly reused from earlier runs).",
    ]
    image = chart_image(
        [
            ChartSeries(
                "test accuracy (mean ± std over seeds)",
                [r["measured_latency_ms"] for r in rows],
                [r["test_acc_mean"] for r in rows],
                errors=[r["test_acc_std"] for r in rows],
                labels=[r["arch"].removeprefix("searched (").rstrip(")") for r in rows],
            )
        ],
        title=f"{recipe['name']}: accuracy vs measured latency ({device})",
        x_label="measured latency (ms)",
        y_label="test accuracy",
    )
    data = results_data(
        recipe,
        command,
        wall,
        search_dir=str(search_dir) if search_dir else None,
        latency_device=device,
        rows=rows,
        searched_archs={name: arch for name, arch in archs.items() if name.startswith("searched")},
    )
    write_results(recipe["name"], args.results_dir, "\n".join(lines), data, image)


def searched_archs(
    recipe: Mapping[str, Any], space: Any, table_path: Path, root: Path, args: argparse.Namespace
) -> tuple[dict[str, dict[str, str]], Path | None, str | None]:
    """The searched architectures a baselines recipe retrains: the search's ``best.yaml``
    (the front's knee by default) and the front's most accurate member when it differs;
    with their search directory and a line describing them. A recipe without a ``search``
    block compares the uniform networks only (``{}``, None, None)."""
    from nasfuse.arch import load_arch

    if not recipe.get("search"):
        return {}, None, None
    sampler = recipe["search"].get("sampler", "nsga2")
    (supernet_run,) = ensure_supernets(
        [supernet_config(recipe, recipe["supernet"].get("sampler", "uniform"))],
        root,
        recipe["resources"],
    )
    search_dir = ensure_search(
        recipe,
        supernet_run / "supernet.pt",
        table_path,
        sampler,
        int(recipe["search"].get("seed", 0)),
        root,
        args.num_cpus,
    )
    best, _ = load_arch(search_dir / "best.yaml", space)
    archs = {"searched (best.yaml)": best}
    top, _ = load_arch(search_dir / most_accurate_on_front(search_dir), space)
    if top != best:
        archs["searched (most accurate on the front)"] = top
    best_metrics = yaml.safe_load((search_dir / "best.yaml").read_text()).get("metrics", {})
    line = (
        f"- searched: `best.yaml` of a {sampler} search ({recipe['search']}) on the "
        f"{recipe['supernet'].get('sampler', 'uniform')}-sampled supernet "
        f"({recipe['supernet'].get('epochs')} epochs); its supernet score "
        f"{fmt(best_metrics.get('accuracy'))}"
    )
    return archs, search_dir, line


def most_accurate_on_front(search_dir: Path) -> str:
    """The arch file (relative to ``search_dir``) of the front's most accurate member."""
    import csv

    with (search_dir / "pareto.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{search_dir / 'pareto.csv'}: the front is empty")
    return max(rows, key=lambda row: float(row["accuracy"]))["file"]


# ------------------------------------------------------------------- search efficiency
def hypervolume_curve(run_dir: Path) -> tuple[list[float], float]:
    """Hypervolume after each counted trial (trial order), and the search's wall time."""
    from nasfuse.search import hypervolume, load_search_study, trial_records

    study = load_search_study(run_dir)
    reference = float(study.user_attrs["reference_latency_ms"])
    points: list[tuple[float, float]] = []
    curve = []
    for record in trial_records(study):
        if record.status == "interrupted":
            continue
        if record.on_objectives:
            points.append((record.accuracy, record.latency_ms))
        curve.append(hypervolume(points, reference))
    trials = study.get_trials(deepcopy=False)
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    wall = (max(ends) - min(starts)).total_seconds() if starts and ends else float("nan")
    return curve, wall


def run_search_efficiency(recipe: dict[str, Any], args: argparse.Namespace, command: str) -> None:
    started = time.perf_counter()
    root = args.work_dir
    table_path = ensure_latency_table(recipe, load_space_of(recipe), root)
    (supernet_run,) = ensure_supernets(
        [supernet_config(recipe, recipe["supernet"].get("sampler", "uniform"))],
        root,
        recipe["resources"],
    )
    curves: dict[str, dict[int, list[float]]] = {}
    walls: dict[str, dict[int, float]] = {}
    seeds = [int(s) for s in recipe["seeds"]]
    for seed in seeds:  # seed-major, so a cut-off still leaves every sampler compared
        for sampler in recipe["samplers"]:
            run_dir = ensure_search(
                recipe, supernet_run / "supernet.pt", table_path, sampler, seed, root, args.num_cpus
            )
            curves.setdefault(sampler, {})[seed], wall = hypervolume_curve(run_dir)
            walls.setdefault(sampler, {})[seed] = wall
        write_search_efficiency(
            recipe, curves, walls, command, time.perf_counter() - started, args.results_dir
        )


def write_search_efficiency(
    recipe: Mapping[str, Any],
    curves: Mapping[str, Mapping[int, list[float]]],
    walls: Mapping[str, Mapping[int, float]],
    command: str,
    wall: float,
    results_dir: Path,
) -> None:
    from nasfuse.plots import ChartSeries, chart_image

    trials = int(recipe["search"]["trials"])
    marks = sorted({m for m in (5, 10, 20, 30, 50, 100, trials) if m <= trials})
    lines = header(recipe, command, wall)
    lines += [
        f"- one supernet ({recipe['supernet'].get('sampler', 'uniform')} sampling, "
        f"{recipe['supernet'].get('epochs')} epochs) and one latency table for every search; "
        f"search settings {recipe['search']}",
        "- hypervolume: normalised, reference (accuracy 0, latency of the slowest architecture "
        "by the table), see `nasfuse.search.hypervolume`",
        "",
        "| sampler | seeds | "
        + " | ".join(f"HV @ {m} trials" for m in marks)
        + " | search wall time (s) |",
        "|---|---|" + "---:|" * len(marks) + "---:|",
    ]
    series = []
    for sampler, by_seed in curves.items():
        cells = []
        for mark in marks:
            values = [c[min(mark, len(c)) - 1] for c in by_seed.values() if c]
            mean, std = mean_std(values)
            cells.append(f"{mean:.4f} ± {std:.4f}")
        lines.append(
            f"| {sampler} | {sorted(by_seed)} | "
            + " | ".join(cells)
            + f" | {statistics.fmean(walls[sampler].values()):.0f} |"
        )
        length = min(len(c) for c in by_seed.values())
        xs = list(range(1, length + 1))
        means = [statistics.fmean(c[i] for c in by_seed.values()) for i in range(length)]
        stds = [
            statistics.stdev([c[i] for c in by_seed.values()]) if len(by_seed) > 1 else 0.0
            for i in range(length)
        ]
        series.append(
            ChartSeries(
                f"{sampler} (mean ± std over {len(by_seed)} seeds)",
                xs,
                means,
                errors=[s if (i + 1) % 5 == 0 else 0.0 for i, s in enumerate(stds)],
                lines=True,
            )
        )
    image = chart_image(
        series,
        title=f"{recipe['name']}: hypervolume vs trials",
        x_label="trials",
        y_label="hypervolume (normalised)",
    )
    data = results_data(
        recipe,
        command,
        wall,
        curves={s: {str(k): v for k, v in c.items()} for s, c in curves.items()},
        search_wall_time_s={s: {str(k): v for k, v in w.items()} for s, w in walls.items()},
    )
    write_results(recipe["name"], results_dir, "\n".join(lines), data, image)


# -------------------------------------------------------------------------------- main
RUNNERS = {
    "ranking": run_ranking,
    "baselines": run_baselines,
    "search_efficiency": run_search_efficiency,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipe", type=Path, help="a recipe file (experiments/recipes/*.yaml)")
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=REPO / "runs" / "experiments",
        help="where supernets, tables, searches and trainings go (default runs/experiments)",
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=REPO / "experiments" / "results",
        help="where the table, data and plot go (default experiments/results)",
    )
    parser.add_argument("--ray-address", default=None, help="join this Ray cluster")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray")
    args = parser.parse_args(argv)
    global LOAD_AT_START
    LOAD_AT_START = os.getloadavg()[0]
    recipe = load_recipe(args.recipe)
    args.work_dir = args.work_dir.resolve()
    command = "python experiments/run_experiment.py " + " ".join(
        str(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    from nasfuse.search import local_ray

    with local_ray(args.ray_address, args.num_cpus):
        RUNNERS[recipe["kind"]](copy.deepcopy(recipe), args, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
