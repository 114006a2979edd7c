"""Embed the defect region of every defective image of a labelled dataset, once."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from anomalens.data import Dataset, Sample
from anomalens.defect_types.examples import mask_region, strongest_region
from anomalens.errors import ImageError
from anomalens.io.images import load_image

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
        paths: each region's image.
        skipped: "path: problem" for each image left out (unreadable, no mask, no region).
    """

    embeddings: np.ndarray
    labels: list[str]
    paths: list[Path]
    skipped: list[str] = field(default_factory=list)


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
        raise ValueError(f"regions must be one of {REGION_SOURCES}, got {regions!r}")
    samples = [sample for sample in dataset.test if sample.label == 1]
    embedded = LabelledRegions(np.empty((0, 0), np.float32), [], [])
    rows = []
    for start in tqdm(
        range(0, len(samples), batch_size), desc="embedding defects", disable=not progress
    ):
        images, kept = [], []
        for sample in samples[start : start + batch_size]:
            try:
                images.append(load_image(sample.path))
                kept.append(sample)
            except ImageError as error:
                embedded.skipped.append(str(error))
        results = detector.predict(images)
        usable = []
        for index, (sample, result) in enumerate(zip(kept, results, strict=True)):
            try:
                usable.append((index, _region(sample, result, regions)))
            except ImageError as error:
                embedded.skipped.append(str(error))
        vectors = detector.defect_types.embedder.embed(
            [images[index] for index, _ in usable],
            [results[index].anomaly_map for index, _ in usable],
            [[region] for _, region in usable],
        )
        rows.extend(vectors)
        embedded.labels.extend(kept[index].defect_type for index, _ in usable)
        embedded.paths.extend(kept[index].path for index, _ in usable)
    embedded.embeddings = np.concatenate(rows) if rows else embedded.embeddings
    return embedded


def _region(sample: Sample, result, source: str) -> np.ndarray:
    if source == "detector":
        return strongest_region(result, str(sample.path))
    if sample.mask_path is None:
        raise ImageError(sample.path, "no ground-truth mask")
    return mask_region(sample.mask_path, result.anomaly_map.shape, str(sample.path))
