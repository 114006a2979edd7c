"""Greedy k-center coreset: a small subset of the bank that covers all of it."""

import math

import numpy as np
import torch
from tqdm import tqdm

from anomalens.errors import ConfigError

PROJECTION_DIM = 128


def greedy_coreset(
    features: np.ndarray,
    ratio: float,
    seed: int = 0,
    projection_dim: int = PROJECTION_DIM,
    progress: bool = False,
) -> np.ndarray:
    """Indices of a greedy k-center coreset of `features` (N, D) holding ceil(ratio * N) rows.

    Each step adds the row farthest from the rows chosen so far (PatchCore, Roth et al. 2022).
    Distances are measured after a seeded Gaussian random projection to `projection_dim`
    dimensions, which keeps memory at O(N * projection_dim) and each step one matrix-vector
    product. Deterministic for a given seed.
    """
    count = len(features)
    if not 0 < ratio <= 1:
        raise ConfigError(f"coreset ratio must be in (0, 1], got {ratio}")
    size = max(1, math.ceil(ratio * count))
    if size >= count:
        return np.arange(count)
    generator = torch.Generator().manual_seed(seed)
    points = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    if points.shape[1] > projection_dim:
        projection = torch.randn(points.shape[1], projection_dim, generator=generator)
        points = points @ (projection / math.sqrt(projection_dim))
    squared_norms = (points * points).sum(dim=1)
    chosen = [int(torch.randint(count, (1,), generator=generator))]
    nearest = _squared_distances(points, squared_norms, chosen[0])
    for _ in tqdm(range(size - 1), desc="coreset", disable=not progress, leave=False):
        chosen.append(int(torch.argmax(nearest)))
        torch.minimum(nearest, _squared_distances(points, squared_norms, chosen[-1]), out=nearest)
    return np.asarray(sorted(chosen), dtype=np.int64)


def _squared_distances(
    points: torch.Tensor, squared_norms: torch.Tensor, index: int
) -> torch.Tensor:
    return squared_norms - 2.0 * (points @ points[index]) + squared_norms[index]
