"""Threshold an anomaly map (with hysteresis) and box its connected regions."""

from collections.abc import Iterator

import numpy as np
from scipy import ndimage

from anomalens.results import Box

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
"""Pixels touching by an edge or a corner belong to one region (as AUPRO counts regions)."""


def extract_regions(
    anomaly_map: np.ndarray, threshold: float, low: float = 1.0, min_area: int = 1
) -> tuple[np.ndarray, list[Box]]:
    """The (H, W) bool mask and the boxes (as `find_boxes` draws them) of the 8-connected
    regions of pixels at or above `low` × `threshold` that hold a pixel at or above `threshold`
    (`low` 1.0: the plain threshold). A defect's region so grows from its peak down its flanks,
    and fragments of one defect joined by slightly weaker pixels become one region, while weak
    regions without a strong pixel stay out. The map is labelled once and each region read
    once, within its own box, so that a map costs its labels' 4 bytes per pixel and little
    more."""
    labels, _ = ndimage.label(anomaly_map >= min(low, 1.0) * threshold, structure=EIGHT_CONNECTED)
    boxes = _region_boxes(anomaly_map, labels, min_area, threshold)
    return labels > 0, boxes


def find_boxes(anomaly_map: np.ndarray, mask: np.ndarray, min_area: int) -> list[Box]:
    """Boxes around the 8-connected regions of `mask` with at least `min_area` pixels.

    Each box carries its region's peak score and pixel area; the strongest region comes first.
    """
    labels, _ = ndimage.label(mask, structure=EIGHT_CONNECTED)
    return _region_boxes(anomaly_map, labels, min_area)


def _region_boxes(
    anomaly_map: np.ndarray, labels: np.ndarray, min_area: int, seed: float = -np.inf
) -> list[Box]:
    """`find_boxes` of the regions of `labels` (as `ndimage.label` numbers them); a region
    whose peak is under `seed` gets no box and is cleared from `labels` in place."""
    boxes = []
    for label, (rows, cols) in enumerate(ndimage.find_objects(labels), start=1):
        # Areas and peaks from each region's own box: ndimage.maximum sorts the whole map,
        # seconds at 12 MP, and a bincount of the labels takes 8 bytes per pixel.
        inside = labels[rows, cols] == label
        peak = float(np.max(anomaly_map[rows, cols], where=inside, initial=-np.inf))  # no copy
        if peak < seed:
            labels[rows, cols][inside] = 0
            continue
        area = np.count_nonzero(inside)
        if area < min_area:
            continue
        bounds = {"x0": cols.start, "y0": rows.start, "x1": cols.stop, "y1": rows.stop}
        boxes.append(Box(**bounds, score=peak, area=int(area)))
    return sorted(boxes, key=lambda box: box.score, reverse=True)


def region_masks(mask: np.ndarray, boxes: list[Box]) -> Iterator[np.ndarray]:
    """The pixels of `mask` in the 8-connected region each of `boxes` was drawn around (the
    first such region when two share their bounds), one at a time; the mask is labelled once
    for all boxes."""
    labels, _ = ndimage.label(mask, structure=EIGHT_CONNECTED)
    by_bounds: dict[tuple[int, int, int, int], int] = {}
    for label, (rows, cols) in enumerate(ndimage.find_objects(labels), start=1):
        by_bounds.setdefault((rows.start, rows.stop, cols.start, cols.stop), label)
    for box in boxes:
        label = by_bounds.get((box.y0, box.y1, box.x0, box.x1))
        if label is None:
            raise ValueError(f"no region of the mask has the bounds of {box}")
        yield labels == label
