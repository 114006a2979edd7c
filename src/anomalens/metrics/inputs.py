"""Checks on what callers hand to the metrics, with errors that say what is wrong."""

import numpy as np

from anomalens.errors import AnomalensError


class MetricInputError(AnomalensError, ValueError):
    """Scores, labels or masks cannot be evaluated."""


def labels_and_scores(labels: object, scores: object) -> tuple[np.ndarray, np.ndarray]:
    """Validated 1-D bool labels and float64 scores.

    Args:
        labels: per-sample truth, True or 1 for anomalous, False or 0 for normal.
        scores: per-sample anomaly scores, higher meaning more anomalous.
    """
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.ndim != 1 or scores.shape != labels.shape:
        raise MetricInputError(
            f"labels and scores must be 1-D and of equal length, got shapes "
            f"{labels.shape} and {scores.shape}"
        )
    if not np.isin(labels, (0, 1)).all():
        raise MetricInputError("labels must be 0/1 or False/True")
    require_finite(scores, "scores")
    return labels.astype(bool), scores


def map_and_mask(
    anomaly_map: np.ndarray, gt_mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Validated float64 anomaly map and bool ground-truth mask of the same (H, W) shape.

    Args:
        anomaly_map: (H, W) per-pixel anomaly scores.
        gt_mask: (H, W) ground truth, nonzero where anomalous; None for a normal image.
    """
    scores = np.asarray(anomaly_map, dtype=np.float64)
    if scores.ndim != 2:
        raise MetricInputError(f"an anomaly map must be 2-D (H, W), got shape {scores.shape}")
    require_finite(scores, "anomaly map")
    if gt_mask is None:
        return scores, np.zeros(scores.shape, dtype=bool)
    mask = np.asarray(gt_mask).astype(bool)
    if mask.shape != scores.shape:
        raise MetricInputError(
            f"ground-truth mask shape {mask.shape} differs from anomaly map shape {scores.shape}"
        )
    return scores, mask


def require_finite(values: np.ndarray, what: str) -> None:
    """Raise if `values` (named `what` in the message) holds NaN or infinity."""
    if not np.isfinite(values).all():
        raise MetricInputError(f"{what} contain NaN or infinite values")


def require_both_classes(anomalous: float, normal: float, what: str) -> None:
    """Raise unless there is some anomalous and some normal weight among `what` (samples/pixels)."""
    if anomalous <= 0 or normal <= 0:
        raise MetricInputError(
            f"metrics need both anomalous and normal {what}, got {anomalous:g} anomalous "
            f"and {normal:g} normal"
        )
