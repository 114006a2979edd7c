"""Synthetic defects on good images: cut-paste (Li et al. 2021) and Perlin-noise-shaped regions
filled with a foreign texture (DRAEM, Zavrtanik et al. 2021).

Every synthesizer takes an RGB uint8 image and a numpy Generator and returns the altered copy
and a boolean (H, W) mask that covers every changed pixel and is never empty.
"""

from collections.abc import Callable

import numpy as np
from PIL import Image

Synthesizer = Callable[[np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]

PATCH_SIDE = (0.08, 0.3)
"""Side range of a pasted patch, as a fraction of the image's shorter side."""
PERLIN_LOG2_CELLS = (1, 3)
"""Range (low inclusive, high exclusive) of log2 of the Perlin lattice cells across an image
side that shape a region: 2 to 4 cells, blobs of a quarter to half the side."""
TEXTURE_OCTAVES = 5
"""Octaves of the fractal noise of a generated fill texture."""
PERLIN_THRESHOLD = 0.4
"""Noise above this (of about +-0.7) becomes the defect region."""
MIN_REGION = 0.005
"""Smallest Perlin region, as a fraction of the image area; smaller draws are redrawn."""
MAX_TRANSPARENCY = 0.5
"""Largest weight of the original pixels under a Perlin region (DRAEM's beta: faint defects)."""
JITTER = 0.25
"""Largest relative brightness and contrast change of a pasted patch."""


def perlin_noise(
    shape: tuple[int, int], cells: tuple[int, int], rng: np.random.Generator
) -> np.ndarray:
    """(H, W) gradient noise in about [-0.7, 0.7] with `cells` (rows, cols) lattice cells."""
    angles = rng.uniform(0.0, 2.0 * np.pi, (cells[0] + 1, cells[1] + 1))
    gradients = np.stack([np.cos(angles), np.sin(angles)], axis=-1)
    y = np.arange(shape[0]) * cells[0] / shape[0]
    x = np.arange(shape[1]) * cells[1] / shape[1]
    row, col = y.astype(int), x.astype(int)
    fy, fx = (y - row)[:, None], (x - col)[None, :]

    def corner(dy: int, dx: int) -> np.ndarray:
        g = gradients[(row + dy)[:, None], (col + dx)[None, :]]
        return g[..., 0] * (fy - dy) + g[..., 1] * (fx - dx)

    def fade(t: np.ndarray) -> np.ndarray:
        return t * t * t * (t * (6.0 * t - 15.0) + 10.0)

    u, v = fade(fy), fade(fx)
    top = corner(0, 0) + v * (corner(0, 1) - corner(0, 0))
    bottom = corner(1, 0) + v * (corner(1, 1) - corner(1, 0))
    return top + u * (bottom - top)


def cut_paste(
    image: np.ndarray, rng: np.random.Generator, source: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A rectangle of `source` (default: `image`), rotated by a multiple of 90 degrees, flipped
    and brightness/contrast jittered at random, pasted at a random place of `image`."""
    source = image if source is None else source
    height, width = image.shape[:2]
    short = min(height, width, *source.shape[:2])
    side_h, side_w = (max(int(rng.uniform(*PATCH_SIDE) * short), 2) for _ in range(2))
    top = rng.integers(0, source.shape[0] - side_h + 1)
    left = rng.integers(0, source.shape[1] - side_w + 1)
    patch = source[top : top + side_h, left : left + side_w].astype(np.float64)
    patch = np.rot90(patch, rng.integers(4))
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    contrast, brightness = 1.0 + rng.uniform(-JITTER, JITTER, 2)
    mean = patch.mean()
    patch = (patch - mean) * contrast + mean * brightness
    side_h, side_w = patch.shape[:2]
    top, left = rng.integers(0, height - side_h + 1), rng.integers(0, width - side_w + 1)
    result, mask = image.copy(), np.zeros((height, width), bool)
    result[top : top + side_h, left : left + side_w] = patch.clip(0, 255).astype(np.uint8)
    mask[top : top + side_h, left : left + side_w] = True
    return result, mask


def perlin_region(
    image: np.ndarray, rng: np.random.Generator, source: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A Perlin-noise-shaped region of `image` replaced by a foreign texture, partly
    transparent: a random colour modulated by fractal noise, or `source` (default: `image`)
    turned, flipped and resized over the image. Grey images get grey textures."""
    shape = image.shape[:2]
    mask = np.zeros(shape, bool)
    while mask.mean() < MIN_REGION:
        cells = (2 ** rng.integers(*PERLIN_LOG2_CELLS), 2 ** rng.integers(*PERLIN_LOG2_CELLS))
        mask = perlin_noise(shape, cells, rng) > PERLIN_THRESHOLD
    if rng.random() < 0.5:
        fill = _noise_texture(shape, rng)
    else:
        source = image if source is None else source
        turned = np.rot90(source, rng.integers(1, 4))[:, :: rng.choice([-1, 1])]
        fill = np.asarray(Image.fromarray(np.ascontiguousarray(turned)).resize(shape[::-1]))
        fill = 255.0 - fill if rng.random() < 0.5 else fill.astype(np.float64)
    if _is_grey(image):
        fill = np.repeat(fill.mean(axis=2, keepdims=True), 3, axis=2)
    beta = rng.uniform(0.0, MAX_TRANSPARENCY)
    result = image.astype(np.float64)
    result[mask] = beta * result[mask] + (1.0 - beta) * fill[mask]
    return np.where(mask[..., None], result.clip(0, 255).astype(np.uint8), image), mask


def random_defect(
    image: np.ndarray, rng: np.random.Generator, source: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """`cut_paste` or `perlin_region`, chosen with equal probability."""
    synthesize = cut_paste if rng.random() < 0.5 else perlin_region
    return synthesize(image, rng, source)


def _noise_texture(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) float texture: a random colour times fractal Perlin noise."""
    noise = sum(
        perlin_noise(shape, (2 ** (octave + 1),) * 2, rng) / 2**octave
        for octave in range(TEXTURE_OCTAVES)
    )
    colour = rng.uniform(0, 255, 3)
    return (colour * (1.0 + rng.uniform(0.5, 1.5) * noise[..., None])).clip(0, 255)


def _is_grey(image: np.ndarray) -> bool:
    return bool((image == image[..., :1]).all())
