"""Find, box and name, end to end: the detector's boxes on the test images, named from K
example boxes of each type, scored with DeepPCB's rule (`typed_boxes`).

Per seed the detector is fitted once and every test image is predicted and embedded once: its
ground-truth regions (boxes, or the connected components of its mask) and its predicted boxes'
regions. Episodes are then cheap: each splits the defective images into a query half and an
example pool; for every K the types are registered from K example regions of each type drawn
from the pool (K = "all": every region of the pool), and the predicted boxes of the query half
and of every good test image are named and scored; with a classifier (`defects train`) it is
trained on the examples' crops in every episode and names the boxes.
"""

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy import ndimage
from tqdm import tqdm

from anomalens.data import Dataset, Sample
from anomalens.data.masks import load_mask
from anomalens.defect_types.embedding import RegionEmbedder
from anomalens.defect_types.examples import box_region
from anomalens.defect_types.registry import DefectTypes
from anomalens.defect_types.supervised import CropClassifier, box_crops
from anomalens.detector import Detector
from anomalens.errors import ImageError
from anomalens.evaluation.typed_boxes import TypedBoxCounts, TypedTruth
from anomalens.io.images import load_image
from anomalens.localization.regions import EIGHT_CONNECTED, region_masks
from anomalens.results import Result

ALL = "all"
"""Shots value: every example region of the episode's pool."""
Shots = int | str


@dataclass
class EmbeddedImage:
    """One test image as the episodes need it.

    Attributes:
        sample: the test sample.
        truth: its typed ground-truth boxes; None for a good image.
        truth_embeddings: (len(truth), C) embeddings of the ground-truth regions.
        truth_crops: (len(truth), CROP, CROP, 3) uint8 crops around them (`crop_pixels`).
        boxes: (bounds, detection score) of each predicted box, strongest first.
        box_embeddings: (len(boxes), C) embeddings of the predicted boxes' regions.
        box_crops: (len(boxes), CROP, CROP, 3) uint8 crops around the predicted boxes.
    """

    sample: Sample
    truth: TypedTruth | None
    truth_embeddings: np.ndarray
    truth_crops: np.ndarray
    boxes: list[tuple[tuple[int, int, int, int], float]]
    box_embeddings: np.ndarray
    box_crops: np.ndarray


def truth_regions(sample: Sample, image_size: tuple[int, int]) -> tuple[TypedTruth, list]:
    """A defective sample's typed ground-truth boxes and their (H, W) bool regions: its boxes
    (typed by their own type, else the sample's), else the 8-connected components of its mask
    (typed by the sample's). ImageError when it has neither."""
    if sample.boxes is not None:
        kinds = sample.box_types or (None,) * len(sample.boxes)
        truth = [
            (tuple(bounds), kind or sample.defect_type)
            for bounds, kind in zip(sample.boxes, kinds, strict=True)
        ]
        return truth, [
            box_region(tuple(map(round, b)), image_size, str(sample.path)) for b, _ in truth
        ]
    if sample.mask_path is None:
        raise ImageError(sample.path, "no box or mask ground truth")
    labels, _ = ndimage.label(load_mask(sample.mask_path, image_size), structure=EIGHT_CONNECTED)
    truth, regions = [], []
    for label, (rows, cols) in enumerate(ndimage.find_objects(labels), start=1):
        truth.append(((cols.start, rows.start, cols.stop, rows.stop), sample.defect_type))
        regions.append(labels == label)
    return truth, regions


def embed_test_set(
    detector: Detector, samples: list[Sample], skipped: list[str], progress: bool = True
) -> list[EmbeddedImage]:
    """Predict and embed every readable sample once; problems are appended to `skipped`."""
    embedded = []
    for sample in tqdm(samples, desc="predicting and embedding", disable=not progress):
        try:
            image = load_image(sample.path)
        except ImageError as error:
            skipped.append(f"{error}; left out")
            continue
        found = embed_image(
            detector.defect_types.embedder, sample, image, detector.predict([image])[0], skipped
        )
        embedded += [found] if found else []
    return embedded


def embed_image(
    embedder: RegionEmbedder, sample: Sample, image: np.ndarray, result: Result, skipped: list[str]
) -> EmbeddedImage | None:
    """One sample's ground-truth and predicted regions embedded; None (noted in `skipped`) when
    a defective sample's ground truth is unusable."""
    try:
        truth, regions = (None, []) if sample.label == 0 else truth_regions(sample, image.shape[:2])
    except ImageError as error:
        skipped.append(f"{error}; left out")
        return None
    predicted = list(region_masks(result.mask, result.boxes))
    [rows] = embedder.embed([image], [result.anomaly_map], [regions + predicted])
    boxes = [((b.x0, b.y0, b.x1, b.y1), b.score) for b in result.boxes]
    truth_crops = box_crops(image, [bounds for bounds, _ in truth or []])
    predicted_crops = box_crops(image, [bounds for bounds, _ in boxes])
    return EmbeddedImage(
        sample,
        truth,
        rows[: len(regions)],
        truth_crops,
        boxes,
        rows[len(regions) :],
        predicted_crops,
    )


def draw_examples(
    pool: list[EmbeddedImage], shots: Shots, rng: np.random.Generator
) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """Example (embedding, crop) pairs per type from the pool's ground-truth regions, images in
    random order: the first `shots` of each type (fewer where the pool has fewer), or all for
    ALL."""
    wanted = None if shots == ALL else int(shots)
    examples: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for index in rng.permutation(len(pool)):
        image = pool[index]
        for (_, kind), row, crop in zip(
            image.truth, image.truth_embeddings, image.truth_crops, strict=True
        ):
            taken = examples.setdefault(kind, [])
            if wanted is None or len(taken) < wanted:
                taken.append((row, crop))
    return examples


def score_episode(
    queries: list[EmbeddedImage],
    examples: dict[str, list[tuple[np.ndarray, np.ndarray]]],
    classifier: CropClassifier | None = None,
) -> TypedBoxCounts:
    """Register the examples with the default rule and calibrated unknown threshold (and train
    a copy of `classifier` on them, when given), name the queries' predicted boxes and count
    them."""
    types = DefectTypes()
    for kind, pairs in sorted(examples.items()):
        rows, crops = zip(*pairs, strict=True)
        types.add(kind, np.stack(rows), [""] * len(rows), np.stack(crops))
    if classifier is not None:
        types.train(replace(classifier))
    counts = TypedBoxCounts()
    for image in queries:
        names = types.match(image.box_embeddings, image.box_crops) if image.boxes else []
        predicted = [
            (bounds, name, score)
            for (bounds, score), (name, _) in zip(image.boxes, names, strict=True)
        ]
        counts.update(image.truth, predicted)
    return counts


def run_episodes(
    images: list[EmbeddedImage],
    shots: list[Shots],
    episodes: int,
    seed: int,
    classifier: CropClassifier | None = None,
) -> dict[str, list[TypedBoxCounts]]:
    """The counts of every episode for each shots value (keyed by its text); with
    `classifier`, a copy trained per episode names the boxes (`score_episode`)."""
    defective = [image for image in images if image.truth is not None]
    good = [image for image in images if image.truth is None]
    rng = np.random.default_rng(seed)
    outcome: dict[str, list[TypedBoxCounts]] = {str(value): [] for value in shots}
    for _ in range(episodes):
        order = rng.permutation(len(defective))
        half = len(defective) // 2
        queries = [defective[i] for i in order[:half]] + good
        pool = [defective[i] for i in order[half:]]
        for value in shots:
            examples = draw_examples(pool, value, rng)
            outcome[str(value)].append(score_episode(queries, examples, classifier))
    return outcome


def test_samples_of(dataset: Dataset, references: list[Path]) -> list[Sample]:
    """Test samples that are not references, good ones and defective ones with ground truth."""
    used = {path.resolve() for path in references}
    return [
        sample
        for sample in dataset.test
        if sample.path.resolve() not in used
        and (sample.label == 0 or sample.boxes is not None or sample.mask_path is not None)
    ]
