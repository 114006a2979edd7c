"""Boxes: the 8-connected regions of a mask, each with its bounds, peak score and area."""

import numpy as np
from scipy import ndimage

from anomalens.localization.regions import (
    EIGHT_CONNECTED,
    extract_regions,
    find_boxes,
    region_masks,
)


def hand_made() -> tuple[np.ndarray, np.ndarray]:
    """A 10 × 12 map with a diagonal pair of pixels, a 3 × 4 block and a lone pixel."""
    mask = np.zeros((10, 12), dtype=bool)
    mask[1, 1] = mask[2, 2] = True  # touching only at a corner: one 8-connected region
    mask[5:8, 6:10] = True
    mask[0, 11] = True
    anomaly_map = np.where(mask, 0.5, 0.0).astype(np.float32)
    anomaly_map[2, 2] = 0.9
    anomaly_map[6, 8] = 0.7
    return anomaly_map, mask


def test_boxes_bound_each_region_strongest_first():
    anomaly_map, mask = hand_made()
    boxes = find_boxes(anomaly_map, mask, min_area=1)
    found = [(b.x0, b.y0, b.x1, b.y1, round(b.score, 6), b.area) for b in boxes]
    assert found == [(1, 1, 3, 3, 0.9, 2), (6, 5, 10, 8, 0.7, 12), (11, 0, 12, 1, 0.5, 1)]


def test_regions_under_the_minimum_area_are_dropped():
    anomaly_map, mask = hand_made()
    assert [b.area for b in find_boxes(anomaly_map, mask, min_area=2)] == [2, 12]
    assert [b.area for b in find_boxes(anomaly_map, mask, min_area=13)] == []


def test_an_empty_mask_has_no_boxes():
    assert find_boxes(np.zeros((4, 4), np.float32), np.zeros((4, 4), bool), 1) == []


def test_peaks_and_areas_match_scipy_on_random_masks():
    rng = np.random.default_rng(0)
    anomaly_map = ndimage.gaussian_filter(rng.random((60, 80)), 2).astype(np.float32)
    mask = anomaly_map > np.quantile(anomaly_map, 0.8)
    labels, count = ndimage.label(mask, structure=EIGHT_CONNECTED)
    index = np.arange(1, count + 1)
    peaks = ndimage.maximum(anomaly_map, labels, index)
    areas = ndimage.sum_labels(mask, labels, index)
    expected = sorted(zip(peaks, areas, strict=True), reverse=True)
    boxes = find_boxes(anomaly_map, mask, min_area=1)
    np.testing.assert_allclose([b.score for b in boxes], [peak for peak, _ in expected])
    assert [b.area for b in boxes] == [int(area) for _, area in expected]


def test_region_masks_return_each_boxed_region_only():
    anomaly_map, mask = hand_made()
    boxes = find_boxes(anomaly_map, mask, min_area=1)
    regions = list(region_masks(mask, boxes))
    assert len(regions) == len(boxes)
    assert regions[1].sum() == 12 and regions[1][5:8, 6:10].all()
    assert not np.any(np.sum(regions, axis=0) > 1)  # no pixel in two regions
    assert sum(region.sum() for region in regions) == mask.sum()


def test_hysteresis_grows_strong_regions_over_weaker_neighbours_and_drops_weak_ones():
    anomaly_map = np.zeros((6, 12), np.float32)
    anomaly_map[1:4, 1:4] = 0.85  # flank of the strong peak below
    anomaly_map[2, 2] = 1.2
    anomaly_map[1:4, 8:11] = 0.9  # as strong as the flank, but no pixel over the threshold
    plain, _ = extract_regions(anomaly_map, threshold=1.0)
    assert np.array_equal(plain, anomaly_map >= 1.0)
    grown, _ = extract_regions(anomaly_map, threshold=1.0, low=0.8)
    assert np.array_equal(grown[:, :6], anomaly_map[:, :6] >= 0.8)
    assert not grown[:, 6:].any()
    assert not extract_regions(anomaly_map, threshold=2.0, low=0.1)[0].any()
