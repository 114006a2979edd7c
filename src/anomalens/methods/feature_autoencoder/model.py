"""A convolutional autoencoder of standardised backbone feature maps."""

import torch
import torch.nn.functional as F
from torch import nn

from anomalens.methods.trained import Standardize


class FeatureAutoencoder(nn.Module):
    """Reconstructs (B, C, h, w) feature maps through a code of `bottleneck` channels at half
    the grid's side, so that each position is rebuilt from its neighbourhood's summary rather
    than copied.

    Args:
        channels: feature channels C.
        hidden: channels of the layers around the code.
        bottleneck: channels of the code.
    """

    def __init__(self, channels: int, hidden: int, bottleneck: int):
        super().__init__()
        self.standardize = Standardize(channels)
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, hidden, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(hidden, hidden, 3, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(hidden, bottleneck, 1),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(bottleneck, hidden, 1),
            nn.LeakyReLU(0.2),
            nn.ConvTranspose2d(hidden, hidden, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(hidden, channels, 1),
        )

    def residual(self, features: torch.Tensor) -> torch.Tensor:
        """(B, h, w) mean squared reconstruction error per position of the standardised
        `features`."""
        target = self.standardize(features)
        reconstruction = self.decoder(self.encoder(target))
        if reconstruction.shape[-2:] != target.shape[-2:]:
            reconstruction = F.interpolate(reconstruction, target.shape[-2:], mode="bilinear")
        return (target - reconstruction).square().mean(dim=1)
