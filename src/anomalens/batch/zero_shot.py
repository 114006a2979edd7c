"""Zero-shot batch scoring: every image against the other images of its batch, no references
(mutual scoring as in MuSc, Li et al., ICLR 2024, and AnomalyDINO's batched zero-shot setting).

A patch's distance to another image is its cosine distance to that image's nearest patch. Its
score is the mean of the smallest FRACTION of those distances over the other images: a defect
finds no close patch in most other images, while another image's own defect raises only that
one image's distance, which the smallest fraction leaves out. When more than about FRACTION of
the batch shares one defect, that defect finds close patches in enough images to look normal:
mutual scoring cannot see it.

The search is blocked: one image's patches against the stacked patches of a block of other
images (at most BLOCK_PATCHES rows), each pair of images compared once and read both ways. What
is kept is, per image, its patches' distances to each other image: N·N·P float32 values for N
images of P patches (300 images of 400 patches: 144 MB), never all patches against all.
"""

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from tqdm import tqdm

from anomalens.errors import ConfigError
from anomalens.localization.masking import foreground_mask, should_mask
from anomalens.methods.anomalydino import AnomalyDINO
from anomalens.methods.base import Method, PatchScores, top_fraction_mean
from anomalens.methods.ensemble import Ensemble

FRACTION = 0.3
"""Share of the other images whose distances are averaged (MuSc's interval average)."""
BLOCK_PATCHES = 16_384
"""Patches of other images one image is compared with at a time; the similarity block is at
most P × BLOCK_PATCHES float32 (26 MB for 400 patches)."""


def zero_shot_scores(
    method: Method, images: list[np.ndarray], fraction: float = FRACTION, progress: bool = False
) -> list[PatchScores]:
    """Patch and image scores of each image of a batch against the other images, with the
    features `method` uses (anomalydino, or an ensemble of anomalydino members whose
    normalisation is set from the batch itself). Needs at least two images."""
    if len(images) < 2:
        raise ConfigError("zero-shot scoring needs a batch of at least two images")
    if not 0 < fraction <= 1:
        raise ConfigError(f"the zero-shot fraction must be in (0, 1], got {fraction}")
    if isinstance(method, Ensemble):
        members = [zero_shot_scores(m, images, fraction, progress) for m in method.members]
        return method.combine_batch(members)
    if not isinstance(method, AnomalyDINO):
        raise ConfigError(
            f"zero-shot scoring works with the anomalydino and ensemble methods, not {method.name}"
        )
    grids = method.patch_grids(images, progress)
    masked = method.masking is True or (method.masking == "auto" and should_mask(grids[0].features))
    results = []
    keep = [_searched(grid.features, masked) for grid in grids]
    features = [grid.features[kept] for grid, kept in zip(grids, keep, strict=True)]
    for grid, kept, scores in zip(
        grids, keep, mutual_scores(features, fraction, progress), strict=True
    ):
        patch_scores = np.zeros(kept.shape, dtype=np.float32)
        patch_scores[kept] = scores
        image_score = top_fraction_mean(patch_scores, method.top_fraction, method.min_top_patches)
        results.append(PatchScores(patch_scores, grid.extent, grid.image_size, image_score))
    return results


def mutual_scores(
    features: Sequence[np.ndarray], fraction: float = FRACTION, progress: bool = False
) -> list[np.ndarray]:
    """For each image's (P_i, C) L2-normalised patch features, (P_i,) scores: the mean of the
    smallest `fraction` (at least one) of its patches' nearest cosine distances to each other
    image."""
    count = len(features)
    tensors = [torch.from_numpy(np.ascontiguousarray(f, dtype=np.float32)) for f in features]
    sizes = [len(tensor) for tensor in tensors]
    nearest = [torch.zeros((size, count)) for size in sizes]
    with torch.inference_mode():
        for i in tqdm(range(count), desc="mutual scoring", unit="image", disable=not progress):
            for block in _blocks(range(i + 1, count), sizes):
                others = torch.cat([tensors[j] for j in block])
                similarity = tensors[i] @ others.T
                for j, part in zip(
                    block, similarity.split([sizes[j] for j in block], 1), strict=True
                ):
                    if part.numel():
                        nearest[i][:, j] = 1.0 - part.amax(dim=1)
                        nearest[j][:, i] = 1.0 - part.amax(dim=0)
    kept = max(1, round(fraction * (count - 1)))
    scores = []
    for i, distances in enumerate(nearest):
        others = torch.cat([distances[:, :i], distances[:, i + 1 :]], dim=1)
        smallest = others.topk(kept, dim=1, largest=False).values
        scores.append(smallest.mean(dim=1).clamp_min(0.0).numpy())
    return scores


def _searched(features: np.ndarray, masked: bool) -> np.ndarray:
    """(h, w) bool: the patches scored and searched, the foreground when masking (every patch
    when masking finds none)."""
    kept = foreground_mask(features) if masked else np.ones(features.shape[:2], dtype=bool)
    return kept if kept.any() else np.ones_like(kept)


def _blocks(indices: range, sizes: list[int]) -> Iterator[list[int]]:
    """Consecutive runs of `indices` whose patches add up to at most BLOCK_PATCHES (an image
    larger than that is a block of its own)."""
    block: list[int] = []
    total = 0
    for index in indices:
        if block and total + sizes[index] > BLOCK_PATCHES:
            yield block
            block, total = [], 0
        block.append(index)
        total += sizes[index]
    if block:
        yield block
