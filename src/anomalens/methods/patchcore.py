"""PatchCore (Roth et al., CVPR 2022): locally aware patch features, coreset, reweighted score."""

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from anomalens.features import FeatureExtractor, finest_size, resized
from anomalens.memory.coreset import greedy_coreset
from anomalens.methods.memory_bank import MemoryBankMethod, PatchGrid
from anomalens.validation import integer, number

MAX_DIMENSION = 1024


class PatchCore(MemoryBankMethod):
    """Patch anomaly = Euclidean distance to the nearest coreset patch; image score = the
    largest patch score, reweighted by how isolated its nearest normal patch is (Eq. 7).

    Held-out scores search, and reweight among, the other references' coreset rows only; the
    coreset itself is chosen once from all references, so below a ratio of 1 it may lack rows of
    the others that the held-out image's own patches covered.

    Args:
        backbone: registered backbone name.
        resolution: shorter image side in pixels fed to the backbone (aspect ratio kept).
        levels: two (or more) mid-level feature levels; None uses the backbone's defaults.
        weights: optional path to the backbone weights.
        dimension: each level, then their concatenation, is average-pooled over channels to
            this many; None uses the total channel count, at most 1024.
        coreset_ratio: fraction of reference patches kept by the greedy coreset.
        reweight_neighbours: b, the neighbourhood size of the score reweighting; 1 disables it.
        approximate: None (exact search up to 2,000 bank patches, approximate above),
            True or False.
        seed: seed of the coreset's random projection and start.
        batch_size: images per backbone forward pass.
    """

    name = "patchcore"
    metric = "l2"

    def __init__(
        self,
        backbone: str = "efficientnet_lite0",
        resolution: int = 320,
        levels: tuple[str, ...] | None = None,
        weights: str | None = None,
        dimension: int | None = None,
        coreset_ratio: float = 0.1,
        reweight_neighbours: int = 9,
        approximate: bool | None = None,
        seed: int = 0,
        batch_size: int = 8,
    ):
        if dimension is not None:
            integer("dimension", dimension, 1, MAX_DIMENSION)
        number("coreset_ratio", coreset_ratio, maximum=1, above=0)
        integer("reweight_neighbours", reweight_neighbours, minimum=1)
        integer("seed", seed)
        super().__init__(approximate)
        self.extractor = FeatureExtractor(
            backbone, resolution, levels, weights, keep_aspect=True, batch_size=batch_size
        )
        self.dimension = dimension
        self.coreset_ratio = coreset_ratio
        self.reweight_neighbours = reweight_neighbours
        self.seed = seed

    def config(self) -> dict[str, Any]:
        return {
            **self.extractor.config(),
            "dimension": self.dimension,
            "coreset_ratio": self.coreset_ratio,
            "reweight_neighbours": self.reweight_neighbours,
            "approximate": self.approximate,
            "seed": self.seed,
        }

    def patch_grids(self, images: list[np.ndarray], progress: bool = False) -> list[PatchGrid]:
        grids = []
        for maps in self.extractor.extract(images, progress):
            features = locally_aware_features(maps.levels, self.dimension)
            grids.append(PatchGrid(features.permute(1, 2, 0).numpy(), maps.extent, maps.image_size))
        return grids

    def bank_patches(
        self, images: list[np.ndarray], progress: bool
    ) -> tuple[np.ndarray, np.ndarray, list[PatchGrid]]:
        grids = self.patch_grids(images, progress)
        patches = np.concatenate([g.features.reshape(-1, g.features.shape[-1]) for g in grids])
        owners = np.concatenate(
            [np.full(g.features.shape[0] * g.features.shape[1], i) for i, g in enumerate(grids)]
        )
        kept = greedy_coreset(patches, self.coreset_ratio, self.seed, progress=progress)
        return patches[kept], owners[kept], grids

    def exact_patches(self, grid: PatchGrid) -> tuple[int, np.ndarray | None]:
        """The image score's one patch: its distance and nearest row are exact search's."""
        return 1, None

    def image_score(
        self, grid: PatchGrid, distances: np.ndarray, indices: np.ndarray, exclude: int | None
    ) -> tuple[np.ndarray, float]:
        scores = distances[:, 0]
        top = int(np.argmax(scores))
        if self.reweight_neighbours <= 1:
            return scores.reshape(grid.features.shape[:2]), float(scores[top])
        neighbours, bank = self.neighbours, self.neighbours.bank
        query = grid.features.reshape(-1, bank.shape[1])[top]
        nearest = bank[indices[top]]
        if exclude is None:
            _, support = neighbours.distances(nearest, self.reweight_neighbours)
        else:  # held out: the neighbourhood, like the nearest patch, lies in the other images
            _, support = neighbours.distances_excluding(nearest, exclude, self.reweight_neighbours)
        support_distances = np.linalg.norm(bank[support[0]] - query, axis=1)
        weight = 1.0 - torch.softmax(torch.from_numpy(support_distances), dim=0)[0].item()
        return scores.reshape(grid.features.shape[:2]), float(weight * scores[top])


def locally_aware_features(levels: dict[str, torch.Tensor], dimension: int | None) -> torch.Tensor:
    """(D, h, w) PatchCore features: each level 3x3 average-pooled, upsampled to the finest grid,
    pooled over channels to `dimension`, concatenated and pooled to `dimension` again."""
    size = finest_size(levels)
    total = sum(t.shape[0] for t in levels.values())
    dimension = dimension or min(total, MAX_DIMENSION)
    pooled = []
    for value in levels.values():
        value = F.avg_pool2d(value[None], kernel_size=3, stride=1, padding=1)[0]
        pooled.append(_pool_channels(resized(value, size), dimension))
    return _pool_channels(torch.cat(pooled), dimension)


def _pool_channels(features: torch.Tensor, dimension: int) -> torch.Tensor:
    """Average-pool (C, h, w) features over channels to (dimension, h, w)."""
    channels, height, width = features.shape
    flat = features.permute(1, 2, 0).reshape(-1, 1, channels)
    return F.adaptive_avg_pool1d(flat, dimension).reshape(height, width, dimension).permute(2, 0, 1)
