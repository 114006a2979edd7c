"""Evaluate a detector configuration on a dataset with the few-shot protocol and write a report.

from anomalens.evaluation import EvaluationSettings, evaluate
evaluate("data/mvtec", "report", EvaluationSettings(shots=[1, 4], seeds=[0, 1, 2]))
"""

import dataclasses
import json
from pathlib import Path
from typing import Any

from anomalens.data import discover
from anomalens.data.shots import read_reference_list
from anomalens.evaluation.protocol import EvaluationSettings, Run, iter_runs
from anomalens.evaluation.report import write_run, write_summary
from anomalens.progress import spinner


def evaluate(
    data: str | Path,
    out_dir: str | Path,
    settings: EvaluationSettings | None = None,
    reference_list: str | Path | None = None,
    progress: bool = True,
    boxes: str | Path | None = None,
) -> list[Run]:
    """Run every category × shots × seed of `settings` on `data` and write the report.

    Each run's folder is written as soon as it finishes; metrics.json, report.md and scores.csv
    when all have. Returns the runs (without their anomaly maps and overlay examples).

    Args:
        data: dataset root (MVTec-AD category, folder of categories, or plain good/defective).
        out_dir: report folder, created if needed.
        settings: what to evaluate; the defaults when None.
        reference_list: a text file of reference paths (relative to `data`) that replaces the
            seeded k-shot draw.
        progress: show progress bars.
        boxes: a COCO file of box ground truth, in place of each category's boxes/ folder or
            annotations.json.
    """
    root, out_dir = Path(data), Path(out_dir)
    settings = settings or EvaluationSettings()
    datasets = discover(root, boxes)
    list_file = Path(reference_list) if reference_list else None
    fixed = read_reference_list(list_file, root) if list_file else None
    runs = []
    for run in iter_runs(root, datasets, settings, fixed, progress):
        with spinner(f"writing {run.category} {run.name}", progress):
            write_run(out_dir, root, run)
        runs.append(dataclasses.replace(run, maps={}, examples=[]))
    write_summary(out_dir, root, datasets, settings, runs, list_file)
    return runs


def finished_report(
    data: str | Path, out_dir: str | Path, settings: EvaluationSettings
) -> dict[str, Any] | None:
    """The metrics.json in `out_dir` if it evaluated `data` with these settings (its shots may
    include more than `settings.shots`), else None; lets long benchmarks resume."""
    path = Path(out_dir) / "metrics.json"
    if not path.is_file():
        return None
    report = json.loads(path.read_text())
    wanted = json.loads(json.dumps(dataclasses.asdict(settings)))
    same = all(
        report["settings"][key] == wanted[key]
        for key in ["method", "backbone", "resolution", "method_params", "seeds"]
    )
    covered = set(map(str, wanted["shots"])) <= set(map(str, report["settings"]["shots"]))
    return report if same and covered and report["data"] == str(Path(data).resolve()) else None


__all__ = ["EvaluationSettings", "Run", "evaluate", "finished_report"]
