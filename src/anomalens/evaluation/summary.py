"""Mean and standard deviation over seeds, per shots setting, per category and over categories."""

from typing import Any

import numpy as np

from anomalens.evaluation.operating_point import OPERATING_METRICS
from anomalens.evaluation.protocol import IMAGE_METRICS, PIXEL_METRICS, Run

THRESHOLD_FREE = IMAGE_METRICS + PIXEL_METRICS
METRICS = THRESHOLD_FREE + OPERATING_METRICS
TIMINGS = ["fit_seconds", "ms_per_image"]


def summarize(runs: list[Run]) -> list[dict[str, Any]]:
    """One entry per shots setting, in run order.

    Each entry: {"shots", "seeds", "categories": {category: {name: {"mean", "std"}}},
    "mean": {name: {"mean", "std"}}, "recall_by_type": {category: {type: {"mean", "std"}}}} for
    every metric and timing. A category's statistics are over its seeds; "mean" averages the
    categories per seed first, then takes the statistics over seeds. The std is the population
    standard deviation (0 for one seed); a value that is undefined (None, or a defect type
    missing from a run) in any run makes its statistics None.
    """
    summary = []
    for shots in dict.fromkeys(run.shots for run in runs):
        chosen = [run for run in runs if run.shots == shots]
        seeds = list(dict.fromkeys(run.seed for run in chosen))
        categories = list(dict.fromkeys(run.category for run in chosen))
        table = {
            (run.category, run.seed): run.metrics | {name: getattr(run, name) for name in TIMINGS}
            for run in chosen
        }
        names = [*METRICS, *TIMINGS]
        summary.append(
            {
                "shots": shots,
                "seeds": seeds,
                "categories": {
                    category: {
                        name: statistics([table[category, seed][name] for seed in seeds])
                        for name in names
                    }
                    for category in categories
                },
                "mean": {
                    name: statistics(
                        [mean([table[c, seed][name] for c in categories]) for seed in seeds]
                    )
                    for name in names
                },
                "recall_by_type": {
                    category: type_recalls([run for run in chosen if run.category == category])
                    for category in categories
                },
            }
        )
    return summary


def type_recalls(runs: list[Run]) -> dict[str, dict[str, float | None]]:
    """Statistics over `runs` (one category's seeds) of the recall of each defect type."""
    recalls = [run.operating_point.recall_by_type() for run in runs]
    types = dict.fromkeys(name for recall in recalls for name in recall)
    return {name: statistics([recall.get(name) for recall in recalls]) for name in types}


def mean(values: list[float | None]) -> float | None:
    """Mean of `values`, None if any is None."""
    if any(value is None for value in values):
        return None
    return float(np.mean(values))


def statistics(values: list[float | None]) -> dict[str, float | None]:
    """{"mean", "std"} of `values`, both None if any value is None."""
    if any(value is None for value in values):
        return {"mean": None, "std": None}
    return {"mean": float(np.mean(values)), "std": float(np.std(values))}
