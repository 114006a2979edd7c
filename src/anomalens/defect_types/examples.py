"""Where the defect lies in an example image: its mask, its box, or the detector's own view."""

from collections.abc import Sequence
from numbers import Number
from pathlib import Path

import numpy as np

from anomalens.data.masks import load_mask
from anomalens.errors import ImageError
from anomalens.localization.regions import region_masks
from anomalens.results import Box, Result

MaskInput = str | Path | np.ndarray
BoxInput = Box | tuple[int, int, int, int]
"""A box as a `Box` or as pixel bounds (x0, y0, x1, y1), x1 and y1 exclusive."""
BoxesInput = BoxInput | Sequence[BoxInput]
"""One example's box, or several boxes on one image (an example each)."""


def example_regions(
    result: Result,
    name: str,
    mask: MaskInput | None = None,
    boxes: BoxesInput | None = None,
) -> list[np.ndarray]:
    """The (H, W) bool defect regions of one example image, one per example it gives.

    Args:
        result: the detector's result on the example.
        name: the example's file or name, for errors.
        mask: a mask file or (H, W) array (nonzero = defect), or None.
        boxes: a box around the defect, several boxes (one example each), or None.

    The region is the mask if given, else each box if given, else the strongest region the
    detector found. Raises ImageError naming the file when none can be found.
    """
    size = result.anomaly_map.shape
    if mask is not None:
        return [mask_region(mask, size, name)]
    if boxes is None:
        return [strongest_region(result, name)]
    if is_box(boxes):
        boxes = [boxes]
    if not boxes:
        raise ImageError(name, "no box given")
    return [box_region(box, size, name) for box in boxes]


def is_box(value: object) -> bool:
    """Whether `value` is one box (a `Box` or four numbers) rather than a list of boxes."""
    if isinstance(value, Box):
        return True
    return (
        isinstance(value, Sequence)
        and len(value) == 4
        and all(isinstance(v, Number) for v in value)
    )


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


def per_example(values: Sequence | None, kind: str, count: int) -> list:
    """`values` as a list of one entry per example (all None when not given); ValueError when
    their count is not `count`."""
    if values is None:
        return [None] * count
    if len(values) != count:
        raise ValueError(f"{len(values)} {kind} given for {count} example images")
    return list(values)
