"""An ensemble of methods (backbones, levels, resolutions), each normalised by its own held-out
reference scores so that members with different score scales weigh alike."""

import copy
import inspect
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from anomalens.calibration import check_spread, log_scores
from anomalens.errors import ConfigError
from anomalens.features import NATIVE, resized
from anomalens.methods.base import Method, PatchScores, prefixed, quadrants
from anomalens.validation import ArraySpec, integer, prefixed_specs

COARSE_MEMBER: dict[str, Any] = {"method": "anomalydino"}
"""AnomalyDINO at its defaults: 320 px, levels s16 + s32_early, 8 rotations, top-1% image score;
wide receptive fields that see large defects (MTD's breaks and frays, MPDD's rust). Its index
keeps the default probes and no `exact_top`: 48 probes and 64 re-ranked candidates brought its
image score from 2.4% to 0.54% of exact search (MTD, 16 references), and `exact_top` certifies
it (0.000% at 200 references, against 11.2%), but neither changed an image AUROC on the three
dev datasets by more than 0.002, while `exact_top` cost 5-30% of an image's time and, at 200
MTD references, 13 s of fit and twice the peak memory (docs/results.md, stops 29 and 30)."""
FINE_MEMBER: dict[str, Any] = {
    "method": "anomalydino",
    "resolution": "native",
    "levels": ["s8"],
    "rotation_step": 90,
    "top_fraction": 0.001,
    "min_top_patches": 8,
    "exact_top": True,
}
"""AnomalyDINO at each image's own size on stride-8 features, right-angle rotations and the top
0.1% of patches (at least 8), their distances those of exact search: small defects (DeepPCB's
20 px opens and spurs) keep their pixels."""
DEFAULT_MEMBERS = (COARSE_MEMBER, FINE_MEMBER)
COMBINATIONS = ("mean", "max")
MAP_COMBINATIONS = ("mean", "max", "geomean")
MIN_GRID_SCORE = 1e-6
"""Floor of a normalised patch score before the geometric mean takes its logarithm."""
NORMALIZATIONS = ("ratio", "z")
MIN_LOG_STD = 0.05
"""Floor of a member's held-out log image-score spread, so that near-identical references do not
make its z-scores explode."""


class Ensemble(Method):
    """Scores of several member methods, each normalised by what its good references score
    held out, resampled onto one grid and combined.

    A member's image score is divided by the geometric mean of its held-out image scores
    (normalization "ratio"), or becomes exp(z), z its log score standardised by the mean and
    standard deviation of its held-out log image scores ("z"); its patch grid is divided by the
    geometric mean of its held-out grids' maxima. So for every member 1.0 is what a typical good
    image scores, and every value is positive, as the log-normal thresholds need. The held-out
    scores come from each member's own `fit_with_holdout` (exact leave-one-out for anomalydino
    and patchcore); `fit` computes them too, from the image's quadrants when it is given only
    one. Grids are combined on the finest member's grid (most positions), the others resized
    bilinearly onto it, and keep the finest member's extent (each member's uncovered bottom and
    right strips, left by cropping to a stride multiple, are under one of its strides wide).

    Args:
        members: one method configuration per member: a dict with an optional "method" (default
            "anomalydino") and that method's constructor keywords. The default is
            DEFAULT_MEMBERS: a coarse AnomalyDINO (320 px, stride 16 + 32) for large defects
            and a fine one (native size, stride 8) for small ones (docs/results.md).
        combine: "max" or "mean" over the members' normalised image scores. The max flags
            what any member finds; with the default members the mean dilutes the fine member's
            small defects with the coarse member's normal score.
        map_combine: "geomean", "max" or "mean" over the members' normalised patch grids, the
            anomaly map and so the masks and boxes; None combines them as `combine` does (how
            models saved before this option made their maps). The geometric mean keeps a pixel
            high only where every member finds it anomalous: the fine member's sharp peaks
            inside the coarse member's wide blobs, so that boxes fit small defects, without the
            fine member's noise on large ones (docs/defect_types.md, "Region extraction").
        normalization: "ratio" or "z" (see above). z weighs each member by its held-out spread:
            with "mean" and Lite0 + Lite2 members it scored image AUROC 0.996 / 0.857 / 0.602 on
            MPDD plate / MTD / DeepPCB (16 references, seed 0), ratios 0.983 / 0.857 / 0.601;
            with "max" and the default members z amplified the coarse member's noise on DeepPCB,
            whose good crops it scores in a tight band (docs/results.md), so "ratio" is the
            default.
        backbone: given to every member that has a backbone, replacing its own; None keeps the
            members' backbones (and reads as their backbone when they all share one).
        weights: the backbone's weights file or folder, given to every member that has a
            backbone (each member's config keeps it); None lets each find its own.
        resolution: given to every member whose resolution is a number of pixels (a "native"
            member keeps each image's own size); None keeps the members' resolutions.
        seed: given to every member whose method takes a seed, replacing one in its config.
    """

    name = "ensemble"
    saved_defaults: ClassVar[dict[str, Any]] = {"map_combine": None}

    def __init__(
        self,
        members: Sequence[Mapping[str, Any]] | None = None,
        combine: str = "max",
        map_combine: str | None = "geomean",
        normalization: str = "ratio",
        backbone: str | None = None,
        resolution: int | None = None,
        seed: int = 0,
        weights: str | None = None,
    ):
        from anomalens.methods import METHODS, create_method  # this module is one of them

        if combine not in COMBINATIONS:
            raise ConfigError(f"combine must be one of {list(COMBINATIONS)}, got {combine!r}")
        if map_combine is not None and map_combine not in MAP_COMBINATIONS:
            raise ConfigError(
                f"map_combine must be one of {list(MAP_COMBINATIONS)} or None, got {map_combine!r}"
            )
        if normalization not in NORMALIZATIONS:
            raise ConfigError(
                f"normalization must be one of {list(NORMALIZATIONS)}, got {normalization!r}"
            )
        integer("seed", seed)
        configs = DEFAULT_MEMBERS if members is None else members
        if isinstance(configs, str | Mapping) or not configs:
            raise ConfigError(f"members must be a non-empty list of method configs, got {members}")
        self.members: list[Method] = []
        for config in configs:
            if not isinstance(config, Mapping):
                raise ConfigError(f"each member must be a dict of method options, got {config!r}")
            params = dict(config)
            method = params.pop("method", "anomalydino")
            accepted = inspect.signature(METHODS[method]).parameters if method in METHODS else {}
            if "seed" in accepted:
                params["seed"] = seed
            if backbone is not None and "backbone" in accepted:
                params["backbone"] = backbone
            if weights is not None and "weights" in accepted:
                params["weights"] = weights
            if resolution is not None and "resolution" in accepted:
                own = params.get("resolution", accepted["resolution"].default)
                params["resolution"] = own if own == NATIVE else resolution
            self.members.append(create_method(method, **params))
        shared = {member.config().get("backbone") for member in self.members}
        if backbone is None and len(shared) == 1:
            backbone = shared.pop()
        self.combine = combine
        self.map_combine = map_combine
        self.normalization = normalization
        self.backbone = backbone
        self.resolution = resolution
        self.seed = seed
        self.image_log_mean = np.zeros(len(self.members))
        self.image_log_std = np.ones(len(self.members))
        self.map_scale = np.ones(len(self.members))

    def config(self) -> dict[str, Any]:
        return {
            "members": [{"method": member.name, **member.config()} for member in self.members],
            "combine": self.combine,
            "map_combine": self.map_combine,
            "normalization": self.normalization,
            "backbone": self.backbone,
            "resolution": self.resolution,
            "seed": self.seed,
        }

    def fit(self, images: list[np.ndarray], progress: bool = False) -> None:
        if len(images) > 1:
            self.fit_with_holdout(images, progress)
            return
        self.fit_with_holdout(quadrants(images[0]), progress)
        for member in self.members:
            member.fit(images, progress)

    def fit_with_holdout(
        self, images: list[np.ndarray], progress: bool = False
    ) -> list[PatchScores]:
        """Fit every member with its held-out scores, set each member's normalisation from them,
        and return their combination, normalised like `score`'s."""
        held_out = [member.fit_with_holdout(images, progress) for member in self.members]
        for index, (member, scores) in enumerate(zip(self.members, held_out, strict=True)):
            # normalising by its own held-out scores would hide a member's degenerate ones
            check_spread([s.image_score for s in scores], f"member {index} ({member.name})")
        self._normalize_by(held_out)
        return [self._combined(parts) for parts in zip(*held_out, strict=True)]

    def combine_batch(self, member_scores: Sequence[Sequence[PatchScores]]) -> list[PatchScores]:
        """Combine each member's scores of one batch of images (one list per member),
        normalised by the batch's own scores as `fit_with_holdout` normalises by the held-out
        ones: the zero-shot batch mode, whose images are their own references. This
        ensemble's own normalisation is left as it is."""
        scorer = copy.copy(self)
        scorer._normalize_by(member_scores)
        return [scorer._combined(parts) for parts in zip(*member_scores, strict=True)]

    def _normalize_by(self, member_scores: Sequence[Sequence[PatchScores]]) -> None:
        """Set each member's normalisation from its scores of normal (or mostly normal) images."""
        logs = [log_scores([s.image_score for s in scores]) for scores in member_scores]
        self.image_log_mean = np.array([values.mean() for values in logs])
        self.image_log_std = np.array([max(values.std(ddof=1), MIN_LOG_STD) for values in logs])
        maxima = [log_scores([s.grid.max() for s in scores]) for scores in member_scores]
        self.map_scale = np.exp([values.mean() for values in maxima])

    def score(self, images: list[np.ndarray]) -> list[PatchScores]:
        scores = [member.score(images) for member in self.members]
        return [self._combined(parts) for parts in zip(*scores, strict=True)]

    def state(self) -> dict[str, np.ndarray]:
        arrays = {
            "image_log_mean": self.image_log_mean,
            "image_log_std": self.image_log_std,
            "map_scale": self.map_scale,
        }
        for index, member in enumerate(self.members):
            arrays |= {f"member{index}.{key}": value for key, value in member.state().items()}
        return arrays

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.image_log_mean, self.image_log_std = arrays["image_log_mean"], arrays["image_log_std"]
        self.map_scale = arrays["map_scale"]
        for index, member in enumerate(self.members):
            member.load_state(prefixed(arrays, f"member{index}."))

    def score_bounds(self) -> tuple[float, float]:
        bounds = np.array([member.score_bounds() for member in self.members])
        with np.errstate(divide="ignore"):
            logs = np.log(bounds[:, 0]) - self.image_log_mean
        if self.normalization == "z":
            logs = logs / self.image_log_std
        # a mean of the members is at most their max, so the max bounds both combinations
        return float(np.exp(logs.max())), float((bounds[:, 1] / self.map_scale).max())

    def state_spec(self) -> dict[str, ArraySpec]:
        count = len(self.members)
        specs = {
            name: ArraySpec((count,), "float64")
            for name in ("image_log_mean", "image_log_std", "map_scale")
        }
        for index, member in enumerate(self.members):
            specs |= prefixed_specs(member.state_spec(), f"member{index}.")
        return specs

    def _combined(self, parts: tuple[PatchScores, ...]) -> PatchScores:
        """One image's member scores, normalised, on the finest member's grid, combined."""
        finest = max(parts, key=lambda part: part.grid.size)
        scales = self.map_scale
        grids = [part.grid / float(scale) for part, scale in zip(parts, scales, strict=True)]
        logs = log_scores([part.image_score for part in parts]) - self.image_log_mean
        z = logs / self.image_log_std if self.normalization == "z" else logs
        log_score = z.max() if self.combine == "max" else z.mean()
        return PatchScores(
            grid=combined_grid(grids, self.map_combine or self.combine),
            extent=finest.extent,
            image_size=finest.image_size,
            image_score=float(np.exp(log_score)),
        )


def combined_grid(grids: Sequence[np.ndarray], how: str) -> np.ndarray:
    """(h, w) float32 combination of normalised (h_i, w_i) grids, each resized bilinearly onto
    the finest (most positions): "max", "mean" or "geomean" (the geometric mean, each score
    floored at MIN_GRID_SCORE)."""
    shape = max(grids, key=np.size).shape
    stacked = torch.stack([resized(torch.from_numpy(grid)[None], shape)[0] for grid in grids])
    if how == "max":
        combined = stacked.amax(dim=0)
    elif how == "mean":
        combined = stacked.mean(dim=0)
    else:
        combined = stacked.clamp(min=MIN_GRID_SCORE).log().mean(dim=0).exp()
    return combined.numpy().astype(np.float32)
