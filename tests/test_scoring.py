"""Image scores and anomaly maps against hand-built cases."""

import numpy as np
import pytest
import torch

from anomalens.localization.maps import anomaly_map, gaussian_blur
from anomalens.methods.base import top_fraction_mean


def test_image_score_is_the_mean_of_the_top_one_percent_of_patches():
    scores = np.zeros(1000)
    scores[:10] = np.arange(1, 11)  # the ten largest of 1000 patches
    assert top_fraction_mean(scores) == pytest.approx(5.5)


def test_image_score_uses_at_least_one_patch():
    assert top_fraction_mean(np.array([[0.1, 0.7], [0.3, 0.2]])) == pytest.approx(0.7)


def test_top_fraction_rounds_the_patch_count_up():
    scores = np.arange(150, dtype=float)  # 1% of 150 patches is 1.5 -> 2 patches
    assert top_fraction_mean(scores) == pytest.approx((149 + 148) / 2)


def test_constant_grid_gives_a_constant_map_of_the_image_size():
    result = anomaly_map(np.full((4, 6), 0.25, np.float32), (40, 60), (40, 60))
    assert result.shape == (40, 60) and result.dtype == np.float32
    np.testing.assert_allclose(result, 0.25, atol=1e-6)


def test_a_hot_patch_peaks_at_its_centre_and_spreads_like_the_gaussian():
    grid = np.zeros((5, 5), np.float32)
    grid[2, 3] = 1.0
    sharp = anomaly_map(grid, (50, 50), (50, 50), sigma=0)
    smooth = anomaly_map(grid, (50, 50), (50, 50), sigma=4)
    peak = np.unravel_index(np.argmax(smooth), smooth.shape)
    assert abs(peak[0] - 25) <= 1 and abs(peak[1] - 35) <= 1
    assert smooth.max() < sharp.max()
    assert smooth.sum() == pytest.approx(sharp.sum(), rel=0.01)  # reflected borders


def test_gaussian_smoothing_matches_scipy():
    from scipy import ndimage

    image = np.random.default_rng(0).random((40, 50)).astype(np.float32)
    ours = gaussian_blur(torch.from_numpy(image), 4.0).numpy()
    reference = ndimage.gaussian_filter(image, 4.0, mode="mirror", truncate=4.0)
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_uncovered_strip_repeats_the_edge_values():
    grid = np.array([[0.0, 1.0]], np.float32)
    result = anomaly_map(grid, (10, 20), (10, 27), sigma=0)
    np.testing.assert_allclose(result[:, 20:], result[:, 19:20].repeat(7, axis=1))


def test_a_minimum_count_averages_more_patches_than_a_small_fraction_would():
    scores = np.arange(100.0)
    assert top_fraction_mean(scores, 0.01, minimum=4) == pytest.approx(97.5)
    assert top_fraction_mean(scores, 0.01, minimum=500) == pytest.approx(49.5)  # all of them
