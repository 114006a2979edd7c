"""Intersection over union of boxes and one-to-one matching of predicted to ground-truth boxes."""

from collections.abc import Sequence

import numpy as np

Bounds = tuple[float, float, float, float]
"""x0, y0, x1, y1 in pixels, x1 and y1 exclusive (as `anomalens.results.Box`)."""

MATCH_IOU = 0.33
"""A prediction matches a ground-truth box when their IoU is strictly above this (as DeepPCB's
benchmark counts a detection)."""


def iou_matrix(truth: Sequence[Bounds], predicted: Sequence[Bounds]) -> np.ndarray:
    """(len(truth), len(predicted)) intersection over union; 0 where the union has no area."""
    first = np.asarray(truth, dtype=float).reshape(-1, 1, 4)
    second = np.asarray(predicted, dtype=float).reshape(1, -1, 4)
    low = np.maximum(first[..., :2], second[..., :2])
    high = np.minimum(first[..., 2:], second[..., 2:])
    intersection = np.prod((high - low).clip(min=0), axis=-1)
    union = area(first) + area(second) - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def area(boxes: np.ndarray) -> np.ndarray:
    """Areas of (..., 4) bounds; 0 for inverted bounds."""
    return np.prod((boxes[..., 2:] - boxes[..., :2]).clip(min=0), axis=-1)


def match_boxes(
    truth: Sequence[Bounds],
    predicted: Sequence[Bounds],
    scores: Sequence[float],
    threshold: float = MATCH_IOU,
) -> list[tuple[int, int]]:
    """Greedy one-to-one matching; returns (truth index, prediction index) pairs.

    Predictions are taken strongest score first (ties in listed order); each takes the
    still-unmatched ground-truth box it overlaps most (ties: the first listed) when that IoU is
    strictly above `threshold`. Each box is matched at most once, so a second prediction on an
    already matched box is a false positive.
    """
    if len(scores) != len(predicted):
        raise ValueError(f"{len(predicted)} predicted boxes but {len(scores)} scores")
    overlaps = iou_matrix(truth, predicted)
    free = np.ones(len(truth), dtype=bool)
    pairs = []
    for prediction in np.argsort(-np.asarray(scores, dtype=float), kind="stable"):
        candidates = np.where(free, overlaps[:, prediction], -1.0)
        if candidates.size == 0:
            break
        best = int(np.argmax(candidates))
        if candidates[best] > threshold:
            free[best] = False
            pairs.append((best, int(prediction)))
    return pairs
