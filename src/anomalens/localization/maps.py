"""Upsample patch-score grids to image size and smooth them."""

import numpy as np
import torch
import torch.nn.functional as F

SMOOTHING_SIGMA = 4.0
ROWS_PER_STEP = 256
"""Rows of the full-resolution map computed at a time; bounds every intermediate to the grid's
and this band's size, so that a map costs its own 4 bytes per pixel and little more."""


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """Normalised 1-D Gaussian kernel truncated at 4 sigma."""
    radius = max(int(4.0 * sigma + 0.5), 1)
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian smoothing of a (H, W) tensor with reflected borders (replicated
    when a side is no longer than the kernel's radius, which reflection cannot pad)."""
    if sigma <= 0:
        return image
    kernel = gaussian_kernel(sigma)
    radius = kernel.numel() // 2
    x = image[None, None]
    for horizontal in (True, False):
        pad = (radius, radius, 0, 0) if horizontal else (0, 0, radius, radius)
        weight = kernel.view(1, 1, 1, -1) if horizontal else kernel.view(1, 1, -1, 1)
        x = F.conv2d(F.pad(x, pad, mode=_border(x.shape[-2:], radius)), weight)
    return x[0, 0]


def anomaly_map(
    grid: np.ndarray,
    extent: tuple[float, float],
    image_size: tuple[int, int],
    sigma: float = SMOOTHING_SIGMA,
) -> np.ndarray:
    """Pixel anomaly map (H, W) float32 from a patch grid covering `extent` of the image.

    The grid is upsampled bilinearly onto the covered region, the uncovered bottom and right
    strips (left by cropping to a multiple of the stride) repeat the nearest edge values, and the
    result is smoothed with a Gaussian of `sigma` pixels. Every step acts on columns and rows
    separately, and linearly: the columns are resampled onto an (h, W) array, then the rows onto
    the map, ROWS_PER_STEP pixels at a time, each band one small matrix product of the few grid
    rows it reads. Beside the map's own 4 bytes per pixel, memory stays that of the (h, W) array.
    """
    height, width = image_size
    kernel = gaussian_kernel(sigma) if sigma > 0 else torch.ones(1)
    radius = kernel.numel() // 2
    border = _border((height, width), radius)
    values = torch.from_numpy(np.ascontiguousarray(grid, dtype=np.float32))
    columns = _taps(values.shape[1], round(extent[1]), width, radius, border)
    half = _resample(values.T, columns, kernel).T
    rows = _taps(values.shape[0], round(extent[0]), height, radius, border)
    return _resample(half, rows, kernel).numpy()


Taps = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""Per padded pixel along one axis: its two grid cells and the second one's weight."""


def _taps(cells: int, covered: int, size: int, radius: int, border: str) -> Taps:
    """Linear interpolation (align_corners=False, as F.interpolate) of `cells` values onto the
    first `covered` of `size` pixels, the last covered pixel repeated beyond, for every pixel
    from -radius to size + radius, reflected or replicated back inside per `border`."""
    covered = min(max(covered, 1), size)
    pixels = torch.arange(-radius, size + radius)
    if border == "reflect":
        pixels = torch.where(pixels < 0, -pixels, pixels)
        pixels = torch.where(pixels >= size, 2 * (size - 1) - pixels, pixels)
    pixels = pixels.clamp(0, covered - 1)
    source = ((pixels + 0.5) * (cells / covered) - 0.5).clamp(min=0)
    first = source.floor().long().clamp(max=cells - 1)
    return first, (first + 1).clamp(max=cells - 1), (source - first).float()


def _resample(values: torch.Tensor, taps: Taps, kernel: torch.Tensor) -> torch.Tensor:
    """`values` (cells, n) interpolated along its first axis per `taps` and smoothed with
    `kernel` (valid over the padded taps): (size, n), one band of output rows at a time."""
    first, second, weight = taps
    radius = kernel.numel() // 2
    size = len(first) - 2 * radius
    result = torch.empty(size, values.shape[1])
    for start in range(0, size, ROWS_PER_STEP):
        stop = min(start + ROWS_PER_STEP, size)
        band = slice(start, stop + 2 * radius)
        low, high = int(first[band].min()), int(second[band].max()) + 1
        # The band's (rows, cells) operator: each padded pixel's two weights, then the kernel.
        operator = torch.zeros(stop + 2 * radius - start, high - low)
        rows = torch.arange(len(operator))
        operator.index_put_((rows, first[band] - low), 1 - weight[band], accumulate=True)
        operator.index_put_((rows, second[band] - low), weight[band], accumulate=True)
        if radius:
            operator = F.conv2d(operator[None, None], kernel.view(1, 1, -1, 1))[0, 0]
        torch.matmul(operator, values[low:high], out=result[start:stop])
    return result


def _border(size: tuple[int, int], radius: int) -> str:
    """Reflected borders, or replicated when a side is no longer than `radius`."""
    return "reflect" if min(size) > radius else "replicate"
