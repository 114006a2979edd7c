"""FastFlow (Yu et al. 2021) on the frozen backbone's feature maps: one 2D normalizing flow per
level; anomaly = how far a position's latent lies from the standard normal."""

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from anomalens.methods.fastflow.model import FeatureFlow
from anomalens.methods.trained import FeatureMethod, Inputs, train_steps


class FastFlow(FeatureMethod):
    """Patch anomaly = half the mean squared latent of each level's flow, resized to the finest
    level's grid and averaged over the levels; image score = mean of the top 1% patch scores.

    Each level's flow is trained by maximum likelihood on the references' standardised
    features; normal features map near the origin, anomalous ones far from it.

    Args:
        backbone: registered backbone name.
        resolution: both image sides are resized to this many pixels.
        levels: backbone levels, one flow each.
        weights: optional path to the backbone weights.
        flow_steps: coupling steps per flow (alternating 3x3 and 1x1 subnetworks).
        hidden_ratio: the subnetworks' hidden channels, as a fraction of the level's channels.
        steps: optimisation steps per network (fixed, so training time does not grow with
            the references).
        step_images: feature maps per step.
        learning_rate: Adam's learning rate.
        top_fraction: fraction of highest patch scores averaged into the image score.
        batch_size: images per backbone forward pass.
        seed: seeds weight initialisation, permutations and batch draws.
    """

    name = "fastflow"

    def __init__(
        self,
        backbone: str = "efficientnet_lite0",
        resolution: int = 256,
        levels: tuple[str, ...] = ("s16", "s32_early"),
        weights: str | None = None,
        flow_steps: int = 6,
        hidden_ratio: float = 0.5,
        steps: int = 200,
        step_images: int = 8,
        learning_rate: float = 1e-3,
        top_fraction: float = 0.01,
        batch_size: int = 8,
        seed: int = 0,
    ):
        super().__init__(backbone, resolution, levels, weights, batch_size, seed, top_fraction)
        self.flow_steps = flow_steps
        self.hidden_ratio = hidden_ratio
        self.steps = steps
        self.step_images = step_images
        self.learning_rate = learning_rate

    def config(self) -> dict[str, Any]:
        return {
            **self.extractor_config(),
            "flow_steps": self.flow_steps,
            "hidden_ratio": self.hidden_ratio,
            "steps": self.steps,
            "step_images": self.step_images,
            "learning_rate": self.learning_rate,
            "top_fraction": self.top_fraction,
            "seed": self.seed,
        }

    def new_network(self) -> nn.Module:
        return nn.ModuleDict(
            {
                level: FeatureFlow(channels, self.flow_steps, self.hidden_ratio, self.seed)
                for level, channels in self.channels.items()
            }
        )

    def train_network(self, inputs: Inputs, progress: bool, label: str) -> nn.Module:
        network = self.new_network()
        for level, flow in network.items():
            flow.standardize.fit(inputs[level])

        def loss(batch: Inputs) -> torch.Tensor:
            return sum(
                flow.negative_log_likelihood(batch[level]).mean() for level, flow in network.items()
            )

        return train_steps(
            network, inputs, loss, self.steps, self.step_images, self.learning_rate, progress, label
        )

    def network_scores(
        self, network: nn.Module, inputs: Inputs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        maps = [flow.anomaly(inputs[level]) for level, flow in network.items()]
        size = max((m.shape[-2:] for m in maps), key=lambda s: s[0] * s[1])
        resized = [F.interpolate(m[:, None], size, mode="bilinear")[:, 0] for m in maps]
        mean = torch.stack(resized).mean(dim=0)
        return mean, self.top_scores(mean)
