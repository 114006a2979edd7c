"""Threshold an anomaly map (with hysteresis) and box its connected regions."""

from collections.abc import Iterator

import numpy as np
from scipy import ndimage

from anomalens.results import Box

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
"""Pixels touching by an edge or a corner belong to one region (as AUPRO counts regions)."""


def hysteresis_mask(anomaly_map: np.ndarray, threshold: float, low: float = 1.0) -> np.ndarray:
    """(H, W) bool: the 8-connected regions of pixels at or above `low` × `threshold` that hold
    a pixel at or above `threshold` (`low` 1.0: the plain threshold). A defect's region so
    grows from its peak down its flanks, and fragments of one defect joined by slightly weaker
    pixels become one region, while weak regions without a strong pixel stay out."""
    strong = anomaly_map >= threshold
    if low >= 1.0 or not strong.any():
        return strong
    labels, _ = ndimage.label(anomaly_map >= low * threshold, structure=EIGHT_CONNECTED)
    seeded = np.zeros(labels.max() + 1, dtype=bool)
    seeded[labels[strong]] = True
    seeded[0] = False
    return seeded[labels]


def extract_regions(
    anomaly_map: np.ndarray, threshold: float, low: float, min_area: int
) -> tuple[np.ndarray, list[Box]]:
    """The mask (`hysteresis_mask`) and the boxes (`find_boxes`) of an anomaly map."""
    mask = hysteresis_mask(anomaly_map, threshold, low)
    return mask, find_boxes(anomaly_map, mask, min_area)


def find_boxes(anomaly_map: np.ndarray, mask: np.ndarray, min_area: int) -> list[Box]:
    """Boxes around the 8-connected regions of `mask` with at least `min_area` pixels.

    Each box carries its region's peak score and pixel area; the strongest region comes first.
    """
    labels, _ = ndimage.label(mask, structure=EIGHT_CONNECTED)
    boxes = []
    for label, (rows, cols) in enumerate(ndimage.find_objects(labels), start=1):
        # Areas and peaks from each region's own box: ndimage.maximum sorts the whole map,
        # seconds at 12 MP, and a bincount of the labels takes 8 bytes per pixel.
        inside = labels[rows, cols] == label
        area = np.count_nonzero(inside)
        if area < min_area:
            continue
        peak = np.max(anomaly_map[rows, cols], where=inside, initial=-np.inf)  # no copy
        boxes.append(
            Box(
                x0=cols.start,
                y0=rows.start,
                x1=cols.stop,
                y1=rows.stop,
                score=float(peak),
                area=int(area),
            )
        )
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
