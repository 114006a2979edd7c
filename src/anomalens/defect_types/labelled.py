"""Embed the defect region of every defective image of a labelled dataset, once."""

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from anomalens.data import Dataset, Sample
from anomalens.defect_types.examples import mask_region, strongest_region
from anomalens.errors import ConfigError, ImageError
from anomalens.io.images import load_image
from anomalens.results import Result

if TYPE_CHECKING:
    from anomalens.detector import Detector

REGION_SOURCES = ("masks", "detector")
"""Where a region comes from: the ground-truth mask, or the detector's strongest region."""


@dataclass
class LabelledRegions:
    """One embedded defect region per usable image.

    Attributes:
        embeddings: (n, C) unit-length region embeddings.
        labels: each region's defect type (its test folder's name).
        skipped: "path: problem" for each image left out (unreadable, no mask, no region).
    """

    embeddings: np.ndarray
    labels: list[str]
    skipped: list[str]

    def with_more_than(self, count: int) -> "LabelledRegions":
        """The regions of the types that have more than `count`; the others are skipped."""
        small = sorted({label for label in self.labels if self.labels.count(label) <= count})
        kept = [i for i, label in enumerate(self.labels) if label not in small]
        return LabelledRegions(
            self.embeddings[kept],
            [self.labels[i] for i in kept],
            self.skipped
            + [f"type {name}: only {self.labels.count(name)} regions" for name in small],
        )


def embed_defects(
    dataset: Dataset,
    detector: "Detector",
    regions: str = "masks",
    batch_size: int = 8,
    progress: bool = True,
) -> LabelledRegions:
    """Region embeddings of `dataset`'s defective test images with `detector`'s embedder,
    weighted by its anomaly maps.

    Args:
        dataset: a labelled dataset; its defect types are the test folders' names.
        detector: a fitted detector.
        regions: "masks" (ground truth) or "detector" (the strongest detected region).
        batch_size: images loaded and inspected at a time.
        progress: show a progress bar.
    """
    if regions not in REGION_SOURCES:
        raise ConfigError(f"regions must be one of {REGION_SOURCES}, got {regions!r}")
    samples = [sample for sample in dataset.test if sample.label == 1]
    rows, labels, skipped = [], [], []
    starts = range(0, len(samples), batch_size)
    for start in tqdm(starts, desc="embedding defects", disable=not progress):
        loaded = []
        for sample in samples[start : start + batch_size]:
            try:
                loaded.append((sample, load_image(sample.path)))
            except ImageError as error:
                skipped.append(str(error))
        results = detector.predict([image for _, image in loaded])
        usable = []
        for (sample, image), result in zip(loaded, results, strict=True):
            try:
                usable.append((sample, image, result, _region(sample, result, regions)))
            except ImageError as error:
                skipped.append(str(error))
        vectors = detector.defect_types.embedder.embed(
            [image for _, image, _, _ in usable],
            [result.anomaly_map for _, _, result, _ in usable],
            [[region] for _, _, _, region in usable],
        )
        rows += [vector[0] for vector in vectors]
        labels += [sample.defect_type for sample, *_ in usable]
    embeddings = np.stack(rows) if rows else np.empty((0, 0), np.float32)
    return LabelledRegions(embeddings, labels, skipped)


def _region(sample: Sample, result: Result, source: str) -> np.ndarray:
    """The ground-truth or detected defect region of `sample`; ImageError when it has none."""
    if source == "detector":
        return strongest_region(result, str(sample.path))
    if sample.mask_path is None:
        raise ImageError(sample.path, "no ground-truth mask")
    return mask_region(sample.mask_path, result.anomaly_map.shape, str(sample.path))
