"""PaDiM (Defard et al., ICPR 2021): a Gaussian per patch position, Mahalanobis distance.

PaDiM models each grid position separately, so it needs aligned images: the same product in
the same place in every photo (fixtured parts, fixed camera). Images are resized to a square
`resolution` so that every image has the same grid.
"""

from typing import Any

import numpy as np
import torch

from anomalens.features import FeatureExtractor, FeatureMaps, stack_levels
from anomalens.methods.base import Method, PatchScores
from anomalens.validation import ArraySpec, integer

REGULARISATION = 0.01
INVERSE_CHUNK = 256


class PaDiM(Method):
    """Patch anomaly = Mahalanobis distance to the Gaussian of normal features at its position;
    image score = the largest patch score.

    Args:
        backbone: registered backbone name.
        resolution: images are resized to resolution x resolution (aligned grids).
        levels: feature levels concatenated on the finest grid; None uses the backbone's.
        weights: optional path to the backbone weights.
        channels: size of the random channel subset modelled (PaDiM's d).
        seed: seed of the channel subset.
        batch_size: images per backbone forward pass.
    """

    name = "padim"

    def __init__(
        self,
        backbone: str = "efficientnet_lite0",
        resolution: int = 256,
        levels: tuple[str, ...] | None = None,
        weights: str | None = None,
        channels: int = 100,
        seed: int = 0,
        batch_size: int = 8,
    ):
        integer("channels", channels, minimum=1)
        integer("seed", seed)
        self.extractor = FeatureExtractor(
            backbone, resolution, levels, weights, keep_aspect=False, batch_size=batch_size
        )
        self.channels = channels
        self.seed = seed
        self.subset = np.empty(0, dtype=np.int64)
        self.mean = np.empty((0, 0), dtype=np.float32)
        self.precision = np.empty((0, 0, 0), dtype=np.float32)

    def config(self) -> dict[str, Any]:
        return {
            **self.extractor.config(),
            "channels": self.channels,
            "seed": self.seed,
        }

    def fit(self, images: list[np.ndarray], progress: bool = False) -> None:
        maps = self.extractor.extract(images, progress)
        channels = sum(level.shape[0] for level in maps[0].levels.values())
        generator = torch.Generator().manual_seed(self.seed)
        order = torch.randperm(channels, generator=generator)
        self.subset = order[: self.channels].sort().values.numpy()
        features = self._subset_features(maps)  # (N, h, w, d)
        count, height, width, depth = features.shape
        flat = features.reshape(count, height * width, depth).astype(np.float64)
        mean = flat.mean(axis=0)
        self.mean = mean.astype(np.float32)
        centred = flat - mean
        covariance = np.einsum("npi,npj->pij", centred, centred) / max(count - 1, 1)
        covariance += REGULARISATION * np.eye(depth)
        self.precision = np.concatenate(
            [
                np.linalg.inv(covariance[i : i + INVERSE_CHUNK])
                for i in range(0, len(covariance), INVERSE_CHUNK)
            ]
        ).astype(np.float32)

    def score(self, images: list[np.ndarray]) -> list[PatchScores]:
        features = self._subset_features(self.extractor.extract(images))
        results = []
        for image, grid in zip(images, features, strict=True):
            delta = grid.reshape(-1, grid.shape[-1]) - self.mean
            distances = np.sqrt(
                np.maximum(np.einsum("pi,pij,pj->p", delta, self.precision, delta), 0)
            )
            scores = distances.reshape(grid.shape[:2]).astype(np.float32)
            results.append(
                PatchScores(scores, image.shape[:2], image.shape[:2], float(scores.max()))
            )
        return results

    def state(self) -> dict[str, np.ndarray]:
        return {"subset": self.subset, "mean": self.mean, "precision": self.precision}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.subset, self.mean, self.precision = (
            arrays["subset"],
            arrays["mean"],
            arrays["precision"],
        )

    def state_spec(self) -> dict[str, ArraySpec]:
        return {
            "subset": ArraySpec(("depth",), "int64"),
            "mean": ArraySpec(("positions", "depth"), "float32"),
            "precision": ArraySpec(("positions", "depth", "depth"), "float32"),
        }

    def _subset_features(self, maps: list[FeatureMaps]) -> np.ndarray:
        """(N, h, w, d) features of the images' maps on the random channel subset."""
        return np.stack(
            [stack_levels(m.levels)[self.subset].permute(1, 2, 0).numpy() for m in maps]
        )
