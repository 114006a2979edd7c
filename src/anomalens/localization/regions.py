"""Threshold an anomaly map (with hysteresis) and box its connected regions."""

from collections.abc import Iterator

import numpy as np
from scipy import ndimage

from anomalens.results import Box

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
"""Pixels touching by an edge or a corner belong to one region (as AUPRO counts regions)."""


def hysteresis_labels(anomaly_map: np.ndarray, threshold: float, low: float = 1.0) -> np.ndarray:
    """(H, W) int32 labels (0: none; not consecutive) of the 8-connected regions of pixels at or
    above `low` × `threshold` that hold a pixel at or above `threshold` (`low` 1.0: the plain
    threshold). A defect's region so grows from its peak down its flanks, and fragments of one
    defect joined by slightly weaker pixels become one region, while weak regions without a
    strong pixel stay out. Labelled once, and the regions without one cleared in place, each
    within its own box, so that a map costs its labels' 4 bytes per pixel and little more."""
    labels, _ = ndimage.label(anomaly_map >= min(low, 1.0) * threshold, structure=EIGHT_CONNECTED)
    if low < 1.0:
        for label, found in enumerate(ndimage.find_objects(labels), start=1):
            inside = labels[found] == label
            if region_peak(anomaly_map[found], inside) < threshold:
                labels[found][inside] = 0
    return labels


def hysteresis_mask(anomaly_map: np.ndarray, threshold: float, low: float = 1.0) -> np.ndarray:
    """(H, W) bool: the pixels of the `hysteresis_labels` regions."""
    return hysteresis_labels(anomaly_map, threshold, low) > 0


def extract_regions(
    anomaly_map: np.ndarray, threshold: float, low: float, min_area: int
) -> tuple[np.ndarray, list[Box]]:
    """The mask and the boxes (as `find_boxes` draws them) of the `hysteresis_labels` regions."""
    labels = hysteresis_labels(anomaly_map, threshold, low)
    return labels > 0, labelled_boxes(anomaly_map, labels, min_area)


def find_boxes(anomaly_map: np.ndarray, mask: np.ndarray, min_area: int) -> list[Box]:
    """Boxes around the 8-connected regions of `mask` with at least `min_area` pixels.

    Each box carries its region's peak score and pixel area; the strongest region comes first.
    """
    labels, _ = ndimage.label(mask, structure=EIGHT_CONNECTED)
    return labelled_boxes(anomaly_map, labels, min_area)


def labelled_boxes(anomaly_map: np.ndarray, labels: np.ndarray, min_area: int) -> list[Box]:
    """`find_boxes` of the regions of a label image (0: none; labels may be missing)."""
    boxes = []
    for label, found in enumerate(ndimage.find_objects(labels), start=1):
        if found is None:
            continue
        rows, cols = found
        # Areas and peaks from each region's own box: ndimage.maximum sorts the whole map,
        # seconds at 12 MP, and a bincount of the labels takes 8 bytes per pixel.
        inside = labels[rows, cols] == label
        area = np.count_nonzero(inside)
        if area < min_area:
            continue
        peak = region_peak(anomaly_map[rows, cols], inside)
        boxes.append(
            Box(
                x0=cols.start,
                y0=rows.start,
                x1=cols.stop,
                y1=rows.stop,
                score=peak,
                area=int(area),
            )
        )
    return sorted(boxes, key=lambda box: box.score, reverse=True)


def region_peak(scores: np.ndarray, inside: np.ndarray) -> float:
    """The highest of `scores` where `inside` (no copy of them)."""
    return float(np.max(scores, where=inside, initial=-np.inf))


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
