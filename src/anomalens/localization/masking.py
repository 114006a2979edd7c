"""Zero-shot foreground masking from an image's own patch features (AnomalyDINO).

The first principal component of an image's patch features usually separates object from
background. Patches on the background side are ignored when scoring, so that background clutter
cannot raise false alarms. Whether a product is masked at all is decided once, on the first
reference, by `should_mask`: only when the split is clean and the background surrounds the object.
"""

import numpy as np
from scipy import ndimage

CENTER_BORDER = 0.2
"""Fraction of the grid trimmed from each side to get the centre region."""


def first_component(features: np.ndarray) -> np.ndarray:
    """Projection of (h, w, C) patch features on their first principal component, (h, w)."""
    height, width, channels = features.shape
    flat = features.reshape(-1, channels).astype(np.float64)
    flat -= flat.mean(axis=0)
    _, _, components = np.linalg.svd(flat, full_matrices=False)
    return (flat @ components[0]).reshape(height, width)


def foreground_mask(features: np.ndarray) -> np.ndarray:
    """(h, w) bool foreground patches of one image: positive side of the first component,
    sign flipped when the centre comes out as background, then dilated and closed (3x3)."""
    _, mask = _split(features)
    structure = np.ones((3, 3), dtype=bool)
    mask = ndimage.binary_dilation(mask, structure)
    return ndimage.binary_closing(mask, structure, border_value=1)


def should_mask(features: np.ndarray) -> bool:
    """Masking test on the first reference's (h, w, C) patch features.

    Mask only when the first component splits the patches cleanly into two groups (between-group
    variance at least 80% of the total; a unimodal Gaussian split at its mean gives 64%), the
    foreground covers 5-85% of the image, and at least 80% of the border patches are background.
    Close-ups and textures fail one of these. The outermost ring of patches is left out, since
    a convolutional backbone's padding alone can make it look like a background frame.
    """
    component, mask = _split(features[1:-1, 1:-1] if min(features.shape[:2]) > 4 else features)
    fraction = mask.mean()
    if not 0.05 <= fraction <= 0.85:
        return False
    inside, outside = component[mask], component[~mask]
    between = fraction * (1 - fraction) * (inside.mean() - outside.mean()) ** 2
    if between < 0.8 * component.var():
        return False
    border = np.concatenate([mask[0], mask[-1], mask[1:-1, 0], mask[1:-1, -1]])
    return bool((~border).mean() >= 0.8)


def _split(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First-component projection and the side of it that holds the image centre."""
    component = first_component(features)
    mask = component > 0
    if _center(mask).mean() <= 0.35:
        mask = ~mask
    return component, mask


def _center(mask: np.ndarray) -> np.ndarray:
    height, width = mask.shape
    top, left = int(height * CENTER_BORDER), int(width * CENTER_BORDER)
    return mask[top : height - top or None, left : width - left or None]
