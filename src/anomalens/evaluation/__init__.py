"""Evaluate a detector configuration on a dataset with the few-shot protocol and write a report.

from anomalens.evaluation import EvaluationSettings, evaluate
evaluate("data/mvtec", "report", EvaluationSettings(shots=[1, 4], seeds=[0, 1, 2]))
"""

import dataclasses
from pathlib import Path

from anomalens.data import discover
from anomalens.data.shots import read_reference_list
from anomalens.evaluation.protocol import EvaluationSettings, Run, iter_runs
from anomalens.evaluation.report import write_run, write_summary


def evaluate(
    data: str | Path,
    out_dir: str | Path,
    settings: EvaluationSettings | None = None,
    reference_list: str | Path | None = None,
    progress: bool = True,
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
    """
    root, out_dir = Path(data), Path(out_dir)
    settings = settings or EvaluationSettings()
    datasets = discover(root)
    list_file = Path(reference_list) if reference_list else None
    fixed = read_reference_list(list_file, root) if list_file else None
    runs = []
    for run in iter_runs(root, datasets, settings, fixed, progress):
        write_run(out_dir, root, run)
        runs.append(dataclasses.replace(run, maps={}, examples=[]))
    write_summary(out_dir, root, datasets, settings, runs, list_file)
    return runs


__all__ = ["EvaluationSettings", "Run", "evaluate"]
