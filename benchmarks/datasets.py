"""One markdown table over every dataset: a detector configuration at one shots setting.

    .venv/bin/python benchmarks/datasets.py [--data-root ../shared/data] [--datasets mtd ...]
        [--method M] [--backbone B] [--resolution R] [--param KEY=VALUE ...]
        [--shots 16] [--seeds 0 1 2] [--batch-size 8] [--json runs.json]

Every folder under the data root is a dataset (an MVTec-AD category, a folder of categories or
the plain good/defective layout). Each goes through the evaluation protocol's `iter_runs`, so
the seeds share backbone features and the timings are those `anomalens evaluate` reports; no
report folder is written. stdout gets only the table: a row per dataset (per category of a
folder of categories) and a mean row, each the mean over seeds (± std for the AUROCs). Progress
and problems go to stderr. A dataset that cannot be evaluated is named on stderr and left out,
and the exit status is then 1; bad options or dataset names stop before any dataset is read
(status 2).
"""

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from anomalens.cli.evaluate import shots_argument
from anomalens.cli.options import add_detector_options, detector_params
from anomalens.data import DatasetError, discover
from anomalens.data.dataset import is_hidden
from anomalens.errors import AnomalensError
from anomalens.evaluation import EvaluationSettings, Run
from anomalens.evaluation.protocol import iter_runs
from anomalens.evaluation.report import run_entry, table_header, table_row
from anomalens.evaluation.summary import summarize
from anomalens.io.atomic import write_json

COLUMNS = [
    ("image_auroc", "image AUROC", 1, 3, True),
    ("image_ap", "image AP", 1, 3, False),
    ("pixel_auroc", "pixel AUROC", 1, 3, True),
    ("aupro", "AUPRO", 1, 3, False),
    ("false_alarm_rate", "false alarms (%)", 100, 1, False),
    ("recall", "recall (%)", 100, 1, False),
    ("box_recall", "box recall (%)", 100, 1, False),
    ("false_boxes_per_good_image", "false boxes / good image", 1, 2, False),
    ("fit_seconds", "fit s", 1, 1, False),
    ("ms_per_image", "ms/image", 1, 1, False),
]
"""(figure, heading, scale, decimals, whether the standard deviation is shown) per column."""


def main() -> int:
    parser = build_parser()
    args = parser.parse_args()
    try:
        settings = EvaluationSettings(
            method=args.method,
            backbone=args.backbone,
            resolution=args.resolution,
            shots=[args.shots],
            seeds=args.seeds,
            method_params=detector_params(args.param),
            batch_size=args.batch_size,
            overlay_examples=False,
        )
        settings.build_detector(args.seeds[0])  # a bad option fails here, before any dataset
        folders = dataset_folders(args.data_root, args.datasets)
    except AnomalensError as error:
        parser.error(str(error))
    runs: dict[Path, list[Run]] = {}
    failed: dict[str, str] = {}
    for folder in folders:
        try:
            runs[folder] = evaluate_folder(folder, settings)
        except AnomalensError as error:
            failed[folder.name] = str(error)
            log(f"{folder.name}: not evaluated: {error}")
    every_run = [run for found in runs.values() for run in found]
    if every_run:
        print(table(every_run))
    if args.json:
        write_json(args.json, json_document(args, settings, runs, failed))
        log(f"per-run figures written to {args.json}")
    return 1 if failed or not every_run else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    parser.add_argument("--datasets", nargs="+", metavar="NAME", help="only these folders")
    add_detector_options(parser)
    parser.add_argument("--shots", type=shots_argument, default=16, help="a count or 'full'")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch-size", type=int, default=EvaluationSettings.batch_size)
    parser.add_argument("--json", type=Path, metavar="PATH", help="write every run's figures")
    return parser


def dataset_folders(root: Path, names: list[str] | None) -> list[Path]:
    """The dataset folders under `root`, sorted, or those of `names` in the order given;
    DatasetError for a missing root or an unknown name."""
    if not root.is_dir():
        raise DatasetError(f"{root}: data root not found")
    folders = {
        path.name: path for path in sorted(root.iterdir()) if path.is_dir() and not is_hidden(path)
    }
    unknown = [name for name in names or [] if name not in folders]
    if unknown:
        raise DatasetError(f"{root} has no {', '.join(unknown)}; it has {', '.join(folders)}")
    return [folders[name] for name in names] if names else list(folders.values())


def evaluate_folder(folder: Path, settings: EvaluationSettings) -> list[Run]:
    """Every run of one dataset folder, its categories named <folder>/<category> when it holds
    several."""
    datasets = discover(folder)
    for dataset in datasets:
        problems = f", {len(dataset.problems)} problems" if dataset.problems else ""
        log(
            f"{dataset.name}: {len(dataset.pool)} good images to draw references from, "
            f"{len(dataset.test)} test images{problems}"
        )
    runs = []
    for run in iter_runs(folder, datasets, settings, progress=sys.stderr.isatty()):
        if len(datasets) > 1:
            run = dataclasses.replace(run, category=f"{folder.name}/{run.category}")
        runs.append(run)
        log(progress_line(run))
    return runs


def progress_line(run: Run) -> str:
    """One finished run, for stderr."""
    figures = run.metrics
    line = (
        f"{run.category} {run.name}: image AUROC {figures['image_auroc']:.3f}, "
        f"recall {percent(figures['recall'])}, false alarms {percent(figures['false_alarm_rate'])}"
        f", fit {run.fit_seconds:.1f} s, {run.ms_per_image:.1f} ms/image"
    )
    return line + (f" ({len(run.skipped)} notes, listed by --json)" if run.skipped else "")


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def table(runs: list[Run]) -> str:
    """The markdown table: a row per category, a mean row, and a note on columns whose mean
    covers only some categories."""
    [entry] = summarize(runs)
    rows = entry["categories"]
    mean, notes = {}, []
    for name, heading, *_ in COLUMNS:
        defined = [
            category for category, values in rows.items() if values[name]["mean"] is not None
        ]
        mean[name] = mean_over(runs, defined, name)
        if defined and len(defined) < len(rows):
            notes.append(f"{heading} over {', '.join(defined)}")
    lines = [table_header(["dataset", *(heading for _, heading, *_ in COLUMNS)])]
    lines += [table_row([category, *cells(values)]) for category, values in rows.items()]
    lines.append(table_row(["mean", *cells(mean)]))
    if notes:
        lines += ["", f"Mean row: {'; '.join(notes)} (the others have no such ground truth)."]
    return "\n".join(lines)


def mean_over(runs: list[Run], categories: list[str], name: str) -> dict[str, float | None]:
    """Statistics over seeds of the per-seed mean of `name` over `categories` (None for none)."""
    if not categories:
        return {"mean": None, "std": None}
    [entry] = summarize([run for run in runs if run.category in categories])
    return entry["mean"][name]


def cells(values: dict[str, dict[str, float | None]]) -> list[str]:
    """The table cells of one row of statistics."""
    texts = []
    for name, _, scale, digits, spread in COLUMNS:
        middle, std = values[name]["mean"], values[name]["std"]
        if middle is None:
            texts.append("n/a")
            continue
        text = f"{scale * middle:.{digits}f}"
        texts.append(f"{text} ± {scale * std:.{digits}f}" if spread else text)
    return texts


def json_document(
    args: argparse.Namespace,
    settings: EvaluationSettings,
    runs: dict[Path, list[Run]],
    failed: dict[str, str],
) -> dict[str, Any]:
    """Settings, the first run's detector configuration, every run's figures (paths relative to
    its dataset folder) and the datasets that failed."""
    first = next((found[0] for found in runs.values() if found), None)
    return {
        "data_root": str(args.data_root.resolve()),
        "settings": dataclasses.asdict(settings),
        "detector": first.detector_config if first else None,
        "runs": [
            {"dataset": folder.name} | run_entry(run, folder)
            for folder, found in runs.items()
            for run in found
        ],
        "failed": failed,
    }


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
