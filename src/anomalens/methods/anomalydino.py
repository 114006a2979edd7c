"""AnomalyDINO (Damm et al., WACV 2025): cosine nearest neighbours of patch features."""

import math
from typing import Any

import numpy as np
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from anomalens.errors import ConfigError, ImageError
from anomalens.features import FeatureExtractor, stack_levels
from anomalens.localization.masking import foreground_mask, should_mask
from anomalens.memory.knn import REFINE_FACTOR
from anomalens.methods.base import PatchScores, top_count, top_fraction_mean
from anomalens.methods.memory_bank import MemoryBankMethod, PatchGrid
from anomalens.validation import ArraySpec, flag, integer, number

DENSITY_CORRECTIONS = (None, "subtract", "divide")
MAX_COSINE_DISTANCE = 2.0
DENSITY_FLOOR = 1e-3
"""Added to the bank spacing before dividing by it, so that duplicated patches do not blow up."""
POSITION_FLOOR = 0.1
"""Per-position means are floored at this fraction of their average, so that a position where
every reference matched exactly does not turn noise into anomalies."""


class AnomalyDINO(MemoryBankMethod):
    """Patch anomaly = cosine distance to the nearest reference patch; image score = mean of the
    top 1% patch scores.

    Args:
        backbone: registered backbone name.
        resolution: shorter image side in pixels fed to the backbone (aspect ratio kept), or
            "native": every image at its own size, so that defects of a few pixels keep them.
        levels: backbone feature levels, concatenated on the finest grid after per-level L2
            normalisation; None uses the backbone's defaults.
        weights: optional path to the backbone weights.
        keep_aspect: keep the aspect ratio (AnomalyDINO); False resizes to a square, which helps
            when one product is photographed in crops of varying shape.
        rotation: add rotated copies of the references to the bank.
        rotation_step: degrees between those copies: 45 adds 7 copies (45, 90, ..., 315), 90
            only the right angles (3 copies, half the bank and search of 45).
        rotated_references: rotated copies are made of references evenly spread over them
            until the bank holds as many images as this many references with all their copies
            would (None: every reference rotated). Copies stand in for the poses a few
            references do not show; many references show them themselves, while their copies
            would multiply the fit time, the bank and the approximate index's error. At 16
            and 45 degrees: up to 16 references all rotated, 11 of MPDD's 54, none of 128 or
            more. All 200 MTD references rotated: fit 478 s, image AUROC 0.916; 16 of them:
            89 s, 0.916; none: 53 s, 0.914 (docs/results.md, stops 29 and 30).
        masking: "auto" (decided by the masking test on the first reference), True or False:
            ignore background patches found by zero-shot PCA masking.
        top_fraction: fraction of highest patch scores averaged into the image score.
        min_top_patches: the image score averages at least this many patches, so that a small
            top_fraction of a small grid is not a single noisy patch.
        density: None, "subtract" or "divide": correct each patch distance by the spacing of
            the bank around its nearest patch (that patch's distance to the nearest patch of
            another reference), so that parts of normal appearance the references cover thinly
            do not score as anomalies: distance minus spacing (floored at 0), or distance over
            spacing + DENSITY_FLOOR. Costs one search of the bank by itself at fit.
        position_statistics: for aligned products (the part in the same place in every photo,
            all images of one size): divide each patch score by the mean held-out score of the
            references at that grid position, so that positions where good parts vary (edges,
            a moving cable) weigh less. Fit computes the leave-one-out scores for it (each
            reference's held-out score is then divided by a mean it is 1/n of). On the three
            unaligned datasets here it lowered image AUROC (docs/results.md).
        approximate: None (exact search up to 2,000 bank patches, approximate above),
            True or False.
        probes: inverted lists the approximate index visits per query (None: about
            0.75·sqrt(lists), at most 24): more find the nearest patch more often, at a cost
            per query.
        refine: candidates per query the approximate index re-ranks with the full vectors.
        exact_top: give the patches the image score reads the distances of exact search,
            whatever the index (`NearestNeighbours.distances`): one more read of the bank per
            image, cheap for the fine member's 40 dimensions (DeepPCB: the image score moved by
            up to 14% without it), about 35 ms for a 16-reference bank of 304 dimensions
            whose index is off by about 1%.
        batch_size: images per backbone forward pass.
        tile: None, or the side in pixels of the tiles the backbone runs on (see
            `FeatureExtractor`); with "native" resolution, frames over 1 MP keep their size.
    """

    name = "anomalydino"
    metric = "cosine"

    def __init__(
        self,
        backbone: str = "efficientnet_lite0",
        resolution: int | str = 320,
        levels: tuple[str, ...] | None = None,
        weights: str | None = None,
        keep_aspect: bool = True,
        rotation: bool = True,
        rotation_step: int = 45,
        rotated_references: int | None = 16,
        masking: bool | str = "auto",
        top_fraction: float = 0.01,
        min_top_patches: int = 1,
        density: str | None = None,
        position_statistics: bool = False,
        approximate: bool | None = None,
        exact_top: bool = False,
        probes: int | None = None,
        refine: int = REFINE_FACTOR,
        batch_size: int = 8,
        tile: int | None = None,
    ):
        if not 0 < integer("rotation_step", rotation_step) < 360 or 360 % rotation_step:
            raise ConfigError(f"rotation_step must divide 360 degrees, got {rotation_step}")
        if rotated_references is not None:
            integer("rotated_references", rotated_references, minimum=0)
        if density not in DENSITY_CORRECTIONS:
            raise ConfigError(f"density must be one of {DENSITY_CORRECTIONS}, got {density!r}")
        if masking != "auto" and not isinstance(masking, bool):
            raise ConfigError(f"masking must be True, False or 'auto', got {masking!r}")
        flag("keep_aspect", keep_aspect), flag("rotation", rotation)
        flag("position_statistics", position_statistics), flag("exact_top", exact_top)
        number("top_fraction", top_fraction, maximum=1, above=0)
        integer("min_top_patches", min_top_patches, minimum=1)
        super().__init__(approximate, probes, refine)
        self.extractor = FeatureExtractor(
            backbone, resolution, levels, weights, keep_aspect, batch_size, tile
        )
        self.rotation = rotation
        self.rotation_step = rotation_step
        self.rotated_references = rotated_references
        self.masking = masking
        self.top_fraction = top_fraction
        self.min_top_patches = min_top_patches
        self.density = density
        self.bank_spacing = np.empty(0, dtype=np.float32)
        self.position_statistics = position_statistics
        self.position_mean: np.ndarray | None = None
        self.use_mask = masking is True
        self.exact_top = exact_top

    def config(self) -> dict[str, Any]:
        return {
            **self.extractor.config(),
            "keep_aspect": self.extractor.keep_aspect,
            "rotation": self.rotation,
            "rotation_step": self.rotation_step,
            "rotated_references": self.rotated_references,
            "masking": self.masking,
            "top_fraction": self.top_fraction,
            "min_top_patches": self.min_top_patches,
            "density": self.density,
            "position_statistics": self.position_statistics,
            "approximate": self.approximate,
            "exact_top": self.exact_top,
            "probes": self.probes,
            "refine": self.refine,
        }

    def patch_grids(self, images: list[np.ndarray], progress: bool = False) -> list[PatchGrid]:
        grids = []
        for maps in self.extractor.extract(images, progress):
            features = F.normalize(stack_levels(maps.levels, normalize_each=True), dim=0)
            grids.append(PatchGrid(features.permute(1, 2, 0).numpy(), maps.extent, maps.image_size))
        return grids

    def bank_patches(
        self, images: list[np.ndarray], progress: bool
    ) -> tuple[np.ndarray, np.ndarray, list[PatchGrid]]:
        grids = self.patch_grids(images, progress)
        if self.masking == "auto":
            self.use_mask = should_mask(grids[0].features)
        angles = range(self.rotation_step, 360, self.rotation_step) if self.rotation else ()
        rotated = spread(
            len(images), rotated_count(len(images), self.rotated_references, len(angles))
        )
        patches, owners = [], []
        pairs = tqdm(
            zip(images, grids, strict=True),
            total=len(images),
            desc="rotated references",
            disable=not (progress and angles),
        )
        for owner, (image, grid) in enumerate(pairs):
            turns = angles if owner in rotated else ()
            variants = [grid, *self.patch_grids([_rotate(image, angle) for angle in turns])]
            for variant in variants:
                kept = self._foreground(variant.features)
                patches.append(kept)
                owners.append(np.full(len(kept), owner))
        return np.concatenate(patches), np.concatenate(owners), grids

    def fit(self, images: list[np.ndarray], progress: bool = False) -> None:
        if self.position_statistics and len(images) > 1:
            self.fit_with_holdout(images, progress)
        else:
            super().fit(images, progress)

    def fit_with_holdout(
        self, images: list[np.ndarray], progress: bool = False
    ) -> list[PatchScores]:
        """Fit on all `images`; score each against the other images' bank rows, and with
        `position_statistics` set the per-position means from those scores."""
        self.position_mean = None
        held_out = super().fit_with_holdout(images, progress)
        if not self.position_statistics:
            return held_out
        shapes = {scores.grid.shape for scores in held_out}
        if len(shapes) > 1:
            raise ConfigError(
                f"position_statistics needs references of one size; their grids are {shapes}"
            )
        mean = np.mean([scores.grid for scores in held_out], axis=0)
        self.position_mean = np.maximum(mean, POSITION_FLOOR * mean.mean()).astype(np.float32)
        return [self._per_position(scores) for scores in held_out]

    def exact_patches(self, grid: PatchGrid) -> tuple[int, np.ndarray | None]:
        """With `exact_top`, the patches of the image score, among the foreground ones when
        masking: unless density correction or per-position statistics reorder the distances,
        the image score is then that of exact search."""
        if not self.exact_top:
            return 0, None
        height, width = grid.features.shape[:2]
        count = top_count(height * width, self.top_fraction, self.min_top_patches)
        return count, foreground_mask(grid.features).ravel() if self.use_mask else None

    def index_bank(self, bank: np.ndarray, owners: np.ndarray) -> None:
        super().index_bank(bank, owners)
        if self.density:
            self.bank_spacing = self.neighbours.spacing()

    def image_score(
        self, grid: PatchGrid, distances: np.ndarray, indices: np.ndarray, exclude: int | None
    ) -> tuple[np.ndarray, float]:
        scores = distances[:, 0]
        if self.density:
            spacing = self.bank_spacing[indices[:, 0]]
            if self.density == "subtract":
                scores = np.maximum(scores - spacing, 0.0)
            else:
                scores = scores / (spacing + DENSITY_FLOOR)
        scores = scores.reshape(grid.features.shape[:2])
        if self.use_mask:
            scores = np.where(foreground_mask(grid.features), scores, 0.0)
        if self.position_mean is not None:
            if scores.shape != self.position_mean.shape:
                raise ImageError(
                    f"image of {grid.image_size[1]}x{grid.image_size[0]} px",
                    f"its {scores.shape} grid does not match the references' per-position "
                    f"statistics {self.position_mean.shape}: position_statistics needs images "
                    "of one size",
                )
            scores = scores / self.position_mean
        return scores, top_fraction_mean(scores, self.top_fraction, self.min_top_patches)

    def _per_position(self, scores: PatchScores) -> PatchScores:
        """Held-out `scores` divided by the per-position means, image score recomputed."""
        grid = (scores.grid / self.position_mean).astype(np.float32)
        image_score = top_fraction_mean(grid, self.top_fraction, self.min_top_patches)
        return PatchScores(grid, scores.extent, scores.image_size, image_score)

    def state(self) -> dict[str, np.ndarray]:
        extra = {"bank_spacing": self.bank_spacing} if self.density else {}
        if self.position_mean is not None:
            extra["position_mean"] = self.position_mean
        return {**super().state(), "use_mask": np.array([self.use_mask]), **extra}

    def score_bounds(self) -> tuple[float, float]:
        highest = MAX_COSINE_DISTANCE / (DENSITY_FLOOR if self.density == "divide" else 1.0)
        if self.position_mean is not None:
            highest /= float(self.position_mean.min())
        return highest, highest

    def state_spec(self) -> dict[str, ArraySpec]:
        return {
            **super().state_spec(),
            "use_mask": ArraySpec((1,), "bool"),
            "bank_spacing": ArraySpec(("rows",), "float32", required=bool(self.density)),
            "position_mean": ArraySpec((None, None), "float32", required=False),
        }

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        super().load_state(arrays)
        self.use_mask = bool(arrays["use_mask"][0])
        if self.density:
            self.bank_spacing = arrays["bank_spacing"]
        self.position_mean = arrays.get("position_mean")

    def _foreground(self, features: np.ndarray) -> np.ndarray:
        flat = features.reshape(-1, features.shape[-1])
        return flat[foreground_mask(features).ravel()] if self.use_mask else flat


def rotated_count(references: int, limit: int | None, copies: int) -> int:
    """How many of `references` to rotate, `copies` copies each, so that the bank holds the
    images of `limit` references with all their copies (or every reference's own, when more):
    all of them up to `limit` (or with no limit), fewer beyond, none from limit·(copies + 1)."""
    if limit is None or references <= limit:
        return references
    if not copies:
        return 0
    return max(0, math.ceil((limit * (copies + 1) - references) / copies))


def spread(count: int, limit: int) -> set[int]:
    """Indices of at most `limit` of `count` items, evenly spaced from the first (all of them
    when `limit` is not below `count`)."""
    if limit >= count:
        return set(range(count))
    return {int(index) for index in np.linspace(0, count - 1, limit).round()} if limit else set()


def _rotate(image: np.ndarray, angle: int) -> np.ndarray:
    """`image` rotated counter-clockwise by `angle` degrees about its centre, same size."""
    return np.asarray(Image.fromarray(image).rotate(angle, resample=Image.BILINEAR))
