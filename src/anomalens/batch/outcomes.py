"""One image's inspection as what the results log and the output folder receive: the same for
every engine, computed wherever the model runs."""

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from anomalens.batch.sources import Item, read_image
from anomalens.detector import Detector
from anomalens.errors import AnomalensError
from anomalens.formats.coco import coco_image
from anomalens.results import Result
from anomalens.visualize import mask_image, overlay, png_bytes

MAX_NAME_BYTES = 200
"""Output file names whose stem is longer (in UTF-8 bytes) are shortened to this many bytes
plus a hash of the whole name: file systems allow 255 bytes a name, and the atomic writes' temporary
names add 18 to the file's own."""
HASH_CHARACTERS = 12


@dataclass
class Outcome:
    """One image's results log record and output files.

    Attributes:
        record: "path" (the source), "name", and either the results.json entry's fields with
            "coco" (the image's COCO part) or "error".
        mask: the mask PNG (empty after an error).
        overlay: the overlay PNG (empty after an error).
    """

    record: dict[str, Any]
    mask: bytes = b""
    overlay: bytes = b""

    @property
    def failed(self) -> bool:
        """Whether the image could not be inspected."""
        return "error" in self.record

    def files(self) -> dict[str, bytes]:
        """Relative output path -> content."""
        if self.failed:
            return {}
        return {self.record["mask"]: self.mask, self.record["overlay"]: self.overlay}

    def columns(self) -> dict[str, Any]:
        """The outcome as plain columns (a JSON string and two byte strings), as Ray ships it."""
        return {"record": json.dumps(self.record), "mask": self.mask, "overlay": self.overlay}

    @classmethod
    def from_columns(cls, record: str, mask: bytes, overlay: bytes) -> "Outcome":
        """The outcome `columns` gave."""
        return cls(json.loads(record), bytes(mask), bytes(overlay))


def failure(item: Item, error: Exception) -> Outcome:
    """The outcome of an image that could not be inspected."""
    return Outcome({"path": item.source, "name": item.name, "error": str(error)})


def inspect(detector: Detector, items: Sequence[Item]) -> list[Outcome]:
    """Read and predict `items` in one batch; each unreadable or failing image is an error
    outcome and the others go on (a batch whose prediction fails is predicted image by image)."""
    outcomes, loaded = [], []
    for item in items:
        try:
            loaded.append((item, read_image(item.source)))
        except AnomalensError as error:
            outcomes.append(failure(item, error))
    if not loaded:
        return outcomes
    try:
        results = detector.predict([image for _, image in loaded])
    except Exception:  # find the image at fault: each is predicted alone and reports its own
        return outcomes + [outcome for pair in loaded for outcome in inspect_one(detector, *pair)]
    names = detector.defect_types.names
    threshold = detector.thresholds["pixel"].value
    for (item, image), result in zip(loaded, results, strict=True):
        outcomes.append(render(item, image, result, threshold, names))
    return outcomes


def inspect_one(detector: Detector, item: Item, image: np.ndarray) -> list[Outcome]:
    """One image predicted alone; whatever it raises is its own error outcome."""
    try:
        (result,) = detector.predict([image])
    except Exception as error:  # one image must not stop the batch, whatever it triggers
        message = str(error) if isinstance(error, AnomalensError) else repr(error)
        return [failure(item, AnomalensError(f"{item.source}: {message}"))]
    threshold = detector.thresholds["pixel"].value
    return [render(item, image, result, threshold, detector.defect_types.names)]


def render(
    item: Item,
    image: np.ndarray,
    result: Result,
    pixel_threshold: float,
    defect_types: Sequence[str],
) -> Outcome:
    """The outcome of an inspected image: its entry, COCO part, mask and overlay PNGs."""
    result.path = item.source
    stem = output_stem(item.name)
    coco = coco_image(result, item.source, defect_types)
    record = {
        **result.to_dict(),
        "mask": f"masks/{stem}.png",
        "overlay": f"overlays/{stem}.png",
        "name": item.name,
        "coco": {key: coco[key] for key in ("width", "height", "annotations")},
    }
    picture = overlay(image, result, pixel_threshold)
    return Outcome(record, png_bytes(mask_image(result)), png_bytes(picture))


def output_stem(name: str) -> str:
    """`name` with its last part shortened to MAX_NAME_BYTES plus a hash of the whole name
    when it is longer, so that its outputs can be written."""
    path = PurePosixPath(name)
    encoded = os.fsencode(path.name)  # the bytes the file system gets
    if len(encoded) <= MAX_NAME_BYTES:
        return name
    digest = hashlib.blake2b(os.fsencode(name)).hexdigest()[:HASH_CHARACTERS]
    keep = MAX_NAME_BYTES - HASH_CHARACTERS - 1
    short = encoded[:keep].decode("utf-8", errors="ignore")
    return (path.parent / f"{short}-{digest}").as_posix()
