"""The Detector: fit on good images, predict score, map, mask, boxes and verdict."""

import hashlib
import inspect
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from anomalens import calibration
from anomalens.allocator import keep_freed_memory
from anomalens.calibration import Threshold
from anomalens.defect_types.examples import BoxesInput, MaskInput, example_regions, per_example
from anomalens.defect_types.registry import DefectTypeError, DefectTypes
from anomalens.defect_types.supervised import region_crop
from anomalens.errors import ConfigError, ImageError
from anomalens.io.images import as_rgb_array
from anomalens.localization.maps import SMOOTHING_SIGMA, anomaly_map
from anomalens.localization.regions import extract_regions
from anomalens.methods import METHODS, create_method
from anomalens.methods.base import Method, PatchScores, quadrants
from anomalens.results import Result
from anomalens.threads import set_threads
from anomalens.validation import integer, number

ImageInput = str | Path | np.ndarray
CALIBRATION_BATCH = 8
"""Labelled images predicted at a time by `calibrate`, so that only their maps are held."""
BOX_FALSE_ALARM = 0.2
"""Default target rate of good images with any box (see `Detector`)."""
HYSTERESIS = 0.8
"""Default floor, as a fraction of the pixel threshold, that regions grow down to."""
SPLIT_BELOW = 8
"""With fewer references, calibration holds out quadrants of the references instead."""
MAX_SMOOTHING_SIGMA = 64.0
"""Largest map smoothing accepted, in pixels (its kernel spans 8 sigma)."""


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
        hysteresis: a region is seeded by pixels at or above the pixel threshold and grows over
            the connected pixels down to `hysteresis` × the threshold (1.0: the plain
            threshold). 0.8 fits boxes to whole defects instead of their peaks: with 16
            references box recall rose from 0.01 to 0.28 on DeepPCB and from 0.77 to 0.91 on
            MPDD plate, and fell from 0.22 to 0.20 on MTD (docs/defect_types.md).
        smoothing_sigma: Gaussian smoothing of the upsampled anomaly map, in pixels.
        seed: seed of every random choice the method makes.
        threads: threads of torch, faiss and OpenMP for this process (`anomalens.threads`);
            None keeps the count set before, or sets the default (1) the first time. Making
            a Detector also keeps freed memory for reuse in this process
            (`anomalens.allocator`; ANOMALENS_RELEASE_MEMORY=1 opts out).
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
        hysteresis: float = HYSTERESIS,
        smoothing_sigma: float = SMOOTHING_SIGMA,
        seed: int = 0,
        threads: int | None = None,
        **method_params: Any,
    ):
        set_threads(threads)
        keep_freed_memory()
        number("max_false_alarm", max_false_alarm, above=0, below=1)
        number("box_false_alarm", box_false_alarm, above=0, below=1)
        integer("min_region_area", min_region_area, minimum=1)
        number("hysteresis", hysteresis, above=0, maximum=1)
        number("smoothing_sigma", smoothing_sigma, 0, MAX_SMOOTHING_SIGMA)
        integer("seed", seed)
        self.max_false_alarm = max_false_alarm
        self.box_false_alarm = box_false_alarm
        self.min_region_area = min_region_area
        self.hysteresis = hysteresis
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
        self.held_out_map_maxima: list[float] = []
        self.batch_thresholds: dict[str, Threshold] = {}
        self.calibration_warnings: dict[str, str] = {}
        self.defect_types = DefectTypes.for_method(self.method.config())

    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild an unfitted copy of this detector."""
        return {
            "method": self.method.name,
            "method_params": self.method.config(),
            "max_false_alarm": self.max_false_alarm,
            "box_false_alarm": self.box_false_alarm,
            "min_region_area": self.min_region_area,
            "hysteresis": self.hysteresis,
            "smoothing_sigma": self.smoothing_sigma,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Detector":
        """An unfitted detector with the configuration `config()` returned."""
        saved = getattr(METHODS.get(config["method"]), "saved_defaults", {})
        return cls(
            method=config["method"],
            max_false_alarm=config["max_false_alarm"],
            # Models saved before the setting set their pixel threshold at max_false_alarm.
            box_false_alarm=config.get("box_false_alarm", config["max_false_alarm"]),
            min_region_area=config["min_region_area"],
            hysteresis=config.get("hysteresis", 1.0),  # saved before: the plain threshold
            smoothing_sigma=config["smoothing_sigma"],
            **(saved | config["method_params"]),  # backbone, resolution, seed bind to names
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
        reference quadrant below SPLIT_BELOW), `held_out_map_maxima` the maxima of their maps
        the pixel threshold was set from, so that `retarget` can move both.

        An exact copy of an earlier reference is left out, with a warning naming both: it adds
        nothing to the bank, and held out it would score near 0 against its twin and widen the
        threshold (two copies among DeepPCB's 169 references lifted the image threshold above
        every defective crop). References that are all copies of one photo, or without spread
        in their held-out scores (blank images), raise a CalibrationError; a threshold above
        the highest score the method can give is kept with a CalibrationWarning, its message in
        `calibration_warnings` by threshold name.
        """
        images = _listed(images)
        if not images:
            raise ValueError("fit needs at least one good image")
        if exclude_outliers and len(images) < SPLIT_BELOW:
            warnings.warn(
                f"exclude_outliers does nothing below {SPLIT_BELOW} references (too few to tell "
                f"an outlier); all {len(images)} are kept",
                stacklevel=2,
            )
        names, arrays = _without_copies(*_arrays(images, names))
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
        calibration.check_spread(image_scores)
        self.references = names
        self.held_out_scores = image_scores.tolist()
        self.held_out_map_maxima = [float(self._map(scores).max()) for scores in held_out]
        self._calibrate_thresholds()
        return self

    def retarget(self, max_false_alarm: float) -> "Detector":
        """Set the image threshold for a new target rate of good images flagged NG, from the
        held-out scores `fit` kept, without fitting again (an F1-optimal image threshold that
        `calibrate` set is replaced too); the pixel threshold is recomputed from the kept map
        maxima for `box_false_alarm`."""
        self._require_fitted()
        number("max_false_alarm", max_false_alarm, above=0, below=1)
        if not self.held_out_scores or not self.held_out_map_maxima:
            raise ConfigError(
                "this model keeps no held-out scores (an older anomalens saved it): fit it "
                "again to change its false-alarm target"
            )
        self.max_false_alarm = max_false_alarm
        self._calibrate_thresholds()
        return self

    def _calibrate_thresholds(self) -> None:
        thresholds = {
            "image": calibration.calibrate(np.array(self.held_out_scores), self.max_false_alarm),
            "pixel": calibration.calibrate(
                np.array(self.held_out_map_maxima), self.box_false_alarm
            ),
        }
        self.calibration_warnings = {}
        for (name, threshold), highest in zip(
            thresholds.items(), self.method.score_bounds(), strict=True
        ):
            if problem := calibration.unreachable(threshold, highest, name):
                warnings.warn(problem, calibration.CalibrationWarning, stacklevel=3)
                self.calibration_warnings[name] = problem
        self.thresholds = thresholds

    def threshold_dicts(self) -> dict[str, dict[str, object]]:
        """Each threshold and how it was set, JSON-serialisable, by name ("image", "pixel")."""
        return {name: threshold.to_dict() for name, threshold in self.thresholds.items()}

    def calibrate(self, images: Sequence[ImageInput], labels: Sequence[bool]) -> "Detector":
        """Set the image threshold to the F1-optimal one on labelled images (True = defective)."""
        images, step = _listed(images), CALIBRATION_BATCH
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        batches = (images[start : start + step] for start in range(0, len(images), step))
        scores = []
        for batch in batches:  # an unreadable labelled image is an error: each one counts
            scores += [result.score for result in self.predict(_arrays(batch)[1])]
        self.thresholds["image"] = calibration.best_f1_threshold(np.array(labels), np.array(scores))
        self.calibration_warnings.pop("image", None)
        return self

    def predict(self, images: Sequence[ImageInput], label: bool = True) -> list[Result]:
        """Inspect each image (path or RGB array); results come back in order, each box
        labelled with its registered defect type (see `add_defect_type`) unless `label` is
        False (for a caller that embeds the boxes itself).

        An image that cannot be read or used does not stop the others: its result has the
        `error` (naming it) and the verdict "ERROR".
        """
        self._require_fitted()
        images = _listed(images)
        paths = [str(image) if isinstance(image, str | Path) else None for image in images]
        results: list[Result | None] = [None] * len(images)
        usable: dict[int, np.ndarray] = {}
        for index, image in enumerate(images):
            try:
                usable[index] = as_rgb_array(image, _name(image, index))
            except ImageError as error:
                results[index] = Result.failed(str(error), paths[index])
        arrays = list(usable.values())
        scored = self.method.score(arrays) if arrays else []
        inspected = [
            self._result(scores, paths[index]) for index, scores in zip(usable, scored, strict=True)
        ]
        if label:
            self.defect_types.label(arrays, inspected)
        for index, result in zip(usable, inspected, strict=True):
            results[index] = result
        return results  # type: ignore[return-value]

    def predict_batch(
        self,
        images: Sequence[ImageInput],
        zero_shot: bool = False,
        refit: int = 0,
        progress: bool = False,
    ) -> list[Result]:
        """Inspect a batch of images (paths or RGB arrays); results come back in order.

        Without `zero_shot` this is `predict`. With it, no fit is needed: every image is scored
        against the other images of the batch (`anomalens.batch.zero_shot`, with the features
        of this detector's method) and judged by thresholds set from the batch's own image
        scores and map maxima (`calibration.robust_bound` at `max_false_alarm`), kept in
        `batch_thresholds`. With `refit` K, the K lowest-scoring images judged OK become this
        detector's references (a normal `fit`), and the batch is predicted by that model.
        """
        if not zero_shot:
            if refit:
                raise ConfigError("refit picks references from a zero-shot batch: set zero_shot")
            return self.predict(images)
        from anomalens.batch.zero_shot import zero_shot_scores

        names, arrays = _arrays(images)
        scores = zero_shot_scores(self.method, arrays, progress=progress)
        maps = [self._map(patch_scores) for patch_scores in scores]
        image_scores = np.array([patch_scores.image_score for patch_scores in scores])
        self.batch_thresholds = {
            "image": calibration.robust_bound(image_scores, self.max_false_alarm),
            "pixel": calibration.robust_bound(
                np.array([m.max() for m in maps]), self.max_false_alarm
            ),
        }
        paths = [image if isinstance(image, str | Path) else None for image in images]
        results = [
            self._result(patch_scores, path, self.batch_thresholds, pixel_map)
            for patch_scores, path, pixel_map in zip(scores, paths, maps, strict=True)
        ]
        if refit:
            good = [i for i in np.argsort(image_scores) if not results[i].is_anomalous][:refit]
            if not good:
                raise ConfigError("refit: no image of the batch was judged OK")
            self.fit([arrays[i] for i in good], progress, names=[names[i] for i in good])
            self.batch_thresholds = dict(self.thresholds)
            results = self.predict(arrays)
            for result, path in zip(results, paths, strict=True):
                result.path = None if path is None else str(path)
            return results
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
        images = _listed(images)
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
        crops = [region_crop(a, r) for a, found in zip(arrays, regions, strict=True) for r in found]
        sources = [example for example, found in zip(sources, regions, strict=True) for _ in found]
        self.defect_types.add(name, np.concatenate(embeddings), sources, np.stack(crops))
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
    def load(
        cls, path: str | Path, runtime: str | None = None, device: str | None = None
    ) -> "Detector":
        """Read a detector written by `save` or `anomalens export`, its backbones run in
        `runtime` ("onnxruntime", "openvino" or "torch"; None: the fastest measured at export)
        on `device` ("cpu" or "cuda"; see `anomalens.runtime`)."""
        from anomalens.runtime import load

        return load(Path(path), runtime, device)

    def _fit_with_holdout(self, arrays: list[np.ndarray], progress: bool) -> list[PatchScores]:
        if len(arrays) >= SPLIT_BELOW:
            return self.method.fit_with_holdout(arrays, progress)
        parts = [part for array in arrays for part in quadrants(array)]
        held_out = type(self.method)(**self.method.config()).fit_with_holdout(parts, progress)
        self.method.fit(arrays, progress)
        return held_out

    def _map(self, scores: PatchScores) -> np.ndarray:
        return anomaly_map(scores.grid, scores.extent, scores.image_size, self.smoothing_sigma)

    def _result(
        self,
        scores: PatchScores,
        path: str | Path | None,
        thresholds: dict[str, Threshold] | None = None,
        pixel_map: np.ndarray | None = None,
    ) -> Result:
        thresholds = thresholds or self.thresholds
        pixel_map = self._map(scores) if pixel_map is None else pixel_map
        mask, boxes = extract_regions(
            pixel_map, thresholds["pixel"].value, self.hysteresis, self.min_region_area
        )
        return Result(
            score=scores.image_score,
            anomaly_map=pixel_map,
            mask=mask,
            boxes=boxes,
            is_anomalous=scores.image_score >= thresholds["image"].value,
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


def _without_copies(
    names: list[str], arrays: list[np.ndarray]
) -> tuple[list[str], list[np.ndarray]]:
    """`names` and `arrays` without the arrays equal to an earlier one, each named in a
    warning; a CalibrationError when more than one array was given and all are one photo."""
    first: dict[tuple[tuple[int, ...], bytes], int] = {}
    kept = []
    for index, array in enumerate(arrays):
        key = (array.shape, hashlib.blake2b(array.tobytes(), digest_size=16).digest())
        twin = first.setdefault(key, index)
        if twin == index or not np.array_equal(array, arrays[twin]):
            kept.append(index)
        else:
            warnings.warn(
                f"{names[index]} is a copy of {names[twin]}: it is fitted once", stacklevel=3
            )
    if len(kept) == 1 < len(arrays):
        raise calibration.CalibrationError(
            f"the references have no spread: all {len(arrays)} are copies of one photo, so "
            "every new image would be NG; fit on varied photos of good parts"
        )
    return [names[i] for i in kept], [arrays[i] for i in kept]


def _listed(images: Any) -> list[ImageInput]:
    """`images` as a list: any iterable of images (a generator, a batch array) is accepted;
    a single path, image or anything else is refused with a TypeError saying so."""
    if isinstance(images, str | Path) or (isinstance(images, np.ndarray) and images.ndim < 4):
        raise TypeError("images must be a list of images (paths or arrays), not a single one")
    try:
        return list(images)
    except TypeError:
        raise TypeError(f"images must be a list of paths or arrays, got {images!r}") from None


def _name(image: ImageInput, index: int) -> str:
    return str(image) if isinstance(image, str | Path) else f"<array {index}>"
