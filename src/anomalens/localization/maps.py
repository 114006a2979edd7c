"""Upsample patch-score grids to image size and smooth them."""

import numpy as np
import torch
import torch.nn.functional as F

SMOOTHING_SIGMA = 4.0


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
        mode = "reflect" if min(x.shape[-2:]) > radius else "replicate"
        weight = kernel.view(1, 1, 1, -1) if horizontal else kernel.view(1, 1, -1, 1)
        x = F.conv2d(F.pad(x, pad, mode=mode), weight)
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
    result is smoothed with a Gaussian of `sigma` pixels.
    """
    height, width = image_size
    covered_h = min(max(round(extent[0]), 1), height)
    covered_w = min(max(round(extent[1]), 1), width)
    values = torch.from_numpy(np.ascontiguousarray(grid, dtype=np.float32))[None, None]
    values = F.interpolate(
        values, size=(covered_h, covered_w), mode="bilinear", align_corners=False
    )
    if (covered_h, covered_w) != (height, width):
        values = F.pad(values, (0, width - covered_w, 0, height - covered_h), mode="replicate")
    return gaussian_blur(values[0, 0], sigma).numpy()
