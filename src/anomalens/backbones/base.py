"""What every backbone provides: named feature maps at known strides."""

from abc import ABC, abstractmethod

import torch
from torch import nn

from anomalens.errors import ConfigError


class Backbone(nn.Module, ABC):
    """A frozen pretrained encoder that maps an image batch to feature maps.

    Subclasses set:
        name: registry name, e.g. "efficientnet_lite0".
        mean, std: per-channel input normalisation applied to RGB values in [0, 1].
        strides: feature level name -> stride in input pixels, e.g. {"s8": 8, "s16": 16}.
        default_levels: the levels methods use when the user names none.
        size_multiple: input height and width must be multiples of this.
    """

    name: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    strides: dict[str, int]
    default_levels: tuple[str, ...]
    size_multiple: int

    @abstractmethod
    def forward(self, images: torch.Tensor, levels: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """Return {level: (B, C, H / stride, W / stride)} for normalised `images` (B, 3, H, W)."""

    def check_levels(self, levels: tuple[str, ...]) -> None:
        """Raise ValueError naming the valid levels when one of `levels` is unknown."""
        unknown = [level for level in levels if level not in self.strides]
        if unknown:
            raise ConfigError(
                f"backbone {self.name} has no feature level {unknown}; "
                f"choose from {sorted(self.strides)}"
            )
