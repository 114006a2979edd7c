"""The few-shot protocol: for each category, shot count and seed, fit on k good references and
score the test set, streaming the metrics so that no run holds every anomaly map at once."""

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from tqdm import tqdm

from anomalens.data import Dataset, DatasetError, Sample
from anomalens.data.dataset import relative_name
from anomalens.data.masks import load_mask
from anomalens.data.shots import LISTED, Shots, seeded_order, shot_count
from anomalens.detector import Detector
from anomalens.errors import ImageError
from anomalens.evaluation.operating_point import OperatingPoint
from anomalens.features import FeatureCache, shared_feature_cache
from anomalens.io.images import load_image
from anomalens.metrics import PixelMetrics, f1_max, image_ap, image_auroc
from anomalens.progress import spinner
from anomalens.results import Result

T = TypeVar("T")

IMAGE_METRICS = ["image_auroc", "image_ap", "image_f1_max"]
PIXEL_METRICS = ["pixel_auroc", "pixel_ap", "pixel_f1_max", "aupro"]
"""Threshold-free metric names of every run; pixel metrics are None for datasets without masks.
Runs also report `operating_point.OPERATING_METRICS`, at the detector's own thresholds."""

EXAMPLES_PER_ROW = 4
"""Images per row of the overlay grid (best detections, weakest detections, false alarms)."""


@dataclass
class EvaluationSettings:
    """What to evaluate.

    Attributes:
        method: registered method name; None for the Detector's default (as are the next two).
        backbone: registered backbone name.
        resolution: image resolution the detector works at.
        shots: reference counts per run (positive ints or "full"); ignored with a reference list.
        seeds: seeds; each picks the references and seeds the detector.
        method_params: extra keyword arguments for the Detector.
        batch_size: test images loaded and predicted at a time.
        save_maps: keep every test image's anomaly map (float16) for maps.npz.
        overlay_examples: re-predict the images of the overlay grid (overlays.png); benchmarks
            that write no report switch it off.
        model: a saved or exported model folder evaluated as it is instead of fitting one: its
            own references are left out of the test set, and shots, seeds and the detector's
            settings do not apply (one run, "list" references).
        runtime: the runtime the model's backbones run in, and device the device (see
            `Detector.load`).
    """

    method: str | None = None
    backbone: str | None = None
    resolution: int | None = None
    shots: list[Shots] = field(default_factory=lambda: [1, 2, 4, 8, 16, "full"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    method_params: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 8
    save_maps: bool = False
    overlay_examples: bool = True
    model: str | None = None
    runtime: str | None = None
    device: str | None = None

    def build_detector(self, seed: int) -> Detector:
        """An unfitted Detector with these settings and `seed`."""
        chosen = {"method": self.method, "backbone": self.backbone, "resolution": self.resolution}
        given = {name: value for name, value in chosen.items() if value is not None}
        return Detector(seed=seed, **given, **self.method_params)


@dataclass
class Example:
    """One test image shown in the overlay grid.

    Attributes:
        sample: the test sample.
        image: its RGB pixels.
        result: the detector's prediction.
        truth: its ground-truth mask, None when unknown.
        pixel_threshold: the detector's pixel threshold, which sets the heat map's colour scale.
        role: "highest-scored defective" (best), "lowest-scored defective" or "highest-scored
            good" (worst).
    """

    sample: Sample
    image: np.ndarray
    result: Result
    truth: np.ndarray | None
    pixel_threshold: float
    role: str


@dataclass
class Run:
    """The outcome of one category × shots × seed run.

    Attributes:
        category: dataset name.
        shots: the shots setting: a count, "full", or "list" (references from a list file).
        seed: the seed.
        references: the reference images used, in order.
        scores: every scored test sample with its image score.
        metrics: metric name -> value (None when undefined, e.g. pixel metrics without masks):
            the threshold-free metrics and the OPERATING_METRICS.
        fit_seconds: wall time of `Detector.fit`; None for a model evaluated as it is.
        ms_per_image: wall time of `Detector.predict` per test image, in milliseconds.
        skipped: "path: problem" for each unreadable image or mask left out.
        maps: float16 anomaly maps keyed by path relative to the data root (with save_maps).
        detector_config: the fitted detector's `config()`.
        examples: images for the overlay grid.
        operating_point: the counts behind the OPERATING_METRICS.
    """

    category: str
    shots: Shots
    seed: int
    references: list[Path]
    scores: list[tuple[Sample, float]]
    metrics: dict[str, float | None]
    fit_seconds: float | None
    ms_per_image: float
    skipped: list[str]
    detector_config: dict[str, Any]
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    examples: list[Example] = field(default_factory=list)
    operating_point: OperatingPoint = field(default_factory=OperatingPoint)

    @property
    def name(self) -> str:
        """Folder-safe run name, e.g. "4-shot-seed0"."""
        return f"{self.shots}-shot-seed{self.seed}"


def iter_runs(
    root: Path,
    datasets: list[Dataset],
    settings: EvaluationSettings,
    fixed_references: list[Path] | None = None,
    progress: bool = True,
) -> Iterator[Run]:
    """Yield each run of the protocol as it finishes.

    Args:
        root: the data root; paths in maps are relative to it.
        datasets: the categories, from `anomalens.data.discover(root)`.
        settings: what to evaluate.
        fixed_references: references from a list file (all categories); replaces the shots.
        progress: show tqdm progress bars.
    """
    shots_settings: list[Shots] = [LISTED] if fixed_references else list(settings.shots)
    plan = list(itertools.product(shots_settings, settings.seeds))
    if settings.model:
        if len(datasets) != 1:
            raise DatasetError(
                f"{root}: a model is evaluated on one category, found {len(datasets)}"
            )
        plan = [(LISTED, 0)]
    check_plan(datasets, plan)
    bar = tqdm(total=len(datasets) * len(plan), desc="runs", unit="run", disable=not progress)
    for dataset in datasets:
        with shared_feature_cache() as cache:
            for shots, seed in plan:
                yield run_once(
                    root, dataset, settings, shots, seed, fixed_references, progress, cache
                )
                bar.update()
    bar.close()


def check_plan(datasets: list[Dataset], plan: list[tuple[Shots, int]]) -> None:
    """Raise DatasetError before the first run if a run of `plan` would ask for more references
    than a pool holds or leave no good or defective test image (the folder layout tests on its
    good pool, so "full" leaves none), rather than after the runs before it."""
    for dataset in datasets:
        for shots, seed in plan:
            if shots != LISTED:
                wanted = shot_count(shots, dataset.pool)
                test_samples(dataset, seeded_order(dataset.pool, seed)[:wanted])


def listed_references(dataset: Dataset, listed: list[Path]) -> tuple[list[Path], list[np.ndarray]]:
    """The listed references inside `dataset`'s folder and their pixels."""
    category_root = dataset.root.resolve()
    references = [path for path in listed if path.resolve().is_relative_to(category_root)]
    if not references:
        raise DatasetError(f"{dataset.root}: the reference list names no image in this folder")
    return references, [load_image(path) for path in references]


def model_references(dataset: Dataset, detector: Detector) -> list[Path]:
    """The fitted `detector`'s references, which must lie in `dataset`'s folder (so that they
    are left out of its test set)."""
    category_root = dataset.root.resolve()
    references = [Path(name) for name in detector.references]
    outside = [path for path in references if not path.resolve().is_relative_to(category_root)]
    if outside:
        raise DatasetError(
            f"{dataset.root}: the model's reference {outside[0]} is not in this folder, so the "
            "test set cannot leave its references out"
        )
    return references


def seeded_references(
    dataset: Dataset, shots: Shots, seed: int, skipped: list[str]
) -> tuple[list[Path], list[np.ndarray]]:
    """The first readable `shots` images of the pool in seeded order; unreadable ones are
    appended to `skipped` and replaced by the next in order."""
    wanted = shot_count(shots, dataset.pool)
    references, images = [], []
    for path in seeded_order(dataset.pool, seed):
        if len(references) == wanted:
            break
        try:
            images.append(load_image(path))
        except ImageError as error:
            skipped.append(f"{error}; replaced by the next reference in seeded order")
            continue
        references.append(path)
    if len(references) < wanted:
        raise DatasetError(
            f"{dataset.root}: only {len(references)} readable reference images, {wanted} needed"
        )
    return references, images


def run_once(
    root: Path,
    dataset: Dataset,
    settings: EvaluationSettings,
    shots: Shots,
    seed: int,
    fixed_references: list[Path] | None,
    progress: bool,
    cache: FeatureCache,
) -> Run:
    """Choose the references, fit on them, then score every test sample that is not one.

    Arguments as in `iter_runs`, for one `dataset`, `shots` setting and `seed`; `cache` holds the
    category's feature maps shared between runs, whose backbone time is counted back into the
    run's timings so that they stand for a run on its own.
    """
    skipped: list[str] = []
    label = f"{dataset.name} {shots}-shot seed {seed}"
    fit_seconds: float | None = None
    if settings.model:
        detector = Detector.load(settings.model, settings.runtime, settings.device)
        references = model_references(dataset, detector)
    else:
        with spinner(f"{label}: loading references", progress):
            if fixed_references:
                references, images = listed_references(dataset, fixed_references)
            else:
                references, images = seeded_references(dataset, shots, seed, skipped)
        detector = settings.build_detector(seed)
        _, fit_seconds = standalone_seconds(cache, partial(detector.fit, images, progress))
    test = test_samples(dataset, references)
    pixels = PixelMetrics() if dataset.has_masks else None
    operating = OperatingPoint()
    scores, maps, seconds = score_test_set(
        detector, test, root, settings, pixels, operating, skipped, label, progress, cache
    )
    if pixels is not None and not pixels.regions:
        skipped.append(f"{dataset.root}: no usable defect mask; pixel metrics are not computed")
        pixels = None
    if dataset.boxes_source is not None and not operating.box_images:
        skipped.append(f"{dataset.boxes_source}: no usable box ground truth; no box figures")
    metrics = image_metrics(scores) | (pixels.compute() if pixels else dict.fromkeys(PIXEL_METRICS))
    metrics |= operating.figures()
    return Run(
        category=dataset.name,
        shots=shots,
        seed=seed,
        references=references,
        scores=scores,
        metrics=metrics,
        fit_seconds=fit_seconds,
        ms_per_image=1000.0 * seconds / max(len(scores), 1),
        skipped=skipped,
        detector_config=detector.config(),
        maps=maps,
        examples=examples(detector, scores, progress) if settings.overlay_examples else [],
        operating_point=operating,
    )


def standalone_seconds(cache: FeatureCache, action: Callable[[], T]) -> tuple[T, float]:
    """`action()` and its wall time plus the backbone time that cache hits saved during it."""
    saved = cache.saved_seconds
    started = time.perf_counter()
    result = action()
    return result, time.perf_counter() - started + cache.saved_seconds - saved


def score_test_set(
    detector: Detector,
    test: list[Sample],
    root: Path,
    settings: EvaluationSettings,
    pixels: PixelMetrics | None,
    operating: OperatingPoint,
    skipped: list[str],
    label: str,
    progress: bool,
    cache: FeatureCache,
) -> tuple[list[tuple[Sample, float]], dict[str, np.ndarray], float]:
    """Predict `test` in batches; return (sample, image score) pairs, the kept maps and the
    seconds spent in `predict`.

    Args:
        detector: the fitted detector.
        test: samples to score.
        root: the data root that map keys are relative to.
        settings: batch size and whether to keep maps.
        pixels: accumulator fed each map with its mask (None: no pixel ground truth).
        operating: accumulator fed each prediction (verdicts and boxes).
        skipped: unreadable images and masks are appended here.
        label: progress bar text.
        progress: show a progress bar.
        cache: the shared feature cache (see `standalone_seconds`).
    """
    scores: list[tuple[Sample, float]] = []
    maps: dict[str, np.ndarray] = {}
    seconds = 0.0
    batches = range(0, len(test), settings.batch_size)
    for start in tqdm(batches, desc=label, unit="batch", leave=False, disable=not progress):
        loaded = load_batch(test[start : start + settings.batch_size], skipped)
        if not loaded:
            continue
        results, batch_seconds = standalone_seconds(
            cache, partial(detector.predict, [image for _, image, _ in loaded])
        )
        seconds += batch_seconds
        for (sample, _, truth), result in zip(loaded, results, strict=True):
            scores.append((sample, float(result.score)))
            operating.update(sample, result)
            if pixels is not None and (truth is not None or sample.label == 0):
                pixels.update(result.anomaly_map, truth)
            if settings.save_maps:
                maps[relative_name(sample.path, root)] = result.anomaly_map.astype(np.float16)
    return scores, maps, seconds


def image_metrics(scores: list[tuple[Sample, float]]) -> dict[str, float | None]:
    """Image AUROC, AP and F1-max of scored samples."""
    labels = [sample.label for sample, _ in scores]
    values = [score for _, score in scores]
    return {
        "image_auroc": image_auroc(labels, values),
        "image_ap": image_ap(labels, values),
        "image_f1_max": f1_max(labels, values)[0],
    }


def test_samples(dataset: Dataset, references: list[Path]) -> list[Sample]:
    """The test samples that are not references; DatasetError if a label class is left empty."""
    used = {path.resolve() for path in references}
    test = [sample for sample in dataset.test if sample.path.resolve() not in used]
    for label, kind in ((0, "good"), (1, "defective")):
        if not any(sample.label == label for sample in test):
            raise DatasetError(
                f"{dataset.root}: no {kind} test images left once the {len(references)} "
                "references are set aside; use fewer shots"
            )
    return test


def load_batch(
    samples: list[Sample], skipped: list[str]
) -> list[tuple[Sample, np.ndarray, np.ndarray | None]]:
    """(sample, pixels, mask) for each readable sample; problems are appended to `skipped`.

    Good images get no mask (all pixels normal). A defective image whose mask is missing,
    unreadable or of another size keeps its image score but gets None and no pixel metrics.
    """
    loaded = []
    for sample in samples:
        try:
            image = load_image(sample.path)
        except ImageError as error:
            skipped.append(f"{error}; left out")
            continue
        loaded.append((sample, image, read_truth(sample, image.shape[:2], skipped)))
    return loaded


def read_truth(
    sample: Sample, image_size: tuple[int, int], skipped: list[str]
) -> np.ndarray | None:
    """The sample's mask, or None if it has none or it is unusable (appended to `skipped`)."""
    if sample.mask_path is None:
        return None
    try:
        mask = load_mask(sample.mask_path, image_size)
    except ImageError as error:
        skipped.append(f"{error}; {sample.path.name} left out of the pixel metrics")
        return None
    if not mask.any():
        skipped.append(f"{sample.mask_path}: mask marks no defect pixel; all count as normal")
    return mask


def examples(
    detector: Detector, scores: list[tuple[Sample, float]], progress: bool = False
) -> list[Example]:
    """Re-predict the highest- and lowest-scored defective images and the highest-scored good
    ones, for the overlay grid (with a spinner when `progress`)."""
    defective = sorted((s for s in scores if s[0].label == 1), key=lambda s: -s[1])
    good = sorted((s for s in scores if s[0].label == 0), key=lambda s: -s[1])
    rows = {
        "highest-scored defective": defective[:EXAMPLES_PER_ROW],
        "lowest-scored defective": defective[::-1][:EXAMPLES_PER_ROW],
        "highest-scored good": good[:EXAMPLES_PER_ROW],
    }
    chosen = [(role, sample) for role, row in rows.items() for sample, _ in row]
    unique = list(dict.fromkeys(sample for _, sample in chosen))
    with spinner(f"re-predicting {len(unique)} images for the overlay grid", progress):
        images = {sample: load_image(sample.path) for sample in unique}
        results = dict(zip(unique, detector.predict(list(images.values())), strict=True))
    threshold = detector.thresholds["pixel"].value
    return [
        Example(
            sample,
            images[sample],
            results[sample],
            read_truth(sample, images[sample].shape[:2], []),
            threshold,
            role,
        )
        for role, sample in chosen
    ]
