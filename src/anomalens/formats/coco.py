"""Export results as COCO detections: one annotation per box, outlined by its mask region."""

from collections.abc import Iterable, Sequence
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
    images = [
        coco_image(result, path, defect_types)
        for result, path in zip(results, image_paths, strict=True)
    ]
    return coco_document(images, defect_types)


def coco_image(result: Result, path: str | Path, defect_types: Sequence[str]) -> dict[str, Any]:
    """One image's part of a COCO document, without ids: `file_name`, size, `score`, `verdict`
    and its `annotations`, each naming its `category` (a registered type or "anomaly"); what
    `coco_document` numbers and assembles, so that each image can be encoded on its own."""
    height, width = result.mask.shape
    annotations = []
    for box, region in zip(result.boxes, region_masks(result.mask, result.boxes), strict=True):
        annotations.append(
            {
                "category": box.defect_type
                if box.defect_type in defect_types
                else UNTYPED_CATEGORY,
                "bbox": [box.x0, box.y0, box.x1 - box.x0, box.y1 - box.y0],
                "area": box.area,
                "score": float(box.score),
                "iscrowd": 0,
                "segmentation": rle_encode(region),
            }
        )
    return {
        "file_name": str(path),
        "width": width,
        "height": height,
        "score": float(result.score),
        "verdict": result.verdict,
        "annotations": annotations,
    }


def coco_document(images: Iterable[dict[str, Any]], defect_types: Sequence[str]) -> dict[str, Any]:
    """The COCO dict of images as `coco_image` returns them: images and annotations numbered
    from 1, each annotation's category given by its id."""
    names = list(dict.fromkeys([*defect_types, UNTYPED_CATEGORY]))
    category_ids = {name: number for number, name in enumerate(names, start=1)}
    document_images, annotations = [], []
    for image_id, image in enumerate(images, start=1):
        fields = {key: value for key, value in image.items() if key != "annotations"}
        document_images.append({"id": image_id, **fields})
        for annotation in image["annotations"]:
            fields = {key: value for key, value in annotation.items() if key != "category"}
            category_id = category_ids[annotation["category"]]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category_id,
                    **fields,
                }
            )
    categories = [
        {"id": number, "name": name, "supercategory": "defect"}
        for name, number in category_ids.items()
    ]
    return {"images": document_images, "categories": categories, "annotations": annotations}


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
