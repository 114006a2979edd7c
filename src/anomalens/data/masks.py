"""Find and read pixel ground-truth masks."""

from pathlib import Path

import numpy as np

from anomalens.errors import ImageError
from anomalens.io.images import IMAGE_SUFFIXES, load_image

MASK_SUFFIXES = ("_mask", "")
"""A mask for image `<stem>.<ext>` is named `<stem>_mask.<ext>` (MVTec-AD) or `<stem>.<ext>`."""


def find_mask(folder: Path, stem: str) -> Path | None:
    """The mask in `folder` for the image named `stem`, or None when there is none; the
    suffix may be lower or upper case (`.png`, `.PNG`)."""
    lower = sorted(IMAGE_SUFFIXES)
    suffixes = lower + [suffix.upper() for suffix in lower]  # as listed on case-blind disks
    for ending in MASK_SUFFIXES:
        for suffix in suffixes:
            candidate = folder / f"{stem}{ending}{suffix}"
            if candidate.is_file():
                return candidate
    return None


def load_mask(path: Path, image_size: tuple[int, int]) -> np.ndarray:
    """Read `path` as a boolean (H, W) mask (nonzero = defective) for an image of `image_size`.

    Raises ImageError naming the mask when it is unreadable or its size differs from the image's.
    """
    array = load_image(path)
    if array.shape[:2] != tuple(image_size):
        height, width = array.shape[:2]
        raise ImageError(
            path, f"mask is {width}x{height} px but its image is {image_size[1]}x{image_size[0]} px"
        )
    return array.max(axis=2) > 0
