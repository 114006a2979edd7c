"""Pixel-level metrics streamed through fine bins agree with scikit-learn on all pixels pooled."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from anomalens.metrics import MetricInputError, PixelMetrics, pixel_metrics
from anomalens.metrics.histogram import ScoreHistogram


def random_images(seed: int, levels: int | None = None) -> tuple[list, list]:
    """Five small anomaly maps, anomalous pixels scoring higher on average, and their masks
    (the first image normal, None); scores drawn from `levels` integers when given."""
    rng = np.random.default_rng(seed)
    masks = [rng.random((24, 32)) < 0.15 for _ in range(5)]
    masks[0] = None
    maps = []
    for mask in masks:
        anomalous = np.zeros((24, 32)) if mask is None else mask
        noise = rng.integers(0, levels, (24, 32)) if levels else rng.normal(0, 1, (24, 32))
        maps.append((noise + 2 * anomalous).astype(np.float32))
    return maps, masks


def scikit_learn_metrics(maps: list, masks: list) -> dict[str, float]:
    """Exact pooled-pixel AUROC, AP and F1-max."""
    labels = np.concatenate(
        [
            np.zeros(m.size, bool) if k is None else k.ravel()
            for m, k in zip(maps, masks, strict=True)
        ]
    )
    scores = np.concatenate([m.ravel() for m in maps])
    precision, recall, _ = precision_recall_curve(labels, scores)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-300)
    return {
        "pixel_auroc": roc_auc_score(labels, scores),
        "pixel_ap": average_precision_score(labels, scores),
        "pixel_f1_max": f1.max(),
    }


@pytest.mark.parametrize("seed", range(4))
def test_distinct_scores_agree_with_scikit_learn_within_the_binning_bound(seed: int):
    maps, masks = random_images(seed)
    result = pixel_metrics(maps, masks)
    for name, exact in scikit_learn_metrics(maps, masks).items():
        assert result[name] == pytest.approx(exact, abs=1e-4), name


@pytest.mark.parametrize("seed", range(4))
def test_tied_scores_give_exactly_scikit_learns_values(seed: int):
    maps, masks = random_images(seed, levels=6)
    result = pixel_metrics(maps, masks)
    for name, exact in scikit_learn_metrics(maps, masks).items():
        assert result[name] == pytest.approx(exact, abs=1e-12), name


def test_scores_whose_range_grows_by_orders_of_magnitude_stay_exact():
    rng = np.random.default_rng(0)
    masks = [rng.random((16, 16)) < 0.2 for _ in range(4)]
    maps = [
        (rng.integers(0, 3 * 10**k, (16, 16)) + 10**k * m).astype(np.float64)
        for k, m in enumerate(masks)
    ]
    result = pixel_metrics(maps, masks)
    for name, exact in scikit_learn_metrics(maps, masks).items():
        assert result[name] == pytest.approx(exact, abs=1e-12), name


def test_a_normal_image_counts_the_same_as_an_all_false_mask():
    maps, masks = random_images(0)
    all_false = [np.zeros((24, 32), bool), *masks[1:]]
    assert pixel_metrics(maps, masks) == pixel_metrics(maps, all_false)


def test_perfect_maps_score_one_everywhere():
    masks = [np.zeros((8, 8), bool), np.eye(8, dtype=bool)]
    assert pixel_metrics([m.astype(np.float32) for m in masks], masks) == {
        "pixel_auroc": 1.0,
        "pixel_ap": 1.0,
        "pixel_f1_max": 1.0,
        "aupro": 1.0,
    }


@pytest.mark.parametrize(
    ("anomaly_map", "gt_mask", "problem"),
    [
        (np.zeros((4, 4)), np.zeros((4, 5), bool), "differs from anomaly map shape"),
        (np.zeros(16), None, "2-D"),
        (np.full((4, 4), np.nan), None, "NaN"),
    ],
)
def test_unusable_maps_or_masks_raise_a_clear_error(anomaly_map, gt_mask, problem):
    with pytest.raises(MetricInputError, match=problem):
        PixelMetrics().update(anomaly_map, gt_mask)


def test_computing_without_any_anomalous_pixel_raises_a_clear_error():
    metrics = PixelMetrics()
    metrics.update(np.random.default_rng(0).random((4, 4)), None)
    with pytest.raises(MetricInputError, match="both anomalous and normal pixels"):
        metrics.compute()


def test_maps_and_masks_of_different_counts_are_refused():
    with pytest.raises(ValueError, match="zip"):
        pixel_metrics([np.zeros((2, 2))] * 2, [None])


def histogram_of(batches: list[np.ndarray], bins: int) -> ScoreHistogram:
    """A one-channel histogram counting the scores of every batch."""
    histogram = ScoreHistogram(channels=1, bins=bins)
    for batch in batches:
        histogram.add(batch, [np.ones(batch.size)])
    return histogram


def random_batches(seed: int) -> list[np.ndarray]:
    """Batches of normal scores with spreads from 1e-3 to 1e3, in random order."""
    rng = np.random.default_rng(seed)
    batches = [rng.normal(0, 10.0**k, 50) for k in range(-3, 4)]
    rng.shuffle(batches)
    return batches


EDGE_SCORES = [np.array([0.0, 1.0, 0.5]), np.array([0.5, 0.25, 8.0]), np.array([0.5, -3.0, 0.25])]
"""Scores on bin edges of 4 bins, seen again after the bins coarsen."""


@pytest.mark.parametrize(
    ("batches", "bins"),
    [(random_batches(seed), 64) for seed in range(5)] + [(EDGE_SCORES, 4)],
)
def test_histogram_counts_equal_direct_counts_over_its_final_edges_after_growing(batches, bins):
    scores = np.concatenate(batches)

    edges, (counts,) = histogram_of(batches, bins).descending()

    width = edges[0] - edges[1]
    assert counts.sum() == scores.size and edges.size <= bins
    assert width < 2 * np.ptp(scores) / (bins - 1)
    direct = np.histogram(scores, bins=np.append(edges[::-1], edges[0] + width))[0]
    np.testing.assert_array_equal(counts, direct[::-1])


def test_histogram_of_equal_scores_has_one_bin():
    edges, (counts,) = histogram_of([np.full(5, 2.5), np.full(3, 2.5)], bins=16).descending()
    np.testing.assert_array_equal(edges, [2.5])
    np.testing.assert_array_equal(counts, [8])
