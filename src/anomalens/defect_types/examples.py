"""Where the defect lies in an example image: its mask, its box, or the detector's own view."""

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from anomalens.data.masks import load_mask
from anomalens.errors import ImageError
from anomalens.localization.regions import region_masks
from anomalens.results import Box, Result

MaskInput = str | Path | np.ndarray
BoxInput = Box | tuple[int, int, int, int]
"""A box as a `Box` or as pixel bounds (x0, y0, x1, y1), x1 and y1 exclusive."""


def example_regions(
    results: list[Result],
    names: list[str],
    masks: Sequence[MaskInput | None] | None = None,
    boxes: Sequence[BoxInput | None] | None = None,
) -> list[np.ndarray]:
    """The (H, W) bool defect region of each example image.

    Args:
        results: the detector's results on the examples.
        names: each example's file or name, for errors.
        masks: per example, a mask file or (H, W) array (nonzero = defect), or None.
        boxes: per example, a box around the defect, or None.

    An example's region is its mask if given, else its box if given, else the strongest region
    the detector found. Raises ImageError naming the file when none can be found.
    """
    masks = _per_example(masks, "masks", len(results))
    boxes = _per_example(boxes, "boxes", len(results))
    regions = []
    for result, name, mask, box in zip(results, names, masks, boxes, strict=True):
        size = result.anomaly_map.shape
        if mask is not None:
            regions.append(mask_region(mask, size, name))
        elif box is not None:
            regions.append(box_region(box, size, name))
        else:
            regions.append(strongest_region(result, name))
    return regions


def mask_region(mask: MaskInput, image_size: tuple[int, int], image_name: str) -> np.ndarray:
    """A mask file or array as an (H, W) bool region of an image of `image_size`.

    Raises ImageError naming the mask file (or the image, for an array) when it cannot be read,
    has another size than the image, or marks no pixel.
    """
    if isinstance(mask, str | Path):
        region, name = load_mask(Path(mask), image_size), str(mask)
    else:
        region, name = np.asarray(mask) > 0, f"mask of {image_name}"
        if region.ndim == 3:
            region = region.any(axis=2)
        if region.shape != tuple(image_size):
            raise ImageError(
                name,
                f"mask is {region.shape[1]}x{region.shape[0]} px but its image is "
                f"{image_size[1]}x{image_size[0]} px",
            )
    if not region.any():
        raise ImageError(name, "mask marks no defect pixel")
    return region


def box_region(box: BoxInput, image_size: tuple[int, int], image_name: str) -> np.ndarray:
    """The pixels inside `box` as an (H, W) bool region; ImageError if it holds no pixel."""
    x0, y0, x1, y1 = (box.x0, box.y0, box.x1, box.y1) if isinstance(box, Box) else box
    height, width = image_size
    region = np.zeros(image_size, dtype=bool)
    region[max(y0, 0) : min(y1, height), max(x0, 0) : min(x1, width)] = True
    if not region.any():
        raise ImageError(
            image_name, f"box ({x0}, {y0}, {x1}, {y1}) holds no pixel of the {width}x{height} image"
        )
    return region


def strongest_region(result: Result, image_name: str) -> np.ndarray:
    """The detector's strongest anomalous region; ImageError when it found none."""
    if not result.boxes:
        raise ImageError(
            image_name,
            "no defect region found (no pixel above the detector's pixel threshold); "
            "give a mask or a box",
        )
    return next(region_masks(result.mask, result.boxes[:1]))


def _per_example(values: Sequence | None, kind: str, count: int) -> list:
    if values is None:
        return [None] * count
    if len(values) != count:
        raise ValueError(f"{len(values)} {kind} given for {count} example images")
    return list(values)
