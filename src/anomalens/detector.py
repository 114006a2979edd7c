"""The Detector: fit on good images, predict score, map, mask, boxes and verdict."""

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from anomalens import calibration
from anomalens.calibration import Threshold
from anomalens.defect_types.examples import BoxesInput, MaskInput, example_regions, per_example
from anomalens.defect_types.registry import DefectTypeError, DefectTypes
from anomalens.errors import ConfigError, ImageError
from anomalens.io.images import as_rgb_array
from anomalens.localization.maps import SMOOTHING_SIGMA, anomaly_map
from anomalens.localization.regions import find_boxes
from anomalens.methods import METHODS, create_method
from anomalens.methods.base import Method, PatchScores, quadrants
from anomalens.results import Result

ImageInput = str | Path | np.ndarray
CALIBRATION_BATCH = 8
"""Labelled images predicted at a time by `calibrate`, so that only their maps are held."""
BOX_FALSE_ALARM = 0.2
"""Default target rate of good images with any box (see `Detector`)."""
SPLIT_BELOW = 8
"""With fewer references, calibration holds out quadrants of the references instead."""


class Detector:
    """Learns what good looks like from a few images, then inspects new ones.

    Args:
        method: "ensemble" (default: a coarse and a fine AnomalyDINO, see
            `anomalens.methods.ensemble`), "anomalydino", "patchcore", "padim", "autoencoder" or
            "discriminator".
        backbone: registered backbone name (see `anomalens weights list`); None uses the
            method's default (EfficientNet-Lite0).
        resolution: image size, in pixels, the method works at (the shorter side for
            anomalydino; the coarse member's for the ensemble, whose fine member works at each
            image's own size); None uses the method's default (320 px for anomalydino and
            patchcore, 256 px for padim, 128 px for the autoencoder).
        max_false_alarm: target rate of good images flagged NG; sets the image threshold.
        box_false_alarm: target rate of good images that get any box; sets the pixel
            threshold. Boxes are drawn whatever the verdict, and a defect's pixels peak barely
            above a good image's maximum, so this is looser than `max_false_alarm`: 0.2 keeps
            false boxes under 0.5 per good image on MTD, MPDD plate and DeepPCB (16 references),
            doubles MTD's box recall over 0.01 and takes MPDD's from 0.10 to 0.77
            (docs/defect_types.md).
        min_region_area: regions with fewer pixels get no box.
        smoothing_sigma: Gaussian smoothing of the upsampled anomaly map, in pixels.
        seed: seed of every random choice the method makes.
        **method_params: further keywords of the method (see its class docstring).
    """

    def __init__(
        self,
        method: str = "ensemble",
        backbone: str | None = None,
        resolution: int | None = None,
        max_false_alarm: float = 0.01,
        box_false_alarm: float = BOX_FALSE_ALARM,
        min_region_area: int = 16,
        smoothing_sigma: float = SMOOTHING_SIGMA,
        seed: int = 0,
        **method_params: Any,
    ):
        for setting, rate in (
            ("max_false_alarm", max_false_alarm),
            ("box_false_alarm", box_false_alarm),
        ):
            if not 0 < rate < 1:
                raise ConfigError(f"{setting} must be in (0, 1), got {rate}")
        self.max_false_alarm = max_false_alarm
        self.box_false_alarm = box_false_alarm
        self.min_region_area = min_region_area
        self.smoothing_sigma = smoothing_sigma
        self.method: Method = create_method(
            method,
            **_accepted(method, backbone=backbone, resolution=resolution, seed=seed),
            **method_params,
        )
        self.thresholds: dict[str, Threshold] = {}
        self.references: list[str] = []
        self.reference_outliers: list[str] = []
        self.held_out_scores: list[float] = []
        self.defect_types = DefectTypes.for_method(self.method.config())

    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild an unfitted copy of this detector."""
        return {
            "method": self.method.name,
            "method_params": self.method.config(),
            "max_false_alarm": self.max_false_alarm,
            "box_false_alarm": self.box_false_alarm,
            "min_region_area": self.min_region_area,
            "smoothing_sigma": self.smoothing_sigma,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Detector":
        """An unfitted detector with the configuration `config()` returned."""
        return cls(
            method=config["method"],
            max_false_alarm=config["max_false_alarm"],
            # Models saved before the setting set their pixel threshold at max_false_alarm.
            box_false_alarm=config.get("box_false_alarm", config["max_false_alarm"]),
            min_region_area=config["min_region_area"],
            smoothing_sigma=config["smoothing_sigma"],
            **config["method_params"],  # backbone, resolution and seed bind to their names
        )

    @property
    def is_fitted(self) -> bool:
        """Whether `fit` (or `load`) has run."""
        return "image" in self.thresholds

    def fit(
        self,
        images: Sequence[ImageInput],
        progress: bool = False,
        exclude_outliers: bool = False,
        names: Sequence[str] | None = None,
    ) -> "Detector":
        """Learn from good `images` (paths or RGB arrays) and calibrate the thresholds.

        With SPLIT_BELOW (8) references or more, references that score as outliers against the
        others are listed in `reference_outliers` by name (`names`, else the path or
        "<array i>"); with `exclude_outliers` they are dropped and the fit is redone. Fewer
        references are too few to tell an outlier, and none is flagged. `held_out_scores` keeps
        the held-out image scores the image threshold was set from (one per reference, or per
        reference quadrant below SPLIT_BELOW).
        """
        if not images:
            raise ValueError("fit needs at least one good image")
        names, arrays = _arrays(images, names)
        held_out = self._fit_with_holdout(arrays, progress)
        image_scores = np.array([scores.image_score for scores in held_out])
        flagged = calibration.outliers(image_scores) if len(arrays) >= SPLIT_BELOW else []
        self.reference_outliers = [names[i] for i in flagged]
        if exclude_outliers and flagged:
            keep = [i for i in range(len(arrays)) if i not in flagged]
            outliers = self.reference_outliers
            self.fit([arrays[i] for i in keep], progress, names=[names[i] for i in keep])
            self.reference_outliers = outliers
            return self
        self.references = names
        self.held_out_scores = image_scores.tolist()
        self.thresholds = {
            "image": calibration.calibrate(image_scores, self.max_false_alarm),
            "pixel": calibration.calibrate(
                np.array([self._map(scores).max() for scores in held_out]), self.box_false_alarm
            ),
        }
        return self

    def threshold_dicts(self) -> dict[str, dict[str, object]]:
        """Each threshold and how it was set, JSON-serialisable, by name ("image", "pixel")."""
        return {name: threshold.to_dict() for name, threshold in self.thresholds.items()}

    def calibrate(self, images: Sequence[ImageInput], labels: Sequence[bool]) -> "Detector":
        """Set the image threshold to the F1-optimal one on labelled images (True = defective)."""
        step = CALIBRATION_BATCH
        batches = (images[start : start + step] for start in range(0, len(images), step))
        scores = [result.score for batch in batches for result in self.predict(batch)]
        self.thresholds["image"] = calibration.best_f1_threshold(np.array(labels), np.array(scores))
        return self

    def predict(self, images: Sequence[ImageInput]) -> list[Result]:
        """Inspect each image (path or RGB array); results come back in order, each box
        labelled with its registered defect type (see `add_defect_type`)."""
        self._require_fitted()
        _, arrays = _arrays(images)
        results = []
        for image, scores in zip(images, self.method.score(arrays), strict=True):
            results.append(self._result(scores, image if isinstance(image, str | Path) else None))
        self.defect_types.label(arrays, results)
        return results

    def add_defect_type(
        self,
        name: str,
        images: Sequence[ImageInput],
        masks: Sequence[MaskInput | None] | None = None,
        boxes: Sequence[BoxesInput | None] | None = None,
        names: Sequence[str] | None = None,
        skipped: list[str] | None = None,
    ) -> "Detector":
        """Register defect type `name` from a few example images of it, or add them to its
        examples; from then on `predict` labels each box with its most similar type.

        Args:
            name: the type's name.
            images: example images (paths or RGB arrays).
            masks: per image, its defect mask (file or array, nonzero = defect) or None.
            boxes: per image, a box around its defect, several boxes (one example each) or
                None.
            names: per image, the name errors and the type's example list use (default: the
                path, or "<array i>").
            skipped: when given, an unusable image is reported here ("name: problem") and the
                others are added; a DefectTypeError lists the problems when none is usable.
                Without it, the first unusable image's ImageError is raised.

        Each image's defect is its mask, else its boxes, else the strongest region the
        detector finds; an ImageError names an image where no region can be found.
        """
        if not images:
            raise DefectTypeError(f"defect type {name!r} needs at least one example image")
        names = list(names) if names else [_name(image, i) for i, image in enumerate(images)]
        masks = per_example(masks, "masks", len(images))
        boxes = per_example(boxes, "boxes", len(images))
        problems: list[str] = []
        usable = []
        for image, example, mask, box in zip(images, names, masks, boxes, strict=True):
            try:
                array = as_rgb_array(image, example)
                result = self.predict([array])[0]
                regions = example_regions(result, example, mask, box)
            except ImageError as error:
                if skipped is None:
                    raise
                problems.append(str(error))
                continue
            usable.append((array, example, result.anomaly_map, regions))
        if skipped is not None:
            skipped += problems
        if not usable:
            raise DefectTypeError(
                f"no usable example of defect type {name!r}: " + "; ".join(problems)
            )
        arrays, sources, maps, regions = zip(*usable, strict=True)
        embeddings = self.defect_types.embedder.embed(list(arrays), list(maps), list(regions))
        sources = [example for example, found in zip(sources, regions, strict=True) for _ in found]
        self.defect_types.add(name, np.concatenate(embeddings), sources)
        return self

    def remove_defect_type(self, name: str) -> "Detector":
        """Forget defect type `name`."""
        self.defect_types.remove(name)
        return self

    def save(self, path: str | Path) -> Path:
        """Write the fitted detector to directory `path` (JSON + safetensors, no pickle)."""
        from anomalens.persistence import save_detector

        self._require_fitted()
        return save_detector(self, Path(path))

    @classmethod
    def load(cls, path: str | Path) -> "Detector":
        """Read a detector written by `save`."""
        from anomalens.persistence import load_detector

        return load_detector(Path(path))

    def _fit_with_holdout(self, arrays: list[np.ndarray], progress: bool) -> list[PatchScores]:
        if len(arrays) >= SPLIT_BELOW:
            return self.method.fit_with_holdout(arrays, progress)
        parts = [part for array in arrays for part in quadrants(array)]
        held_out = type(self.method)(**self.method.config()).fit_with_holdout(parts)
        self.method.fit(arrays, progress)
        return held_out

    def _map(self, scores: PatchScores) -> np.ndarray:
        return anomaly_map(scores.grid, scores.extent, scores.image_size, self.smoothing_sigma)

    def _result(self, scores: PatchScores, path: str | Path | None) -> Result:
        pixel_map = self._map(scores)
        mask = pixel_map >= self.thresholds["pixel"].value
        return Result(
            score=scores.image_score,
            anomaly_map=pixel_map,
            mask=mask,
            boxes=find_boxes(pixel_map, mask, self.min_region_area),
            is_anomalous=scores.image_score >= self.thresholds["image"].value,
            path=None if path is None else str(path),
        )

    def _require_fitted(self) -> None:
        if not self.is_fitted:
            raise RuntimeError("the detector is not fitted: call fit() or Detector.load() first")


def _accepted(method: str, **common: Any) -> dict[str, Any]:
    """The common keywords given (not None) that `method`'s constructor takes; a ConfigError
    for a backbone or resolution given to a method without one (the seed, always given, goes
    only to methods that draw at random)."""
    given = {key: value for key, value in common.items() if value is not None}
    if method not in METHODS:
        return given
    parameters = inspect.signature(METHODS[method]).parameters
    unused = [key for key in given if key not in parameters and key != "seed"]
    if unused:
        raise ConfigError(f"the {method} method has no {' or '.join(unused)} to set")
    return {key: value for key, value in given.items() if key in parameters}


def _arrays(
    images: Sequence[ImageInput], names: Sequence[str] | None = None
) -> tuple[list[str], list[np.ndarray]]:
    """The name (given, else see `_name`) and RGB array of each image."""
    names = list(names) if names else [_name(image, i) for i, image in enumerate(images)]
    return names, [as_rgb_array(image, name) for image, name in zip(images, names, strict=True)]


def _name(image: ImageInput, index: int) -> str:
    return str(image) if isinstance(image, str | Path) else f"<array {index}>"
