"""f-AnoGAN (Schlegl et al., Medical Image Analysis 2019): a GAN learns the references'
appearance, an encoder maps images into its latent space; anomaly = what the generator cannot
reproduce."""

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from anomalens.errors import ConfigError
from anomalens.methods.fanogan.model import FAnoGANNetwork
from anomalens.methods.fanogan.training import FEATURE_WEIGHT, train
from anomalens.methods.trained import Inputs, TrainedMethod

IMAGES = "images"


class FAnoGAN(TrainedMethod):
    """Pixel anomaly = squared residual of the reconstruction G(E(x)); image score = its mean
    plus FEATURE_WEIGHT times the mean squared difference of the critic's features of x and
    G(E(x)) (f-AnoGAN's A(x)).

    Args:
        resolution: images are resized to this square side (a power of two, at least 16).
        latent: dimensions of the generator's code.
        width: channels of the critic's and encoder's first layer (the generator mirrors).
        gan_steps: generator updates of the WGAN-GP (each after five critic updates).
        encoder_steps: updates of the izi_f encoder.
        step_images: images per update.
        learning_rate: Adam's learning rate.
        seed: seeds initialisation, latent draws and batch draws.
    """

    name = "fanogan"

    def __init__(
        self,
        resolution: int = 64,
        latent: int = 64,
        width: int = 16,
        gan_steps: int = 200,
        encoder_steps: int = 200,
        step_images: int = 16,
        learning_rate: float = 2e-4,
        seed: int = 0,
    ):
        if resolution < 16 or resolution & (resolution - 1):
            raise ConfigError(f"resolution must be a power of two of at least 16, got {resolution}")
        super().__init__(seed, top_fraction=0.0)
        self.resolution = resolution
        self.latent = latent
        self.width = width
        self.gan_steps = gan_steps
        self.encoder_steps = encoder_steps
        self.step_images = step_images
        self.learning_rate = learning_rate

    def config(self) -> dict[str, Any]:
        return {
            "resolution": self.resolution,
            "latent": self.latent,
            "width": self.width,
            "gan_steps": self.gan_steps,
            "encoder_steps": self.encoder_steps,
            "step_images": self.step_images,
            "learning_rate": self.learning_rate,
            "seed": self.seed,
        }

    def inputs(self, images: list[np.ndarray], progress: bool = False) -> Inputs:
        side = (self.resolution, self.resolution)
        resized = [
            F.interpolate(
                torch.from_numpy(image).permute(2, 0, 1).float()[None] / 127.5 - 1.0,
                size=side,
                mode="bilinear",
                antialias=True,
            )
            for image in images
        ]
        return {IMAGES: torch.cat(resized)}

    def new_network(self) -> nn.Module:
        return FAnoGANNetwork(self.latent, self.width, self.resolution)

    def train_network(self, inputs: Inputs, progress: bool, label: str) -> nn.Module:
        return train(
            self.new_network(),
            inputs[IMAGES],
            self.gan_steps,
            self.encoder_steps,
            self.step_images,
            self.learning_rate,
            progress,
            label,
        )

    def network_scores(
        self, network: nn.Module, inputs: Inputs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        pixel, feature = network.residuals(inputs[IMAGES])
        return pixel, pixel.mean(dim=(1, 2)) + FEATURE_WEIGHT * feature
