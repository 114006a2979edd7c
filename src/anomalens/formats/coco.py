"""Export results as COCO detections: one annotation per box, outlined by its mask region."""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from anomalens.io.atomic import write_json
from anomalens.localization.regions import region_masks
from anomalens.results import Result

UNTYPED_CATEGORY = "anomaly"
"""Category of boxes without a registered defect type (none registered, or "unknown")."""


def coco_detections(
    results: Sequence[Result], image_paths: Sequence[str | Path], defect_types: Sequence[str]
) -> dict[str, Any]:
    """A COCO dict with `images`, `categories` and `annotations` for `results`.

    Args:
        results: one result per image.
        image_paths: the image each result belongs to, in the same order; written as `file_name`.
        defect_types: the detector's registered defect types; each becomes a category, followed
            by "anomaly" for boxes of no registered type.

    Each annotation carries the box as `bbox` [x, y, width, height], its score, and the box's
    8-connected region of the result mask as compressed RLE `segmentation` with its pixel `area`.
    Images also carry their anomaly `score` and `verdict`.
    """
    names = list(dict.fromkeys([*defect_types, UNTYPED_CATEGORY]))
    category_ids = {name: number for number, name in enumerate(names, start=1)}
    images, annotations = [], []
    for image_id, (result, path) in enumerate(zip(results, image_paths, strict=True), start=1):
        height, width = result.mask.shape
        images.append(
            {
                "id": image_id,
                "file_name": str(path),
                "width": width,
                "height": height,
                "score": float(result.score),
                "verdict": result.verdict,
            }
        )
        regions = region_masks(result.mask, result.boxes)
        for box, region in zip(result.boxes, regions, strict=True):
            category = box.defect_type if box.defect_type in category_ids else UNTYPED_CATEGORY
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category_ids[category],
                    "bbox": [box.x0, box.y0, box.x1 - box.x0, box.y1 - box.y0],
                    "area": box.area,
                    "score": float(box.score),
                    "iscrowd": 0,
                    "segmentation": rle_encode(region),
                }
            )
    categories = [
        {"id": number, "name": name, "supercategory": "defect"}
        for name, number in category_ids.items()
    ]
    return {"images": images, "categories": categories, "annotations": annotations}


def write_coco(
    path: str | Path,
    results: Sequence[Result],
    image_paths: Sequence[str | Path],
    defect_types: Sequence[str],
) -> Path:
    """Atomically write `coco_detections(results, image_paths, defect_types)` to `path`."""
    return write_json(path, coco_detections(results, image_paths, defect_types))


def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """COCO compressed run-length encoding of a (H, W) boolean mask, as pycocotools writes it.

    Runs alternate background and foreground in column-major order, starting with background.
    """
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    starts = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    counts = np.diff(np.concatenate(([0], starts, [flat.size]))).tolist()
    if flat[0]:
        counts.insert(0, 0)
    return {"size": list(mask.shape), "counts": _compress_counts(counts)}


def _compress_counts(counts: list[int]) -> str:
    """pycocotools' text form of run lengths: each run after the third as the difference to the
    run two before, written 5 bits per character with a continuation bit, offset by 48."""
    characters = []
    for index, count in enumerate(counts):
        value = count - counts[index - 2] if index > 2 else count
        more = True
        while more:
            chunk = value & 0x1F
            value >>= 5
            more = value != -1 if chunk & 0x10 else value != 0
            characters.append(chr(chunk + 48 + (0x20 if more else 0)))
    return "".join(characters)
