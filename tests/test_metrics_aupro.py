"""AUPRO up to an FPR limit: against a brute-force reference and hand-computed cases."""

from itertools import pairwise

import numpy as np
import pytest
from scipy import ndimage

from anomalens.metrics import PixelMetrics, pixel_metrics
from anomalens.metrics.aupro import region_weights


def brute_force_aupro(maps: list, masks: list, fpr_limit: float = 0.3) -> float:
    """AUPRO from exact overlaps of every 8-connected region at every distinct threshold."""
    scores = np.concatenate([m.ravel() for m in maps])
    normal = ~np.concatenate([k.ravel() for k in masks])
    regions = []
    for anomaly_map, mask in zip(maps, masks, strict=True):
        labelled, count = ndimage.label(mask, structure=np.ones((3, 3)))
        regions += [anomaly_map[labelled == region] for region in range(1, count + 1)]
    thresholds = np.unique(scores)[::-1]
    fprs = [0.0, *np.mean(scores[normal, None] >= thresholds, axis=0)]
    pros = [0.0, *np.mean([np.mean(r[:, None] >= thresholds, axis=0) for r in regions], axis=0)]
    area = 0.0
    for (fpr0, pro0), (fpr1, pro1) in pairwise(zip(fprs, pros, strict=True)):
        if fpr0 >= fpr_limit:
            break
        if fpr1 > fpr_limit:
            pro1 = pro0 + (pro1 - pro0) * (fpr_limit - fpr0) / (fpr1 - fpr0)
            fpr1 = fpr_limit
        area += (fpr1 - fpr0) * (pro0 + pro1) / 2
    return area / fpr_limit


def random_blob_images(seed: int, levels: int | None = None) -> tuple[list, list]:
    """Four small maps with blob-shaped defects of various sizes (one image defect-free),
    the defects scoring higher on average; scores drawn from `levels` integers when given."""
    rng = np.random.default_rng(seed)
    maps, masks = [], []
    for index in range(4):
        blobs = ndimage.gaussian_filter(rng.random((20, 24)), 1.5)
        mask = blobs > np.quantile(blobs, 0.85) if index else np.zeros((20, 24), bool)
        noise = rng.integers(0, levels, mask.shape) if levels else rng.normal(0, 1, mask.shape)
        maps.append((noise + 1.5 * mask).astype(np.float32))
        masks.append(mask)
    return maps, masks


@pytest.mark.parametrize("fpr_limit", [0.3, 0.05, 1.0])
@pytest.mark.parametrize("seed", range(3))
def test_aupro_of_distinct_scores_is_within_1e_3_of_brute_force(seed: int, fpr_limit: float):
    maps, masks = random_blob_images(seed)
    result = pixel_metrics(maps, masks, fpr_limit=fpr_limit)["aupro"]
    assert result == pytest.approx(brute_force_aupro(maps, masks, fpr_limit), abs=1e-3)


@pytest.mark.parametrize("seed", range(3))
def test_aupro_of_tied_scores_equals_brute_force(seed: int):
    maps, masks = random_blob_images(seed, levels=5)
    assert pixel_metrics(maps, masks)["aupro"] == pytest.approx(
        brute_force_aupro(maps, masks), abs=1e-12
    )


def test_a_map_scoring_every_defect_above_every_normal_pixel_has_aupro_one():
    _, masks = random_blob_images(0)
    maps = [mask + 0.1 * np.random.default_rng(1).random(mask.shape) for mask in masks]
    assert pixel_metrics(maps, masks)["aupro"] == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("fpr_limit", [0.3, 0.1])
def test_a_constant_map_follows_the_diagonal_so_aupro_is_half_the_limit(fpr_limit: float):
    _, masks = random_blob_images(0)
    maps = [np.full(mask.shape, 7.0) for mask in masks]
    assert pixel_metrics(maps, masks, fpr_limit=fpr_limit)["aupro"] == pytest.approx(
        fpr_limit / 2, abs=1e-12
    )


def test_two_regions_in_two_images_give_the_hand_computed_aupro():
    # Region A (scores 0.9, 0.5) and a normal pixel (0.7) in image 1; region B (0.6) and nine
    # normal pixels (0.1) in image 2. Descending thresholds give (FPR, PRO) points
    # (0, 0) (0, 1/4) (1/10, 1/4) (1/10, 3/4) (1/10, 1) (1, 1): area to 0.3 is
    # 0.1 × 1/4 + 0.2 × 1 = 0.225, divided by 0.3 gives 0.75.
    maps = [np.array([[0.9, 0.5, 0.7]]), np.array([[0.6] + [0.1] * 9])]
    masks = [np.array([[True, True, False]]), np.arange(10)[None] == 0]
    assert pixel_metrics(maps, masks)["aupro"] == pytest.approx(0.75, abs=1e-12)


def test_diagonal_neighbours_form_one_region_and_each_region_weighs_one_over_its_size():
    mask = np.array([[1, 0, 0, 0], [0, 1, 0, 1], [0, 0, 0, 1]], bool)
    weights, regions = region_weights(mask)
    assert regions == 2
    np.testing.assert_array_equal(weights, [[0.5, 0, 0, 0], [0, 0.5, 0, 0.5], [0, 0, 0, 0.5]])


@pytest.mark.parametrize("fpr_limit", [0.0, 1.5])
def test_an_fpr_limit_outside_zero_to_one_is_refused_before_any_image(fpr_limit: float):
    with pytest.raises(ValueError, match="FPR limit"):
        PixelMetrics(fpr_limit=fpr_limit)
