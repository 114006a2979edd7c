"""Convolutional autoencoder, plain or variational, that reconstructs normal images."""

import torch
from torch import nn

WIDTH_MULTIPLIERS = (1, 2, 4, 4, 4)
"""Channels after each halving of the encoder, in units of the base width (decoder mirrors)."""
DOWNSAMPLING = 2 ** len(WIDTH_MULTIPLIERS)
"""The encoder halves the image side once per entry above; input sides must be multiples of
this."""


class ConvAutoencoder(nn.Module):
    """Encodes a (B, 3, S, S) image in [0, 1] to a (B, latent_channels, S/32, S/32) code and back.

    Args:
        width: channels of the first encoder layer; deeper layers have up to four times more.
        latent_channels: channels of the spatial code; a narrow code forces the network to
            learn the normal appearance rather than copy its input.
        variational: encode a Gaussian (mean and log-variance) and sample the code from it while
            training; the mean is used in eval mode, so scoring is deterministic.
    """

    def __init__(self, width: int = 32, latent_channels: int = 16, variational: bool = False):
        super().__init__()
        self.variational = variational
        widths = [width * multiplier for multiplier in WIDTH_MULTIPLIERS]
        layers: list[nn.Module] = []
        previous = 3
        for channels in widths:
            layers += [nn.Conv2d(previous, channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            previous = channels
        self.encoder = nn.Sequential(*layers)
        self.to_code = nn.Conv2d(previous, latent_channels * (2 if variational else 1), 1)
        layers = [nn.Conv2d(latent_channels, previous, 1), nn.LeakyReLU(0.2)]
        for channels in reversed(widths[:-1]):
            layers += [nn.ConvTranspose2d(previous, channels, 4, stride=2, padding=1)]
            layers += [nn.LeakyReLU(0.2)]
            previous = channels
        layers += [nn.ConvTranspose2d(previous, 3, 4, stride=2, padding=1), nn.Sigmoid()]
        self.decoder = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstruction of `images` and the KL divergence per code value (zero if not VAE)."""
        code = self.to_code(self.encoder(images))
        if not self.variational:
            return self.decoder(code), code.new_zeros(())
        mean, log_var = code.chunk(2, dim=1)
        noise = torch.randn_like(mean) if self.training else torch.zeros_like(mean)
        code = mean + noise * (0.5 * log_var).exp()
        kl = 0.5 * (mean.square() + log_var.exp() - 1.0 - log_var).mean()
        return self.decoder(code), kl
