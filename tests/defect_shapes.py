"""Synthetic defects of distinct kinds on the core tests' textures, for naming defect types."""

import numpy as np
from images import texture, with_defect

PLACES = [(8, 10), (30, 50), (20, 70), (40, 20), (10, 40), (36, 60), (24, 30)]
"""(top, left) of the synthetic defects: five for the examples, two for the tests."""


def spot(seed: int, top: int, left: int) -> np.ndarray:
    """A texture with a bright square."""
    return with_defect(texture(seed), top=top, left=left, size=12)


def scratch(seed: int, top: int, left: int) -> np.ndarray:
    """A texture with a long dark line."""
    image = texture(seed)
    image[top : top + 3, left : left + 36] = 10
    return image


def checkerboard(seed: int, top: int, left: int) -> np.ndarray:
    """A texture with a black-and-white checkerboard patch, unlike spots and scratches."""
    image = texture(seed)
    rows, cols = np.mgrid[:16, :16]
    image[top : top + 16, left : left + 16] = np.where(
        ((rows // 2 + cols // 2) % 2)[..., None], 255, 0
    )
    return image


KINDS = {"spot": spot, "scratch": scratch, "checkerboard": checkerboard}
