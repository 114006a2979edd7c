"""Thresholds from normal images only, and flags for references that do not look normal.

Each reference is scored by a model fitted without it (leave-one-out, `Method.fit_with_holdout`).
Those held-out scores sample what normal images score. A log-normal fitted to them gives the
threshold that a new normal image exceeds with probability `max_false_alarm`: the upper
prediction bound exp(mean + t * std * sqrt(1 + 1/n)) of the log scores, with Student's t of
n - 1 degrees of freedom, which widens the bound honestly when there are few references. The
pixel threshold is set the same way from the held-out maps' maxima, so that a normal image
gets any mask pixel with probability `box_false_alarm` (the Detector's, looser than its
`max_false_alarm`: boxes are drawn whatever the verdict).

References whose held-out log score lies more than OUTLIER_Z robust standard deviations above
the median (median absolute deviation) are flagged as likely defective. OUTLIER_Z = 2.5 flags a
log-normal good reference with probability 0.6%; on MTD (16 references) 1 of 150 good images
reached it, while 3.5 let half the defective images that 2.5 catches through
(benchmarks/calibration.py).
"""

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import special

from anomalens.metrics import f1_max

OUTLIER_Z = 2.5
MIN_SPREAD = 0.05
"""Floor of the log-score standard deviation, as a fraction of the mean log score's magnitude,
so that near-identical references do not give a threshold glued to their scores."""


@dataclass
class Threshold:
    """A decision threshold and how it was set."""

    value: float
    method: str
    samples: int
    max_false_alarm: float | None = None

    def to_dict(self) -> dict[str, object]:
        """JSON-serialisable fields."""
        return asdict(self)


def log_scores(scores: object) -> np.ndarray:
    """Natural logs of positive scores, floored at 1e-12 (a score of 0 has no log)."""
    return np.log(np.maximum(np.asarray(scores, dtype=np.float64), 1e-12))


def prediction_margin(count: int, spread: float, rate: float) -> float:
    """How far beyond the mean of `count` normal samples with standard deviation `spread` a new
    sample lies with probability `rate` (one-sided Student-t prediction bound)."""
    # Student's t quantile: scipy.stats.t.ppf without scipy.stats's 0.8 s import.
    quantile = special.stdtrit(count - 1, 1.0 - rate)
    return float(quantile * spread * math.sqrt(1 + 1 / count))


def prediction_bound(scores: np.ndarray, max_false_alarm: float) -> float:
    """Upper log-normal prediction bound exceeded by a new normal score with that probability."""
    logs = log_scores(scores)
    if logs.size < 2:
        raise ValueError("a threshold needs at least two held-out scores")
    spread = max(float(np.std(logs, ddof=1)), MIN_SPREAD * max(abs(float(np.mean(logs))), 1e-3))
    return float(math.exp(np.mean(logs) + prediction_margin(logs.size, spread, max_false_alarm)))


def calibrate(scores: np.ndarray, max_false_alarm: float) -> Threshold:
    """Threshold for a target false-alarm rate from held-out normal scores."""
    return Threshold(
        value=prediction_bound(scores, max_false_alarm),
        method="log-normal prediction bound of held-out reference scores",
        samples=int(np.size(scores)),
        max_false_alarm=max_false_alarm,
    )


def best_f1_threshold(labels: np.ndarray, scores: np.ndarray) -> Threshold:
    """The threshold that maximises F1 on labelled scores (1 = defective)."""
    _, value = f1_max(labels, scores)
    return Threshold(
        value=float(value), method="F1-optimal on labelled images", samples=len(scores)
    )


def outliers(scores: np.ndarray, z: float = OUTLIER_Z) -> list[int]:
    """Indices of held-out scores far above the others (robust z-score of the log score)."""
    logs = log_scores(scores)
    if logs.size < 4:
        return []
    median = np.median(logs)
    deviation = 1.4826 * np.median(np.abs(logs - median))
    deviation = max(deviation, MIN_SPREAD * max(abs(median), 1e-3))
    return [int(i) for i in np.flatnonzero((logs - median) / deviation > z)]
