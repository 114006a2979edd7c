"""EfficientAD-S's networks (Batzner et al. 2024): a small patch description network (PDN) as
the student, and an autoencoder that sees the whole image through a 1 x 1 bottleneck."""

import torch
import torch.nn.functional as F
from torch import nn

from anomalens.methods.trained import Standardize

BOTTLENECK_SIDE = 1
"""The autoencoder's code is 1 x 1 (EfficientAD's): it can only describe the image as a whole,
so it learns the references' global layout, not where a given image's details lie."""


class PatchDescriptionNetwork(nn.Module):
    """EfficientAD-S's PDN: four convolutions and two average poolings, output stride 4 and a
    receptive field of 29 pixels (EfficientAD's 33, less one row of its last kernel, so that
    the output grid is the stride-4 teacher's), so that each output describes one small patch
    and cannot use context to reproduce a defect.

    Args:
        out_channels: channels of the output map.
        width: channels of the first convolution (EfficientAD-S: 128; the later ones twice it).
    """

    def __init__(self, out_channels: int, width: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(3, width, 4, padding=2),
            nn.ReLU(inplace=True),
            nn.AvgPool2d(2, stride=2),
            nn.Conv2d(width, 2 * width, 4, padding=2),
            nn.ReLU(inplace=True),
            nn.AvgPool2d(2, stride=2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(2 * width, out_channels, 3, padding=1),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images)


class Autoencoder(nn.Module):
    """EfficientAD's autoencoder: strided convolutions down to a 1 x 1 code of `latent`
    channels, then bilinear upsampling and convolutions back to `out_channels` maps, resized to
    the size `forward` is asked for.

    Args:
        out_channels: channels of the reconstructed feature map.
        latent: channels of the code.
        width: channels of the hidden layers.
    """

    def __init__(self, out_channels: int, latent: int, width: int):
        super().__init__()
        self.encoder = nn.Sequential(
            *_down(3, width),
            *_down(width, width),
            *_down(width, 2 * width),
            *_down(2 * width, 2 * width),
            *_down(2 * width, 2 * width),
            nn.AdaptiveAvgPool2d(BOTTLENECK_SIDE),
            nn.Conv2d(2 * width, latent, 1),
        )
        self.decoder = nn.ModuleList(
            [_up(latent, 2 * width), _up(2 * width, 2 * width), _up(2 * width, width)]
        )
        self.head = nn.Conv2d(width, out_channels, 3, padding=1)

    def forward(self, images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        code = self.encoder(images)
        for stage, block in enumerate(self.decoder, start=1):
            side = [max(1, s * stage // len(self.decoder)) for s in size]
            code = block(F.interpolate(code, side, mode="bilinear"))
        return self.head(F.interpolate(code, size, mode="bilinear"))


def _down(inputs: int, outputs: int) -> list[nn.Module]:
    return [nn.Conv2d(inputs, outputs, 4, stride=2, padding=1), nn.ReLU(inplace=True)]


def _up(inputs: int, outputs: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(inputs, outputs, 3, padding=1), nn.ReLU(inplace=True))


class EfficientADNetwork(nn.Module):
    """The student (teacher regression and autoencoder regression in one PDN of 2·C outputs),
    the autoencoder, the teacher features' standardisation, and the map normalisation.

    Args:
        channels: C, the teacher features' channels.
        width: the PDN's first width (the autoencoder's is half of it).
        latent: the autoencoder's code channels.
    """

    def __init__(self, channels: int, width: int, latent: int):
        super().__init__()
        self.channels = channels
        self.student = PatchDescriptionNetwork(2 * channels, width)
        self.autoencoder = Autoencoder(channels, latent, max(8, width // 2))
        self.standardize = Standardize(channels)
        self.register_buffer("map_scales", torch.ones(2))
        """Typical high values (a quantile over the references) of the local and the global
        map, which bring the two to one scale before they are averaged."""

    def maps(
        self, images: torch.Tensor, teacher: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(local, global, autoencoder-regression) squared errors, each (N, C, h, w), of
        `images` against their standardised `teacher` features on the teacher's grid: student
        against teacher, student against autoencoder, autoencoder against teacher."""
        size = tuple(teacher.shape[-2:])
        student = F.interpolate(self.student(images), size, mode="bilinear")
        reconstruction = self.autoencoder(images, size)
        local = (teacher - student[:, : self.channels]).square()
        global_ = (reconstruction.detach() - student[:, self.channels :]).square()
        return local, global_, (teacher - reconstruction).square()

    def anomaly(self, images: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """(N, h, w) anomaly map: the mean of the local and global maps (channel means), each
        divided by its scale."""
        local, global_, _ = self.maps(images, teacher)
        pair = torch.stack([local.mean(dim=1), global_.mean(dim=1)], dim=1)
        return (pair / self.map_scales[None, :, None, None]).mean(dim=1)
