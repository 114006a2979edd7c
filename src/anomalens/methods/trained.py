"""Shared machinery of methods that train networks on the references: cross-fitted folds for
held-out scores, the fold networks' mean for new images, seeded training, named-array state."""

from abc import abstractmethod
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from anomalens.features import FeatureExtractor
from anomalens.methods.base import Method, PatchScores, prefixed, top_fraction_mean
from anomalens.validation import ArraySpec

Inputs = dict[str, torch.Tensor]
"""What a network trains on and scores: named tensors whose first dimension is the image."""
NETWORK_PREFIX = "network{}."
"""State arrays of the i-th fold network start with this."""
SCORE_BATCH = 8
"""Images scored at a time."""
IMAGES = "images"
"""The inputs' key of the preprocessed images, for networks that see the images themselves."""


def subset(inputs: Inputs, indices: list[int]) -> Inputs:
    """The rows `indices` of every tensor of `inputs`."""
    rows = torch.tensor(indices, dtype=torch.long)
    return {name: value[rows] for name, value in inputs.items()}


def batches(inputs: Inputs) -> Iterator[Inputs]:
    """`inputs` in consecutive chunks of SCORE_BATCH images."""
    count = len(next(iter(inputs.values())))
    for start in range(0, count, SCORE_BATCH):
        yield subset(inputs, list(range(start, min(start + SCORE_BATCH, count))))


def stacked(inputs: Inputs, levels: tuple[str, ...]) -> torch.Tensor:
    """(N, C, h, w) of `levels`, each L2-normalised per position and resized bilinearly to the
    finest level's grid, concatenated along the channels."""
    size = max((tuple(inputs[level].shape[-2:]) for level in levels), key=lambda s: s[0] * s[1])
    parts = [F.normalize(inputs[level], dim=1) for level in levels]
    return torch.cat(
        [
            part if part.shape[-2:] == size else F.interpolate(part, size, mode="bilinear")
            for part in parts
        ],
        dim=1,
    )


class Standardize(nn.Module):
    """Per-channel standardisation with the training features' mean and standard deviation,
    kept as buffers so that they are saved with the network."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("std", torch.ones(channels))

    def fit(self, features: torch.Tensor) -> None:
        """Set the statistics from (N, C, h, w) `features`."""
        self.mean.copy_(features.mean(dim=(0, 2, 3)))
        self.std.copy_(features.std(dim=(0, 2, 3)).clamp_min(1e-6))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.mean[:, None, None]) / self.std[:, None, None]


def train_steps(
    network: nn.Module,
    inputs: Inputs,
    loss: Callable[[Inputs], torch.Tensor],
    steps: int,
    batch_size: int,
    learning_rate: float,
    progress: bool,
    label: str,
) -> nn.Module:
    """Train `network` in place with Adam for a fixed number of steps, each on `batch_size`
    images drawn from `inputs` with replacement (so the cost does not grow with the
    references), and return it in eval mode. `loss` maps a batch to the scalar to minimise."""
    optimizer = torch.optim.Adam(network.parameters(), lr=learning_rate)
    count = len(next(iter(inputs.values())))
    network.train()
    bar = tqdm(range(steps), desc=label, unit="step", disable=not progress)
    for _ in bar:
        value = loss(subset(inputs, torch.randint(count, (batch_size,)).tolist()))
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        bar.set_postfix(loss=f"{value.item():.4f}", refresh=False)
    bar.close()
    return network.eval()


class TrainedMethod(Method):
    """A method whose model is a network trained on the references.

    `fit_with_holdout` trains one network per fold (alternate images), each scoring the images
    it never saw; new images get the mean of the fold networks' maps and image scores, so the
    thresholds set from the held-out scores hold for the scores they are applied to (a network
    trained on every image would have a scale of its own), at the cost of `folds` trainings and
    no extra one. One reference trains one network on it. Every training is seeded by
    (seed, fold), so a fixed seed gives the same model.

    Subclasses turn images into `inputs`, build and train a network on them, and score them.
    """

    folds = 2
    """Networks trained by `fit_with_holdout`: two halve the cost of five and still give every
    reference a held-out score."""

    def __init__(self, seed: int, top_fraction: float) -> None:
        self.seed = seed
        self.top_fraction = top_fraction
        self.networks: list[nn.Module] = []

    @abstractmethod
    def inputs(self, images: list[np.ndarray], progress: bool = False) -> Inputs:
        """What the networks see of RGB uint8 `images` (computed once per fit)."""

    @abstractmethod
    def new_network(self) -> nn.Module:
        """An untrained network of the configured shape (also what `load_state` fills)."""

    @abstractmethod
    def train_network(self, inputs: Inputs, progress: bool, label: str) -> nn.Module:
        """A network trained on `inputs` (randomness from the global torch generator), in eval
        mode; `label` names it on the progress bar."""

    @abstractmethod
    def network_scores(
        self, network: nn.Module, inputs: Inputs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, h, w) anomaly maps and (N,) image scores of one network on `inputs`."""

    def fit(self, images: list[np.ndarray], progress: bool = False) -> None:
        if len(images) > 1:
            self.fit_with_holdout(images, progress)
            return
        self.networks = [self._train(self.inputs(images, progress), 0, progress)]

    def fit_with_holdout(
        self, images: list[np.ndarray], progress: bool = False
    ) -> list[PatchScores]:
        if len(images) < 2:
            raise ValueError("held-out scores need at least two images")
        inputs = self.inputs(images, progress)
        folds = min(len(images), self.folds)
        held_out: list[PatchScores | None] = [None] * len(images)
        self.networks = []
        for fold in range(folds):
            held = list(range(fold, len(images), folds))
            kept = [index for index in range(len(images)) if index % folds != fold]
            self.networks.append(self._train(subset(inputs, kept), fold, progress))
            maps, scores = self._scores([self.networks[-1]], subset(inputs, held))
            for row, index in enumerate(held):
                held_out[index] = self._result(maps[row], scores[row], images[index])
        return held_out  # type: ignore[return-value]

    def score(self, images: list[np.ndarray]) -> list[PatchScores]:
        if not self.networks:
            raise RuntimeError(f"the {self.name} method is not fitted")
        maps, scores = self._scores(self.networks, self.inputs(images))
        return [
            self._result(grid, score, image)
            for grid, score, image in zip(maps, scores, images, strict=True)
        ]

    def state(self) -> dict[str, np.ndarray]:
        if not self.networks:
            raise RuntimeError(f"the {self.name} method is not fitted")
        return {
            NETWORK_PREFIX.format(index) + key: value.detach().numpy().copy()
            for index, network in enumerate(self.networks)
            for key, value in network.state_dict().items()
        }

    def state_spec(self) -> dict[str, ArraySpec]:
        """The fold networks' parameters as `new_network` shapes them; only the first network
        is required (one reference trains one)."""
        template = self.new_network().state_dict()
        return {
            NETWORK_PREFIX.format(index) + key: ArraySpec(
                tuple(value.shape), str(value.numpy().dtype), required=index == 0
            )
            for index in range(self.folds)
            for key, value in template.items()
        }

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.networks = []
        while own := prefixed(arrays, NETWORK_PREFIX.format(len(self.networks))):
            network = self.new_network()
            network.load_state_dict({key: torch.from_numpy(value) for key, value in own.items()})
            self.networks.append(network.eval())

    def _train(self, inputs: Inputs, fold: int, progress: bool) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed * 1000 + fold)
            return self.train_network(inputs, progress, f"{self.name} {fold + 1}")

    @torch.inference_mode()
    def _scores(self, networks: list[nn.Module], inputs: Inputs) -> tuple[np.ndarray, np.ndarray]:
        """The networks' mean maps and image scores, in chunks of SCORE_BATCH images."""
        maps, scores = [], []
        for chunk in batches(inputs):
            outputs = [self.network_scores(network, chunk) for network in networks]
            maps.append(torch.stack([grid for grid, _ in outputs]).mean(dim=0))
            scores.append(torch.stack([score for _, score in outputs]).mean(dim=0))
        return torch.cat(maps).numpy().astype(np.float32), torch.cat(scores).numpy()

    def _result(self, grid: np.ndarray, score: float, image: np.ndarray) -> PatchScores:
        size = image.shape[:2]
        return PatchScores(grid, (float(size[0]), float(size[1])), size, float(score))

    def top_scores(self, maps: torch.Tensor) -> torch.Tensor:
        """(N,) mean of the top `top_fraction` of each (N, h, w) map (0: its maximum)."""
        return torch.tensor([top_fraction_mean(grid.numpy(), self.top_fraction) for grid in maps])


class FeatureMethod(TrainedMethod):
    """A trained method on the frozen backbone's feature maps of square-resized images (one
    grid shape for every image, so that they batch).

    Args: see the subclasses; `levels` are the backbone levels the network sees.
    """

    def __init__(
        self,
        backbone: str,
        resolution: int,
        levels: tuple[str, ...],
        weights: str | None,
        batch_size: int,
        seed: int,
        top_fraction: float,
    ) -> None:
        super().__init__(seed, top_fraction)
        self.extractor = FeatureExtractor(
            backbone, resolution, levels, weights, keep_aspect=False, batch_size=batch_size
        )
        side = self.extractor.size_multiple
        with torch.inference_mode():
            probe = self.extractor.model(torch.zeros(1, 3, side, side), self.extractor.levels)
        self.channels = {level: value.shape[1] for level, value in probe.items()}
        """Feature channels of each level."""

    def extractor_config(self) -> dict[str, Any]:
        return self.extractor.config()

    def preprocessed(self, images: list[np.ndarray]) -> torch.Tensor:
        """(N, 3, R, R) the images as the backbone sees them, for networks that see them too."""
        return torch.stack([self.extractor.preprocess(image)[0] for image in images])

    def inputs(self, images: list[np.ndarray], progress: bool = False) -> Inputs:
        maps = self.extractor.extract(images, progress)
        return {
            level: torch.stack([image.levels[level] for image in maps])
            for level in self.extractor.levels
        }
