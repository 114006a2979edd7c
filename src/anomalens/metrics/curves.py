"""Areas and optima of ROC and precision-recall curves from weights ranked by threshold.

Every function takes `positives[k]` and `negatives[k]`: the anomalous and normal weight (counts)
of the samples whose score is the k-th highest threshold, highest first, so that predicting
"anomalous" for thresholds 0..k gives the k-th operating point. Ties share one threshold.
"""

import numpy as np


def roc_auc(positives: np.ndarray, negatives: np.ndarray) -> float:
    """Area under the ROC curve (trapezoid rule, ties counted half)."""
    return float(np.trapezoid(_cumulative_rate(positives), _cumulative_rate(negatives)))


def average_precision(positives: np.ndarray, negatives: np.ndarray) -> float:
    """Sum over thresholds of the recall gained times the precision there (as scikit-learn)."""
    true_positives = np.cumsum(positives)
    predicted = true_positives + np.cumsum(negatives)
    precision = np.divide(
        true_positives, predicted, out=np.zeros_like(predicted), where=predicted > 0
    )
    return float(np.sum(positives * precision) / true_positives[-1])


def best_f1(positives: np.ndarray, negatives: np.ndarray) -> tuple[float, int]:
    """Highest F1 score over thresholds and the index of the (highest) threshold reaching it."""
    true_positives = np.cumsum(positives)
    f1 = 2 * true_positives / (true_positives + np.cumsum(negatives) + true_positives[-1])
    best = int(np.argmax(f1))
    return float(f1[best]), best


def _cumulative_rate(weights: np.ndarray) -> np.ndarray:
    """Share of the total weight at or above each threshold, starting from 0 above all."""
    cumulative = np.concatenate([[0.0], np.cumsum(weights, dtype=np.float64)])
    return cumulative / cumulative[-1]
