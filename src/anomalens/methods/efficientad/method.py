"""EfficientAD-S (Batzner et al. 2024) on the frozen backbone's stride-4 features: a small
student learns the teacher's patch features, an autoencoder the image as a whole."""

from typing import Any

import numpy as np
import torch
from torch import nn

from anomalens.errors import ConfigError
from anomalens.methods.efficientad.model import EfficientADNetwork
from anomalens.methods.trained import IMAGES, FeatureMethod, Inputs, batches, stacked, train_steps
from anomalens.validation import integer, number

TEACHER = "teacher"
"""The inputs' key of the teacher features: the levels stacked on the finest grid."""
MAP_SCALE_QUANTILE = 0.995
"""Each map is divided by this quantile of its values over the training images (EfficientAD's
q_b), so that the local and the global map weigh alike."""


class EfficientAD(FeatureMethod):
    """Patch anomaly = mean of the local map (student against teacher) and the global map
    (student against autoencoder), each divided by its 99.5% quantile over the references;
    image score = mean of the top 1% patch scores.

    The student is EfficientAD-S's patch description network (receptive field 29 px) with
    2·C outputs: C regress the teacher's features, trained with EfficientAD's hard-feature loss
    (only the squared errors above their `hard_quantile` count), so that it learns what is
    hard to predict in normal patches instead of averaging it away; the other C regress the
    autoencoder's reconstruction of the teacher features from a 1 x 1 code. A defect the
    student cannot describe raises the local map; a part that is in the wrong place or
    missing, which the code cannot describe, raises the global map.

    Differences from the paper, for lack of ImageNet offline and of a GPU: the teacher is the
    embedded backbone itself (its `levels`, each L2-normalised, stacked on the finest grid and
    standardised per channel) instead of a PDN distilled from WideResNet-101, there is no
    ImageNet penalty on the student, the maps are scaled by their quantile only (the paper also
    shifts them by their 90% quantile, which would make scores negative), and the networks
    train for `steps` steps rather than 70,000.

    Args:
        backbone: the teacher, a registered backbone.
        resolution: both image sides are resized to this many pixels.
        levels: the teacher's levels (stride 4 first: the student's grid).
        weights: optional path to the teacher's weights.
        width: channels of the student's first layer (EfficientAD-S: 128; here smaller to
            train on a CPU); the autoencoder's layers have half as many.
        latent: channels of the autoencoder's 1 x 1 code.
        hard_quantile: the quantile of the student's squared errors below which they do not
            count in its loss (EfficientAD: 0.999).
        steps: optimisation steps per network (fixed, so training time does not grow with the
            references).
        step_images: images per step.
        learning_rate: Adam's learning rate.
        top_fraction: fraction of highest patch scores averaged into the image score.
        batch_size: images per teacher forward pass.
        seed: seeds the networks' initialisation and batch draws.
    """

    name = "efficientad"

    def __init__(
        self,
        backbone: str = "efficientnet_lite0",
        resolution: int = 256,
        levels: tuple[str, ...] = ("s4", "s8"),
        weights: str | None = None,
        width: int = 32,
        latent: int = 64,
        hard_quantile: float = 0.999,
        steps: int = 150,
        step_images: int = 4,
        learning_rate: float = 1e-3,
        top_fraction: float = 0.01,
        batch_size: int = 8,
        seed: int = 0,
    ):
        number("hard_quantile", hard_quantile, minimum=0, maximum=1)
        integer("width", width, minimum=1), integer("latent", latent, minimum=1)
        super().__init__(backbone, resolution, levels, weights, batch_size, seed, top_fraction)
        if self.extractor.model.strides[self.extractor.levels[0]] != 4:
            raise ConfigError(
                f"efficientad's student works at stride 4; the first level must be one, got "
                f"{self.extractor.levels[0]!r}"
            )
        self.width = width
        self.latent = latent
        self.hard_quantile = hard_quantile
        self.steps = steps
        self.step_images = step_images
        self.learning_rate = learning_rate

    def config(self) -> dict[str, Any]:
        return {
            **self.extractor_config(),
            "width": self.width,
            "latent": self.latent,
            "hard_quantile": self.hard_quantile,
            "steps": self.steps,
            "step_images": self.step_images,
            "learning_rate": self.learning_rate,
            "top_fraction": self.top_fraction,
            "seed": self.seed,
        }

    def inputs(self, images: list[np.ndarray], progress: bool = False) -> Inputs:
        levels = super().inputs(images, progress)
        return {
            IMAGES: self.preprocessed(images),
            TEACHER: stacked(levels, self.extractor.levels),
        }

    def new_network(self) -> nn.Module:
        return EfficientADNetwork(sum(self.channels.values()), self.width, self.latent)

    def train_network(self, inputs: Inputs, progress: bool, label: str) -> nn.Module:
        network = self.new_network()
        network.standardize.fit(inputs[TEACHER])

        def loss(batch: Inputs) -> torch.Tensor:
            teacher = network.standardize(batch[TEACHER])
            local, global_, reconstruction = network.maps(batch[IMAGES], teacher)
            hard = local[local >= torch.quantile(local.detach().flatten(), self.hard_quantile)]
            return hard.mean() + global_.mean() + reconstruction.mean()

        train_steps(
            network, inputs, loss, self.steps, self.step_images, self.learning_rate, progress, label
        )
        pairs = []
        with torch.inference_mode():
            for chunk in batches(inputs):
                local, global_, _ = network.maps(chunk[IMAGES], network.standardize(chunk[TEACHER]))
                pairs.append(torch.stack([local.mean(dim=1), global_.mean(dim=1)], dim=1))
            maps = torch.cat(pairs).transpose(0, 1).flatten(1)
            scales = torch.quantile(maps, MAP_SCALE_QUANTILE, dim=1)
        network.map_scales.copy_(scales.clamp_min(1e-12))
        return network

    def network_scores(
        self, network: nn.Module, inputs: Inputs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        maps = network.anomaly(inputs[IMAGES], network.standardize(inputs[TEACHER]))
        return maps, self.top_scores(maps)
