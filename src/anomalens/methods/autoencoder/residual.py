"""Per-pixel reconstruction residuals: the anomaly map and, averaged, the training loss."""

from collections.abc import Callable

import torch
import torch.nn.functional as F

from anomalens.localization.maps import gaussian_kernel

SSIM_SIGMA = 1.5
SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2
"""Standard SSIM constants (Wang et al. 2004) for images in [0, 1]."""


def l2_residual(images: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
    """(B, H, W) squared L2 distance per pixel, averaged over the colour channels."""
    return (images - reconstructions).square().mean(dim=1)


def ssim_residual(images: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
    """(B, H, W) structural dissimilarity 1 - SSIM per pixel, averaged over the colour channels.

    Local statistics use a Gaussian window (sigma 1.5 pixels) with reflected borders, so the map
    has the input's size.
    """
    channels = images.shape[1]
    profile = gaussian_kernel(SSIM_SIGMA).to(images.dtype)
    window = (profile[:, None] * profile[None, :]).expand(channels, 1, -1, -1).contiguous()
    radius = len(profile) // 2

    def local_mean(values: torch.Tensor) -> torch.Tensor:
        padded = F.pad(values, [radius] * 4, mode="reflect")
        return F.conv2d(padded, window, groups=channels)

    mean_x, mean_y = local_mean(images), local_mean(reconstructions)
    var_x = local_mean(images.square()) - mean_x.square()
    var_y = local_mean(reconstructions.square()) - mean_y.square()
    covariance = local_mean(images * reconstructions) - mean_x * mean_y
    ssim = ((2 * mean_x * mean_y + SSIM_C1) * (2 * covariance + SSIM_C2)) / (
        (mean_x.square() + mean_y.square() + SSIM_C1) * (var_x + var_y + SSIM_C2)
    )
    return (1.0 - ssim).mean(dim=1)


RESIDUALS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "l2": l2_residual,
    "ssim": ssim_residual,
}
"""Residual name -> function of (images, reconstructions), both (B, 3, H, W) in [0, 1]."""
