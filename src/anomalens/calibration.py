"""Thresholds from normal images only, and flags for references that do not look normal.

Each reference is scored by a model fitted without it (leave-one-out, `Method.fit_with_holdout`).
Those held-out scores sample what normal images score. A log-normal fitted to them gives the
threshold that a new normal image exceeds with probability `max_false_alarm`: the upper
prediction bound exp(mean + t * std * sqrt(1 + 1/n)) of the log scores, with Student's t of
n - 1 degrees of freedom, which widens the bound honestly when there are few references. The
pixel threshold is set the same way from the held-out maps' maxima, so that a normal image
gets any mask pixel with probability `box_false_alarm` (the Detector's, looser than its
`max_false_alarm`: boxes are drawn whatever the verdict).

Degenerate references are never calibrated silently. Held-out scores without spread (copies of
one photo, blank or one-colour images) put the threshold at the references' own score, so that
every image is NG: nothing can be learnt from such references, and the fit fails
(`check_spread`) saying what to change. Held-out scores spread over orders of magnitude (one
reference whose quadrants differ, as a gradient's do) put the threshold above any score the
method can give, so that no image is NG (`unreachable`): the fit warns (CalibrationWarning) and
the detector records the message, shown by `anomalens info`, because its scores may still rank
images well (at 1 shot on MPDD the ensemble ranked at 0.98 AUROC with no image reaching its
threshold) and `Detector.calibrate` with labelled images gives it a threshold that works.

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

from anomalens.errors import AnomalensError
from anomalens.metrics import f1_max

OUTLIER_Z = 2.5
ZERO_SCORE = 1e-5
"""Held-out scores all at most this say every reference is matched exactly by the others."""
ZERO_SPREAD = 1e-6
"""Held-out scores whose range is at most this fraction of their largest have no spread."""
MIN_SPREAD = 0.05
"""Floor of the log-score standard deviation, as a fraction of the mean log score's magnitude,
so that near-identical references do not give a threshold glued to their scores."""


class CalibrationError(AnomalensError, ValueError):
    """The references cannot set a threshold that means anything; says why and what to do."""


class CalibrationWarning(UserWarning):
    """A threshold was set but cannot fire; the detector keeps the message (see `unreachable`)."""


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


def check_spread(scores: object, what: str = "the references") -> None:
    """Raise CalibrationError when held-out `scores` are not finite or have no spread."""
    values = np.asarray(scores, dtype=np.float64)
    if not np.isfinite(values).all():
        raise CalibrationError(f"the held-out scores of {what} are not all finite: {values}")
    top = float(values.max())
    if top <= ZERO_SCORE or float(np.ptp(values)) <= ZERO_SPREAD * top:
        raise CalibrationError(
            f"the held-out scores of {what} have no spread (all about {top:.3g}): the "
            "references look the same as one another (copies of one photo, or blank or "
            "one-colour images), so every new image would be NG; fit on varied photos of good "
            "parts"
        )


def unreachable(threshold: Threshold, highest: float, what: str) -> str | None:
    """What is wrong when `threshold` is above `highest`, the largest score the method can
    give, so that nothing would ever be flagged; None when it is within reach."""
    if threshold.value <= highest:
        return None
    consequence = "no image will ever be NG" if what == "image" else "no region will be found"
    return (
        f"the {what} threshold {threshold.value:.4g} is above the highest score the method can "
        f"give ({highest:.4g}), so {consequence}: the references' held-out scores spread too "
        f"widely (over {threshold.samples} samples). Fit on more photos of good parts, alike "
        "in framing and lighting, or set the threshold from labelled images (calibrate)"
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
    median, deviation = robust_location(logs)
    return [int(i) for i in np.flatnonzero((logs - median) / deviation > z)]


def robust_location(logs: np.ndarray) -> tuple[float, float]:
    """Median and robust standard deviation (1.4826 median absolute deviation, floored at
    MIN_SPREAD of the median's magnitude) of log scores: both ignore up to half the values."""
    median = float(np.median(logs))
    deviation = 1.4826 * float(np.median(np.abs(logs - median)))
    return median, max(deviation, MIN_SPREAD * max(abs(median), 1e-3))


def robust_bound(scores: np.ndarray, max_false_alarm: float) -> Threshold:
    """Threshold from scores of which an unknown minority is anomalous: the log-normal quantile
    exceeded with probability `max_false_alarm`, from the median and robust spread of the log
    scores (a zero-shot batch's own scores, which hold its defects too)."""
    logs = log_scores(scores)
    if logs.size < 2:
        raise ValueError("a threshold needs at least two scores")
    median, deviation = robust_location(logs)
    return Threshold(
        value=math.exp(median + float(special.ndtri(1.0 - max_false_alarm)) * deviation),
        method="robust log-normal bound of the batch's own scores (median, MAD)",
        samples=int(logs.size),
        max_false_alarm=max_false_alarm,
    )
