"""SimpleNet's scoring head: a linear feature adaptor and an MLP discriminator."""

import torch
from torch import nn


class PatchDiscriminator(nn.Module):
    """Maps (N, C) frozen patch features to (N,) anomaly logits (higher is more anomalous).

    Args:
        channels: feature channels C.
        hidden: units of the discriminator's hidden layer.
    """

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.adaptor = nn.Linear(channels, channels)
        self.discriminator = nn.Sequential(
            nn.Linear(channels, hidden),
            nn.BatchNorm1d(hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, 1),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.discriminate(self.adaptor(features))

    def discriminate(self, adapted: torch.Tensor) -> torch.Tensor:
        """Logits of already adapted features."""
        return self.discriminator(adapted)[:, 0]
