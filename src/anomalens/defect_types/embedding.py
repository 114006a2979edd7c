"""Region embeddings: a defect region's backbone patch features, weighted by anomaly score."""

import math
from functools import cached_property
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from anomalens.backbones import Backbone, load_backbone
from anomalens.features import FeatureExtractor, stack_levels

DEFAULT_BACKBONE = "efficientnet_lite0"
DEFAULT_RESOLUTION = 320
"""Backbone and resolution of region features for methods that use no backbone."""
REGION_STRIDE = 16
"""Stride of the default feature level: on MTD (5-way 5-shot, EfficientNet-Lite0) stride-16
features name defect types better than finer, coarser or stacked levels."""


class RegionEmbedder:
    """Turns defect regions into unit vectors comparable by cosine similarity.

    Args:
        backbone: registered backbone name.
        resolution: shorter image side in pixels fed to the backbone (aspect ratio kept).
        levels: backbone feature levels, stacked on the finest grid after per-level L2
            normalisation; None uses the level of stride REGION_STRIDE (or the nearest).
        weights: optional path to the backbone weights.
    """

    def __init__(
        self,
        backbone: str = DEFAULT_BACKBONE,
        resolution: int = DEFAULT_RESOLUTION,
        levels: tuple[str, ...] | None = None,
        weights: str | None = None,
    ):
        self.backbone = backbone
        self.resolution = resolution
        self.levels = tuple(levels) if levels else None
        self.weights = weights

    @classmethod
    def for_method(cls, method_config: dict[str, Any]) -> "RegionEmbedder":
        """The embedder on a method's backbone and resolution (`method_config` is the method's
        `config()`), or on the default backbone for methods without one."""
        if not method_config.get("backbone"):
            return cls()
        return cls(
            method_config["backbone"],
            method_config.get("resolution") or DEFAULT_RESOLUTION,
            weights=method_config.get("weights"),
        )

    def config(self) -> dict[str, Any]:
        """JSON-serialisable constructor keywords."""
        return {
            "backbone": self.backbone,
            "resolution": self.resolution,
            "levels": list(self.levels) if self.levels else None,
            "weights": self.weights,
        }

    @cached_property
    def extractor(self) -> FeatureExtractor:
        """The feature extractor, built on first use."""
        levels = self.levels or (region_level(load_backbone(self.backbone, self.weights)),)
        return FeatureExtractor(self.backbone, self.resolution, levels, self.weights)

    def embed(
        self,
        images: list[np.ndarray],
        anomaly_maps: list[np.ndarray],
        regions: list[list[np.ndarray]],
    ) -> list[np.ndarray]:
        """A (k, C) array of region embeddings per image, one row per region.

        Args:
            images: RGB uint8 (H, W, 3) images.
            anomaly_maps: each image's (H, W) anomaly map, which weights the patches.
            regions: per image, the (H, W) bool masks of its regions.
        """
        embeddings = []
        for maps, anomaly, masks in zip(
            self.extractor.extract(images), anomaly_maps, regions, strict=True
        ):
            features = stack_levels(maps.levels, normalize_each=True)
            rows = [region_embedding(features, maps.extent, anomaly, mask) for mask in masks]
            embeddings.append(np.stack(rows) if rows else np.empty((0, features.shape[0])))
        return embeddings


def region_level(backbone: Backbone) -> str:
    """The backbone's level whose stride is nearest REGION_STRIDE; default levels win ties."""
    return min(
        [*backbone.default_levels, *backbone.strides],
        key=lambda level: abs(math.log2(backbone.strides[level] / REGION_STRIDE)),
    )


def region_embedding(
    features: torch.Tensor,
    extent: tuple[float, float],
    anomaly_map: np.ndarray,
    region: np.ndarray,
) -> np.ndarray:
    """Unit-length mean of the patch features, each weighted by the summed anomaly score of the
    region pixels it covers (by the region's pixel count alone where the map is zero there).

    Args:
        features: (C, h, w) patch features covering `extent`.
        extent: (height, width) of the image region the features cover, in pixels; pixels
            beyond it count toward the nearest edge patch.
        anomaly_map: (H, W) non-negative anomaly scores.
        region: (H, W) bool mask of the region, not empty.
    """
    if not region.any():
        raise ValueError("the region is empty")
    weights = _patch_sums(np.where(region, anomaly_map, 0.0), extent, features.shape[1:])
    if weights.sum() <= 0:
        weights = _patch_sums(region, extent, features.shape[1:])
    pooled = (features * torch.from_numpy(weights)).sum(dim=(1, 2)) / float(weights.sum())
    return F.normalize(pooled, dim=0).numpy()


def _patch_sums(
    values: np.ndarray, extent: tuple[float, float], grid: tuple[int, int]
) -> np.ndarray:
    """(h, w) float32 sums of `values` (H, W) over the pixels each patch of `grid` covers."""
    height, width = values.shape
    rows = np.minimum(((np.arange(height) + 0.5) * grid[0] / extent[0]).astype(int), grid[0] - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * grid[1] / extent[1]).astype(int), grid[1] - 1)
    cells = (rows[:, None] * grid[1] + cols[None, :]).ravel()
    sums = np.bincount(
        cells, weights=values.ravel().astype(np.float64), minlength=grid[0] * grid[1]
    )
    return sums.reshape(grid).astype(np.float32)
