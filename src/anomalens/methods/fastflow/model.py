"""FastFlow's 2D normalizing flow (Yu et al. 2021): affine coupling steps whose subnetworks are
convolutions, alternating 3x3 and 1x1 kernels, written in plain torch."""

import torch
from torch import nn

from anomalens.methods.trained import Standardize

SCALE_CLAMP = 2.0
"""Log-scales are squashed into (-SCALE_CLAMP, SCALE_CLAMP) (soft clamping), which keeps the
flow invertible and training stable."""


class AffineCoupling(nn.Module):
    """One flow step: a fixed channel permutation, then the second half of the channels scaled
    and shifted by a convolutional function of the first half.

    Args:
        channels: feature channels (at least 2).
        hidden: channels of the subnetwork's hidden layer.
        kernel: the subnetwork's kernel size (3 sees the neighbourhood, 1 the position).
        permutation: the channel order this step reads its input in.
    """

    def __init__(self, channels: int, hidden: int, kernel: int, permutation: torch.Tensor):
        super().__init__()
        self.register_buffer("permutation", permutation)
        self.split = channels // 2
        padding = kernel // 2
        self.subnet = nn.Sequential(
            nn.Conv2d(self.split, hidden, kernel, padding=padding),
            nn.ReLU(),
            nn.Conv2d(hidden, 2 * (channels - self.split), kernel, padding=padding),
        )
        nn.init.zeros_(self.subnet[-1].weight)  # every step starts as the identity
        nn.init.zeros_(self.subnet[-1].bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The transformed (B, C, h, w) maps and the (B, h, w) log-determinant per position."""
        x = x[:, self.permutation]
        kept, changed = x[:, : self.split], x[:, self.split :]
        log_scale, shift = self.subnet(kept).chunk(2, dim=1)
        log_scale = SCALE_CLAMP * torch.tanh(log_scale / SCALE_CLAMP)
        changed = changed * log_scale.exp() + shift
        return torch.cat([kept, changed], dim=1), log_scale.sum(dim=1)


class FeatureFlow(nn.Module):
    """A flow that maps standardised (B, C, h, w) features to a standard normal per position.

    Args:
        channels: feature channels C.
        steps: coupling steps.
        hidden_ratio: the subnetworks' hidden channels, as a fraction of C.
        seed: draws the fixed channel permutations.
    """

    def __init__(self, channels: int, steps: int, hidden_ratio: float, seed: int = 0):
        super().__init__()
        self.standardize = Standardize(channels)
        generator = torch.Generator().manual_seed(seed)
        hidden = max(int(channels * hidden_ratio), 1)
        self.steps = nn.ModuleList(
            AffineCoupling(
                channels,
                hidden,
                3 if index % 2 == 0 else 1,
                torch.randperm(channels, generator=generator),
            )
            for index in range(steps)
        )

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Latent (B, C, h, w) of `features` and the (B, h, w) total log-determinant."""
        z = self.standardize(features)
        log_det = z.new_zeros(z.shape[0], *z.shape[2:])
        for step in self.steps:
            z, step_log_det = step(z)
            log_det = log_det + step_log_det
        return z, log_det

    def negative_log_likelihood(self, features: torch.Tensor) -> torch.Tensor:
        """(B, h, w) negative log-likelihood per position and channel (up to a constant): the
        training loss's terms."""
        z, log_det = self(features)
        return (0.5 * z.square().sum(dim=1) - log_det) / z.shape[1]

    def anomaly(self, features: torch.Tensor) -> torch.Tensor:
        """(B, h, w) half the mean squared latent per position: how far from the normal
        features' typical set a position maps (FastFlow's map, before its exponential)."""
        z, _ = self(features)
        return 0.5 * z.square().mean(dim=1)
