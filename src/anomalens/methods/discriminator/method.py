"""A learned patch scorer on frozen backbone features (SimpleNet, Liu et al. CVPR 2023; GLASS,
Chen et al. ECCV 2024), trained from the good references and synthetic defects on them."""

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from anomalens.methods.anomalydino import AnomalyDINO
from anomalens.methods.base import Method, PatchScores, prefixed, top_fraction_mean
from anomalens.methods.discriminator.model import PatchDiscriminator
from anomalens.methods.discriminator.synthesis import random_defect
from anomalens.methods.discriminator.training import TrainingPatches, train
from anomalens.methods.memory_bank import PatchGrid
from anomalens.validation import ArraySpec, integer, number, prefixed_specs

DEFECT_COVERAGE = 0.5
"""A patch of a synthetic-defect image is a negative when the defect covers more than this
fraction of its grid cell."""
HOLDOUT_FOLDS = 3
"""Folds of `fit_with_holdout` (see its docstring for why three)."""
KNN_PREFIX = "knn."
"""State arrays of the kNN part (knn_weight > 0) start with this."""
HEAD_PREFIX = "head{}."
"""State arrays of the i-th trained head start with this."""


class Discriminator(Method):
    """Patch anomaly = softplus of a small discriminator's logit on adapted frozen features,
    blended geometrically with AnomalyDINO's kNN distance; image score = mean of the top 1%
    patch scores.

    Features are AnomalyDINO's: the backbone's levels stacked on the finest grid, each level
    L2-normalised, then the whole vector. A linear adaptor and a one-hidden-layer MLP learn to
    tell the references' patches from negatives: the adapted normal features plus Gaussian
    noise, and patches covered by synthetic defects (cut-paste and Perlin-shaped foreign
    textures) pasted on the references. Softplus(logit) is the negative log-probability that a
    patch is normal: positive, and unbounded above so that strong anomalies keep their order.

    Args:
        backbone: registered backbone name.
        resolution: shorter image side in pixels fed to the backbone (aspect ratio kept), or
            "native" (as AnomalyDINO's).
        levels: backbone feature levels; None uses the backbone's defaults.
        weights: optional path to the backbone weights.
        keep_aspect: keep the aspect ratio; False resizes to a square.
        defects_per_image: synthetic-defect copies made of each reference (0: noise only).
        noise_std: standard deviation of the Gaussian noise per channel of the unit-norm
            features that makes the noise negatives.
        hidden: units of the discriminator's hidden layer.
        steps: optimisation steps (fixed, so training time does not grow with references).
        step_patches: normal patches per step (with as many of each kind of negative).
        learning_rate: Adam's learning rate of the discriminator (the adaptor's is a tenth).
        knn_weight: w in (0, 1] scores each patch with knn^w * discriminator^(1 - w), knn
            being the default AnomalyDINO's patch score (rotated references, masking decided
            by its test) fitted on the same references; 0 scores with the discriminator alone
            (no kNN bank is built or saved).
        top_fraction: fraction of highest patch scores averaged into the image score; 0 takes
            the maximum.
        batch_size: images per backbone forward pass.
        seed: seeds the synthetic defects, weight initialisation and patch draws.
    """

    name = "discriminator"

    def __init__(
        self,
        backbone: str = "efficientnet_lite0",
        resolution: int | str = 320,
        levels: tuple[str, ...] | None = None,
        weights: str | None = None,
        keep_aspect: bool = True,
        defects_per_image: int = 4,
        noise_std: float = 0.03,
        hidden: int = 256,
        steps: int = 300,
        step_patches: int = 256,
        learning_rate: float = 2e-4,
        knn_weight: float = 0.75,
        top_fraction: float = 0.01,
        batch_size: int = 8,
        seed: int = 0,
    ):
        number("knn_weight", knn_weight, 0, 1)
        number("top_fraction", top_fraction, 0, 1)
        number("noise_std", noise_std, minimum=0)
        number("learning_rate", learning_rate, above=0)
        integer("defects_per_image", defects_per_image, minimum=0)
        integer("hidden", hidden, minimum=1), integer("steps", steps, minimum=1)
        integer("step_patches", step_patches, minimum=1), integer("seed", seed)
        self.knn = AnomalyDINO(
            backbone=backbone,
            resolution=resolution,
            levels=levels,
            weights=weights,
            keep_aspect=keep_aspect,
            batch_size=batch_size,
        )
        self.defects_per_image = defects_per_image
        self.noise_std = noise_std
        self.hidden = hidden
        self.steps = steps
        self.step_patches = step_patches
        self.learning_rate = learning_rate
        self.knn_weight = knn_weight
        self.top_fraction = top_fraction
        self.seed = seed
        self.networks: list[PatchDiscriminator] = []

    def config(self) -> dict[str, Any]:
        return {
            **self.knn.extractor.config(),
            "keep_aspect": self.knn.extractor.keep_aspect,
            "defects_per_image": self.defects_per_image,
            "noise_std": self.noise_std,
            "hidden": self.hidden,
            "steps": self.steps,
            "step_patches": self.step_patches,
            "learning_rate": self.learning_rate,
            "knn_weight": self.knn_weight,
            "top_fraction": self.top_fraction,
            "seed": self.seed,
        }

    def fit(self, images: list[np.ndarray], progress: bool = False) -> None:
        if len(images) > 1:
            self.fit_with_holdout(images, progress)
            return
        patches, _ = self.training_patches(images, progress)
        self.networks = [self._train(patches, progress)]
        if self.knn_weight:
            self.knn.fit(images, progress)

    def fit_with_holdout(
        self, images: list[np.ndarray], progress: bool = False
    ) -> list[PatchScores]:
        """Fit on all `images`; score each with a head trained on the other folds only.

        Three folds (alternate images), trained on features computed once: every held-out score
        comes from a head that never saw that image or its synthetic copies, at the cost of
        three trainings of the small head and no extra backbone pass (the default five folds
        would train five). New images are scored by the mean of the three heads, so that the
        thresholds set from the heads' held-out scores hold for the scores they are applied to
        (a fourth head trained on all images would have a scale of its own). The kNN part is
        AnomalyDINO's exact leave-one-out.
        """
        if len(images) < 2:
            raise ValueError("held-out scores need at least two images")
        patches, grids = self.training_patches(images, progress)
        folds = min(len(images), HOLDOUT_FOLDS)
        held_out: list[np.ndarray] = [np.empty(0)] * len(images)
        self.networks = []
        for fold in range(folds):
            held = list(range(fold, len(images), folds))
            self.networks.append(self._train(patches.without(held), progress))
            for index in held:
                held_out[index] = _discriminator_scores([self.networks[-1]], grids[index])
        if self.knn_weight:
            knn = self.knn.fit_with_holdout(images, progress)
            held_out = [self._blend(own, k.grid) for own, k in zip(held_out, knn, strict=True)]
        return [self._result(scores, grid) for scores, grid in zip(held_out, grids, strict=True)]

    def score(self, images: list[np.ndarray]) -> list[PatchScores]:
        if not self.networks:
            raise RuntimeError("the discriminator is not fitted")
        results = []
        for grid in self.knn.patch_grids(images):
            scores = _discriminator_scores(self.networks, grid)
            if self.knn_weight:
                flat = grid.features.reshape(-1, grid.features.shape[-1])
                knn, _ = self.knn.image_score(grid, *self.knn.neighbours.distances(flat), None)
                scores = self._blend(scores, knn)
            results.append(self._result(scores, grid))
        return results

    def state(self) -> dict[str, np.ndarray]:
        if not self.networks:
            raise RuntimeError("the discriminator is not fitted")
        arrays = {
            HEAD_PREFIX.format(index) + key: value.numpy().copy()
            for index, network in enumerate(self.networks)
            for key, value in network.state_dict().items()
        }
        if self.knn_weight:
            arrays |= {f"{KNN_PREFIX}{key}": value for key, value in self.knn.state().items()}
        return arrays

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.networks = []
        while own := prefixed(arrays, HEAD_PREFIX.format(len(self.networks))):
            network = PatchDiscriminator(own["adaptor.weight"].shape[1], self.hidden)
            network.load_state_dict({key: torch.from_numpy(value) for key, value in own.items()})
            self.networks.append(network.eval())
        if self.knn_weight:
            self.knn.load_state(prefixed(arrays, KNN_PREFIX))

    def state_spec(self) -> dict[str, ArraySpec]:
        specs: dict[str, ArraySpec] = {}
        one, two = (PatchDiscriminator(channels, self.hidden).state_dict() for channels in (1, 2))
        for index in range(HOLDOUT_FOLDS):  # one head, or one per fold
            specs |= {
                HEAD_PREFIX.format(index) + key: ArraySpec(
                    tuple(  # the sides that follow the features' channels
                        "channels" if a != b else a
                        for a, b in zip(value.shape, two[key].shape, strict=True)
                    ),
                    str(value.numpy().dtype),
                    required=index == 0,
                )
                for key, value in one.items()
            }
        if self.knn_weight:
            specs |= prefixed_specs(self.knn.state_spec(), KNN_PREFIX)
        return specs

    def training_patches(
        self, images: list[np.ndarray], progress: bool = False
    ) -> tuple[TrainingPatches, list[PatchGrid]]:
        """Normal patches of `images`, the defect patches of their synthetic copies, and the
        plain grids of `images`. Reference i's copies are drawn from seed (seed, i) alone."""
        grids = self.knn.patch_grids(images, progress)
        synthetic, masks, owners = [], [], []
        for index, image in enumerate(
            tqdm(
                images, desc="synthetic defects", disable=not (progress and self.defects_per_image)
            )
        ):
            rng = np.random.default_rng([self.seed, index])
            for _ in range(self.defects_per_image):
                defective, mask = random_defect(image, rng)
                synthetic.append(defective)
                masks.append(mask)
                owners.append(index)
        channels = grids[0].features.shape[-1]
        defects, defect_owners = [np.zeros((0, channels), np.float32)], [np.zeros(0, np.int64)]
        for grid, mask, owner in zip(self.knn.patch_grids(synthetic), masks, owners, strict=True):
            covered = _coverage(mask, grid) > DEFECT_COVERAGE
            defects.append(grid.features[covered])
            defect_owners.append(np.full(int(covered.sum()), owner))
        normal = [grid.features.reshape(-1, channels) for grid in grids]
        return (
            TrainingPatches(
                torch.from_numpy(np.concatenate(normal)),
                torch.from_numpy(np.repeat(np.arange(len(grids)), [len(n) for n in normal])),
                torch.from_numpy(np.concatenate(defects)),
                torch.from_numpy(np.concatenate(defect_owners)),
            ),
            grids,
        )

    def _train(self, patches: TrainingPatches, progress: bool) -> PatchDiscriminator:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return train(
                patches,
                self.hidden,
                self.noise_std,
                self.steps,
                self.step_patches,
                self.learning_rate,
                progress,
            )

    def _blend(self, scores: np.ndarray, knn: np.ndarray) -> np.ndarray:
        """knn^w * scores^(1 - w) per patch (w = knn_weight)."""
        blended = np.maximum(knn, 0.0) ** self.knn_weight * scores ** (1.0 - self.knn_weight)
        return blended.astype(np.float32)

    def _result(self, scores: np.ndarray, grid: PatchGrid) -> PatchScores:
        image_score = top_fraction_mean(scores, self.top_fraction)
        return PatchScores(scores, grid.extent, grid.image_size, image_score)


@torch.inference_mode()
def _discriminator_scores(networks: list[PatchDiscriminator], grid: PatchGrid) -> np.ndarray:
    """(h, w) mean over `networks` of the softplus of their logits on `grid`'s patches."""
    height, width, channels = grid.features.shape
    patches = torch.from_numpy(grid.features.reshape(-1, channels))
    scores = torch.stack([F.softplus(network(patches)) for network in networks]).mean(dim=0)
    return scores.reshape(height, width).numpy().astype(np.float32)


def _coverage(mask: np.ndarray, grid: PatchGrid) -> np.ndarray:
    """(h, w) fraction of each grid cell that `mask` (the image's defect pixels) covers."""
    rows, cols = (max(round(side), 1) for side in grid.extent)
    covered = torch.from_numpy(mask[:rows, :cols].astype(np.float32))[None]
    return F.adaptive_avg_pool2d(covered, grid.features.shape[:2])[0].numpy()
