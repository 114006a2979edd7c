"""Feature autoencoder (as in DFR, Shi et al. 2021): reconstruction of frozen backbone features;
anomaly = reconstruction error per position."""

from typing import Any

import torch
from torch import nn

from anomalens.methods.feature_autoencoder.model import FeatureAutoencoder
from anomalens.methods.trained import FeatureMethod, Inputs, stacked, train_steps


class FeatureAutoencoderMethod(FeatureMethod):
    """Patch anomaly = squared error of a convolutional autoencoder that reconstructs the
    references' standardised backbone features; image score = mean of the top 1% patch scores.

    A pixel autoencoder trained from scratch learns to copy textured images, defects included
    (docs/comparison.md); the backbone's features already separate normal texture from
    defects, so reconstructing them through a narrow code is a much easier problem that a
    small network learns from a few references in seconds.

    Args:
        backbone: registered backbone name.
        resolution: both image sides are resized to this many pixels.
        levels: backbone levels reconstructed (each L2-normalised per position, stacked on the
            finest grid).
        weights: optional path to the backbone weights.
        hidden: channels of the layers around the code.
        bottleneck: channels of the code (at half the grid's side).
        steps: optimisation steps per network (fixed, so training time does not grow with
            the references).
        step_images: feature maps per step.
        learning_rate: Adam's learning rate.
        top_fraction: fraction of highest patch scores averaged into the image score.
        batch_size: images per backbone forward pass.
        seed: seeds weight initialisation and batch draws.
    """

    name = "feature_autoencoder"

    def __init__(
        self,
        backbone: str = "efficientnet_lite0",
        resolution: int = 256,
        levels: tuple[str, ...] = ("s16", "s32_early"),
        weights: str | None = None,
        hidden: int = 256,
        bottleneck: int = 32,
        steps: int = 200,
        step_images: int = 8,
        learning_rate: float = 1e-3,
        top_fraction: float = 0.01,
        batch_size: int = 8,
        seed: int = 0,
    ):
        super().__init__(backbone, resolution, levels, weights, batch_size, seed, top_fraction)
        self.hidden = hidden
        self.bottleneck = bottleneck
        self.steps = steps
        self.step_images = step_images
        self.learning_rate = learning_rate

    def config(self) -> dict[str, Any]:
        return {
            **self.extractor_config(),
            "hidden": self.hidden,
            "bottleneck": self.bottleneck,
            "steps": self.steps,
            "step_images": self.step_images,
            "learning_rate": self.learning_rate,
            "top_fraction": self.top_fraction,
            "seed": self.seed,
        }

    def new_network(self) -> nn.Module:
        return FeatureAutoencoder(sum(self.channels.values()), self.hidden, self.bottleneck)

    def train_network(self, inputs: Inputs, progress: bool, label: str) -> nn.Module:
        network = self.new_network()
        features = {"features": stacked(inputs, self.extractor.levels)}
        network.standardize.fit(features["features"])
        return train_steps(
            network,
            features,
            lambda batch: network.residual(batch["features"]).mean(),
            self.steps,
            self.step_images,
            self.learning_rate,
            progress,
            label,
        )

    def network_scores(
        self, network: nn.Module, inputs: Inputs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        maps = network.residual(stacked(inputs, self.extractor.levels))
        return maps, self.top_scores(maps)
