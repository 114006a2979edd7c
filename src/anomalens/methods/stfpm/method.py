"""STFPM (Wang et al. 2021): a student network learns to reproduce the frozen teacher
backbone's multi-level features on normal images; anomaly = where it fails."""

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from anomalens.errors import ConfigError
from anomalens.methods.stfpm.model import Student, feature_distance
from anomalens.methods.trained import IMAGES, FeatureMethod, Inputs, train_steps


class STFPM(FeatureMethod):
    """Patch anomaly = product over levels of the student-teacher distance of the L2-normalised
    features, each level resized to the finest grid; image score = mean of the top 1% patch
    scores.

    The student, the teacher's architecture randomly initialised, only learns to match the
    teacher on what the references show; elsewhere the two disagree.

    Args:
        backbone: the teacher, an EfficientNet-Lite ("efficientnet_lite0" or "_lite2").
        resolution: both image sides are resized to this many pixels.
        levels: the levels matched (STFPM: three consecutive stages).
        weights: optional path to the teacher's weights.
        steps: optimisation steps per student (fixed, so training time does not grow with the
            references).
        step_images: images per step.
        learning_rate: Adam's learning rate.
        top_fraction: fraction of highest patch scores averaged into the image score.
        batch_size: images per teacher forward pass.
        seed: seeds the student's initialisation and batch draws.
    """

    name = "stfpm"

    def __init__(
        self,
        backbone: str = "efficientnet_lite0",
        resolution: int = 192,
        levels: tuple[str, ...] = ("s4", "s8", "s16"),
        weights: str | None = None,
        steps: int = 100,
        step_images: int = 4,
        learning_rate: float = 1e-3,
        top_fraction: float = 0.01,
        batch_size: int = 8,
        seed: int = 0,
    ):
        if not backbone.startswith("efficientnet_lite"):
            raise ConfigError(
                f"stfpm's student copies an EfficientNet-Lite teacher, not {backbone}"
            )
        super().__init__(backbone, resolution, levels, weights, batch_size, seed, top_fraction)
        self.steps = steps
        self.step_images = step_images
        self.learning_rate = learning_rate

    def config(self) -> dict[str, Any]:
        return {
            **self.extractor_config(),
            "steps": self.steps,
            "step_images": self.step_images,
            "learning_rate": self.learning_rate,
            "top_fraction": self.top_fraction,
            "seed": self.seed,
        }

    def inputs(self, images: list[np.ndarray], progress: bool = False) -> Inputs:
        return {
            **super().inputs(images, progress),
            IMAGES: self.preprocessed(images),
        }

    def new_network(self) -> nn.Module:
        return Student(self.extractor.backbone_name, self.extractor.levels)

    def train_network(self, inputs: Inputs, progress: bool, label: str) -> nn.Module:
        student = self.new_network()

        def loss(batch: Inputs) -> torch.Tensor:
            predicted = student(batch[IMAGES])
            return sum(
                feature_distance(batch[level], predicted[level]).mean()
                for level in self.extractor.levels
            )

        return train_steps(
            student, inputs, loss, self.steps, self.step_images, self.learning_rate, progress, label
        )

    def network_scores(
        self, network: nn.Module, inputs: Inputs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        predicted = network(inputs[IMAGES])
        distances = [feature_distance(inputs[level], predicted[level]) for level in predicted]
        size = max((d.shape[-2:] for d in distances), key=lambda s: s[0] * s[1])
        maps = torch.stack(
            [F.interpolate(d[:, None], size, mode="bilinear")[:, 0] for d in distances]
        ).prod(dim=0)
        return maps, self.top_scores(maps)
