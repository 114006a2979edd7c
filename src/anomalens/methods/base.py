"""The contract every anomaly detection method fulfils."""

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from anomalens.validation import ArraySpec


@dataclass
class PatchScores:
    """Anomaly scores of one image on the method's own grid.

    Attributes:
        grid: (h, w) float32 patch anomaly scores (higher is more anomalous).
        extent: (height, width) of the original image region the grid covers, in pixels,
            anchored at the top-left corner.
        image_size: (height, width) of the original image.
        image_score: the image-level anomaly score.
    """

    grid: np.ndarray
    extent: tuple[float, float]
    image_size: tuple[int, int]
    image_score: float


class Method(ABC):
    """An anomaly detector that learns from normal RGB uint8 images only.

    Subclasses take their configuration as keyword arguments in `__init__` and return the same
    keywords from `config()`, so that `type(m)(**m.config())` rebuilds an unfitted copy.
    """

    name: ClassVar[str]
    saved_defaults: ClassVar[dict[str, Any]] = {}
    """Constructor keywords that a model saved before they existed is read with: what it did
    then, where today's default would change it."""

    @abstractmethod
    def fit(self, images: list[np.ndarray], progress: bool = False) -> None:
        """Learn what normal looks like from `images`."""

    @abstractmethod
    def score(self, images: list[np.ndarray]) -> list[PatchScores]:
        """Anomaly scores for each image, in order."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """JSON-serialisable constructor keywords."""

    @abstractmethod
    def state(self) -> dict[str, np.ndarray]:
        """Everything `fit` learnt, as named arrays (saved with safetensors)."""

    @abstractmethod
    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore what `state()` returned."""

    @abstractmethod
    def state_spec(self) -> dict[str, ArraySpec]:
        """The arrays `state()` returns for this configuration: names, shapes and dtypes, which
        a loaded model's arrays are checked against before `load_state`."""

    def score_bounds(self) -> tuple[float, float]:
        """(highest image score, highest patch score) the fitted method can give, inf when
        unbounded; calibration refuses thresholds above them."""
        return math.inf, math.inf

    def fit_with_holdout(
        self, images: list[np.ndarray], progress: bool = False
    ) -> list[PatchScores]:
        """Fit on all `images`, and score each image with a model fitted without it.

        The held-out scores calibrate thresholds and reveal bad references. This default refits
        on k folds (at most 5); methods with a cheaper exact leave-one-out override it.
        Needs at least two images.
        """
        folds = min(len(images), 5)
        if folds < 2:
            raise ValueError("held-out scores need at least two images")
        results: list[PatchScores | None] = [None] * len(images)
        for fold in range(folds):
            held = [i for i in range(len(images)) if i % folds == fold]
            model = type(self)(**self.config())
            model.fit([images[i] for i in range(len(images)) if i % folds != fold])
            for index, scores in zip(held, model.score([images[i] for i in held]), strict=True):
                results[index] = scores
        self.fit(images, progress)
        return results  # type: ignore[return-value]


def prefixed(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The arrays whose key starts with `prefix`, keyed without it (how a state holds the
    states of its parts)."""
    return {key.removeprefix(prefix): v for key, v in arrays.items() if key.startswith(prefix)}


def quadrants(image: np.ndarray) -> list[np.ndarray]:
    """The four quarters of an image: held-out samples when there are too few references."""
    height, width = image.shape[:2]
    half_h, half_w = height // 2, width // 2
    return [
        image[:half_h, :half_w],
        image[:half_h, half_w:],
        image[half_h:, :half_w],
        image[half_h:, half_w:],
    ]


def top_count(size: int, fraction: float = 0.01, minimum: int = 1) -> int:
    """How many of `size` values `top_fraction_mean` averages: the highest `fraction`, at least
    `minimum` (and at most all)."""
    return min(max(minimum, int(np.ceil(size * fraction)), 1), size)


def top_fraction_mean(values: np.ndarray, fraction: float = 0.01, minimum: int = 1) -> float:
    """Mean of the highest `fraction` of `values`, at least `minimum` of them (and at most all)."""
    flat = np.asarray(values, dtype=np.float64).ravel()
    count = top_count(flat.size, fraction, minimum)
    return float(np.partition(flat, flat.size - count)[flat.size - count :].mean())
