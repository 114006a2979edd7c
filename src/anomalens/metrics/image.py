"""Image-level AUROC, average precision and F1-max (exact, ties handled as scikit-learn)."""

import numpy as np

from anomalens.metrics.curves import average_precision, best_f1, roc_auc
from anomalens.metrics.inputs import labels_and_scores, require_both_classes


def image_auroc(labels: object, scores: object) -> float:
    """Area under the ROC curve of `scores` against `labels` (see `ranked_weights`)."""
    _, positives, negatives = ranked_weights(labels, scores)
    return roc_auc(positives, negatives)


def image_ap(labels: object, scores: object) -> float:
    """Average precision of `scores` against `labels` (see `ranked_weights`)."""
    _, positives, negatives = ranked_weights(labels, scores)
    return average_precision(positives, negatives)


def f1_max(labels: object, scores: object) -> tuple[float, float]:
    """Best F1 score and the threshold reaching it: anomalous means score >= threshold."""
    thresholds, positives, negatives = ranked_weights(labels, scores)
    f1, best = best_f1(positives, negatives)
    return f1, float(thresholds[best])


def ranked_weights(labels: object, scores: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct scores from highest to lowest, with the number of anomalous and normal samples
    at each.

    Args:
        labels: per-sample truth, True or 1 for anomalous, False or 0 for normal; both needed.
        scores: per-sample anomaly scores, higher meaning more anomalous.
    """
    labels, scores = labels_and_scores(labels, scores)
    require_both_classes(labels.sum(), (~labels).sum(), "samples")
    negated, rank = np.unique(-scores, return_inverse=True)
    positives = np.bincount(rank, weights=labels, minlength=negated.size)
    negatives = np.bincount(rank, weights=~labels, minlength=negated.size)
    return -negated, positives, negatives
