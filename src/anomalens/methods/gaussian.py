"""Image-level Gaussian (Rippel et al., ICPR 2020): Mahalanobis distance of an image's pooled
features to the Gaussian of the references' pooled features.

It scores whole images, not patches: its grid is all zeros, so it adds nothing to a map. It is
meant as a member of the ensemble, beside a patch method, for defects that change the whole
image (MTD's large, low-contrast "uneven" shading) rather than a region.
"""

from typing import Any

import numpy as np
import torch.nn.functional as F
from sklearn.covariance import LedoitWolf

from anomalens.features import FeatureExtractor, stack_levels
from anomalens.methods.base import Method, PatchScores
from anomalens.validation import ArraySpec


class ImageGaussian(Method):
    """Image score = Mahalanobis distance of the image's pooled features (mean and standard
    deviation over positions of the L2-normalised levels) to the references' Gaussian, its
    covariance shrunk by Ledoit-Wolf, which stays invertible with a handful of references.

    Args:
        backbone: registered backbone name.
        resolution: shorter image side in pixels fed to the backbone (aspect ratio kept).
        levels: backbone feature levels, each L2-normalised per position; None uses the
            backbone's defaults.
        weights: optional path to the backbone weights.
        batch_size: images per backbone forward pass.
    """

    name = "gaussian"

    def __init__(
        self,
        backbone: str = "efficientnet_lite0",
        resolution: int | str = 320,
        levels: tuple[str, ...] | None = None,
        weights: str | None = None,
        batch_size: int = 8,
    ):
        self.extractor = FeatureExtractor(backbone, resolution, levels, weights, True, batch_size)
        self.mean = np.empty(0, dtype=np.float64)
        self.precision = np.empty((0, 0), dtype=np.float64)

    def config(self) -> dict[str, Any]:
        return self.extractor.config()

    def fit(self, images: list[np.ndarray], progress: bool = False) -> None:
        self.mean, self.precision = _gaussian(self._pooled(images, progress))

    def fit_with_holdout(
        self, images: list[np.ndarray], progress: bool = False
    ) -> list[PatchScores]:
        """Exact leave-one-out: each image against the Gaussian of the others' pooled features
        (the backbone runs once per image)."""
        if len(images) < 2:
            raise ValueError("held-out scores need at least two images")
        pooled = self._pooled(images, progress)
        held_out = []
        for index in range(len(images)):
            mean, precision = _gaussian(np.delete(pooled, index, axis=0))
            held_out.append(_distance(pooled[index : index + 1], mean, precision)[0])
        self.mean, self.precision = _gaussian(pooled)
        return [self._scores(images[i], score) for i, score in enumerate(held_out)]

    def score(self, images: list[np.ndarray]) -> list[PatchScores]:
        distances = _distance(self._pooled(images), self.mean, self.precision)
        return [self._scores(image, score) for image, score in zip(images, distances, strict=True)]

    def state(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean, "precision": self.precision}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.mean, self.precision = arrays["mean"], arrays["precision"]

    def state_spec(self) -> dict[str, ArraySpec]:
        return {
            "mean": ArraySpec(("features",), "float64"),
            "precision": ArraySpec(("features", "features"), "float64"),
        }

    def _pooled(self, images: list[np.ndarray], progress: bool = False) -> np.ndarray:
        """(n, 2C) mean and standard deviation over positions of each image's features."""
        rows = []
        for maps in self.extractor.extract(images, progress):
            features = F.normalize(stack_levels(maps.levels, normalize_each=True), dim=0)
            flat = features.flatten(1).double()
            rows.append(np.concatenate([flat.mean(1).numpy(), flat.std(1).numpy()]))
        return np.stack(rows)

    def _scores(self, image: np.ndarray, score: float) -> PatchScores:
        height, width = image.shape[:2]
        return PatchScores(
            grid=np.zeros((1, 1), dtype=np.float32),
            extent=(float(height), float(width)),
            image_size=(height, width),
            image_score=float(score),
        )


def _gaussian(pooled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and Ledoit-Wolf shrunk precision of `pooled` rows (one row: identity precision)."""
    if len(pooled) < 2:
        return pooled.mean(axis=0), np.eye(pooled.shape[1])
    estimate = LedoitWolf().fit(pooled)
    return estimate.location_, estimate.precision_


def _distance(pooled: np.ndarray, mean: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """Mahalanobis distance of each row of `pooled`."""
    centred = pooled - mean
    return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", centred, precision, centred), 0.0))
