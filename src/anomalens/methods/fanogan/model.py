"""f-AnoGAN's three networks (Schlegl et al. 2019): a DCGAN-style generator, a WGAN critic
whose last convolutional features also compare images, and an encoder into the latent space."""

import itertools
import math

import torch
from torch import nn


def _halvings(resolution: int) -> int:
    """Stride-2 layers between `resolution` and the 4 x 4 base."""
    return int(math.log2(resolution // 4))


def _down_path(width: int, resolution: int) -> tuple[nn.Sequential, int]:
    """Stride-2 convolutions from (B, 3, S, S) to (B, C, 4, 4), and C."""
    layers: list[nn.Module] = []
    channels, previous = width, 3
    for _ in range(_halvings(resolution)):
        layers += [nn.Conv2d(previous, channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        previous, channels = channels, min(channels * 2, 8 * width)
    return nn.Sequential(*layers), previous


class Generator(nn.Module):
    """Maps (B, latent) codes to (B, 3, S, S) images in [-1, 1]."""

    def __init__(self, latent: int, width: int, resolution: int):
        super().__init__()
        halvings = _halvings(resolution)
        channels = [min(width * 2**i, 8 * width) for i in reversed(range(halvings))]
        self.latent = latent
        self.project = nn.Sequential(
            nn.Linear(latent, channels[0] * 16), nn.Unflatten(1, (channels[0], 4, 4))
        )
        layers: list[nn.Module] = [nn.BatchNorm2d(channels[0]), nn.ReLU()]
        for previous, following in itertools.pairwise(channels):
            layers += [
                nn.ConvTranspose2d(previous, following, 4, stride=2, padding=1),
                nn.BatchNorm2d(following),
                nn.ReLU(),
            ]
        layers += [nn.ConvTranspose2d(channels[-1], 3, 4, stride=2, padding=1), nn.Tanh()]
        self.layers = nn.Sequential(*layers)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.layers(self.project(codes))


class Critic(nn.Module):
    """WGAN critic: (B, 3, S, S) images to (B,) scores (higher: more like the references); no
    batch normalisation, as the gradient penalty requires."""

    def __init__(self, width: int, resolution: int):
        super().__init__()
        self.convolutions, channels = _down_path(width, resolution)
        self.head = nn.Linear(channels * 16, 1)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C * 16) the last convolutional features, f(x) of f-AnoGAN."""
        return self.convolutions(images).flatten(1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))[:, 0]


class Encoder(nn.Module):
    """Maps (B, 3, S, S) images to (B, latent) codes (izi_f's encoder)."""

    def __init__(self, latent: int, width: int, resolution: int):
        super().__init__()
        self.convolutions, channels = _down_path(width, resolution)
        self.head = nn.Linear(channels * 16, latent)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.convolutions(images).flatten(1))


class FAnoGANNetwork(nn.Module):
    """The three networks, saved together."""

    def __init__(self, latent: int, width: int, resolution: int):
        super().__init__()
        self.generator = Generator(latent, width, resolution)
        self.critic = Critic(width, resolution)
        self.encoder = Encoder(latent, width, resolution)

    def residuals(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S, S) squared pixel residual of the reconstruction G(E(x)), channel mean, and
        (B,) mean squared difference of the critic's features of x and G(E(x))."""
        reconstruction = self.generator(self.encoder(images))
        pixel = (images - reconstruction).square().mean(dim=1)
        feature = (self.critic.features(images) - self.critic.features(reconstruction)).square()
        return pixel, feature.mean(dim=1)
