"""Image-level metrics equal scikit-learn's, ties included."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from anomalens.metrics import MetricInputError, f1_max, image_ap, image_auroc


def random_case(seed: int, tied: bool) -> tuple[np.ndarray, np.ndarray]:
    """Labels with about 30 % anomalous and scores, drawn from 8 values when `tied`."""
    rng = np.random.default_rng(seed)
    labels = rng.random(300) < 0.3
    scores = rng.integers(0, 8, labels.size) + labels if tied else rng.normal(labels, 1.0)
    return labels, scores.astype(np.float64)


def f1_at(labels: np.ndarray, predicted: np.ndarray) -> float:
    """F1 score of bool predictions: 2·TP / (2·TP + FP + FN)."""
    true_positives = np.sum(labels & predicted)
    return 2 * true_positives / (predicted.sum() + labels.sum())


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("seed", range(5))
def test_auroc_and_ap_equal_scikit_learn(seed: int, tied: bool):
    labels, scores = random_case(seed, tied)
    assert image_auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-9)
    assert image_ap(labels, scores) == pytest.approx(
        average_precision_score(labels, scores), abs=1e-9
    )


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("seed", range(5))
def test_f1_max_is_the_best_f1_over_all_thresholds_and_its_threshold_reaches_it(
    seed: int, tied: bool
):
    labels, scores = random_case(seed, tied)
    best = max(f1_at(labels, scores >= threshold) for threshold in np.unique(scores))

    f1, threshold = f1_max(labels, scores)

    assert f1 == pytest.approx(best, abs=1e-12)
    assert f1_at(labels, scores >= threshold) == pytest.approx(f1, abs=1e-12)


def test_perfectly_separating_scores_score_one_and_reversed_scores_zero_auroc():
    labels = np.array([0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.5, 0.6, 0.9])
    assert image_auroc(labels, scores) == 1.0
    assert image_ap(labels, scores) == 1.0
    assert f1_max(labels, scores) == (1.0, 0.5)
    assert image_auroc(labels, -scores) == 0.0


def test_constant_scores_give_chance_auroc_and_the_anomalous_share_as_ap():
    labels = [True, False, False, False]
    assert image_auroc(labels, [3.0] * 4) == 0.5
    assert image_ap(labels, [3.0] * 4) == 0.25


@pytest.mark.parametrize(
    ("labels", "scores", "problem"),
    [
        ([1, 1, 1], [0.1, 0.2, 0.3], "both anomalous and normal"),
        ([0, 1], [0.1, 0.2, 0.3], "equal length"),
        ([0, 2], [0.1, 0.2], "0/1"),
        ([0, 1], [0.1, np.nan], "NaN"),
    ],
)
def test_unusable_labels_or_scores_raise_a_clear_error(labels, scores, problem):
    with pytest.raises(MetricInputError, match=problem):
        image_auroc(labels, scores)
