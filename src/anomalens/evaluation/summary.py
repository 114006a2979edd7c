"""Mean and standard deviation over seeds, per shots setting, per category and over categories."""

from typing import Any

import numpy as np

from anomalens.evaluation.protocol import IMAGE_METRICS, PIXEL_METRICS, Run

METRICS = IMAGE_METRICS + PIXEL_METRICS
TIMINGS = ["fit_seconds", "ms_per_image"]


def summarize(runs: list[Run]) -> list[dict[str, Any]]:
    """One entry per shots setting, in run order.

    Each entry: {"shots", "seeds", "categories": {category: {name: {"mean", "std"}}},
    "mean": {name: {"mean", "std"}}} for every metric and timing. A category's statistics are
    over its seeds; "mean" averages the categories per seed first, then takes the statistics
    over seeds. The std is the population standard deviation (0 for one seed); a value that is
    undefined (None) in any run makes its statistics None.
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
            }
        )
    return summary


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
