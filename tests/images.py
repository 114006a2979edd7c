"""Small synthetic images for the core tests: textures, defects, objects on a background."""

import numpy as np

HEIGHT, WIDTH = 64, 96


def texture(seed: int, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """A grey noisy texture, RGB uint8: what a good close-up looks like."""
    rng = np.random.default_rng(seed)
    gray = (128 + 12 * rng.standard_normal((height, width))).clip(0, 255).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


def with_defect(image: np.ndarray, top: int = 24, left: int = 40, size: int = 14) -> np.ndarray:
    """A copy of `image` with a bright square defect."""
    defective = image.copy()
    defective[top : top + size, left : left + size] = 250
    return defective


def object_on_background(seed: int, size: int = 128) -> np.ndarray:
    """A dark textured disk centred on a plain bright background."""
    rng = np.random.default_rng(seed)
    image = np.full((size, size, 3), 230, np.uint8)
    rows, cols = np.mgrid[:size, :size]
    disk = (rows - size / 2) ** 2 + (cols - size / 2) ** 2 < (0.28 * size) ** 2
    image[disk] = (60 + 25 * rng.standard_normal((disk.sum(), 3))).clip(0, 255).astype(np.uint8)
    return image
