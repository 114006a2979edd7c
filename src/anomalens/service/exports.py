"""Logged inspections as downloads: JSON, CSV, COCO detections, or a zip with the pictures."""

import csv
import io
import json
import zipfile
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any

import numpy as np
from PIL import Image

from anomalens.formats.coco import coco_detections
from anomalens.results import Box, Result

FORMATS = {
    "json": ("application/json", "json"),
    "csv": ("text/csv", "csv"),
    "coco": ("application/json", "coco.json"),
    "zip": ("application/zip", "zip"),
}
"""Media type and file-name ending of each download format."""
CSV_COLUMNS = [
    "id", "time", "model", "batch", "filename", "sha256", "width", "height", "score",
    "threshold", "verdict", "boxes", "defect_types",
]  # fmt: skip

Picture = Callable[[int, str], bytes | None]
"""(entry id, "mask" or "overlay") -> its PNG, or None when it is not kept."""


def export(entries: list[dict[str, Any]], format: str, picture: Picture) -> bytes:
    """`entries` (as the log gives them) as a file in `format` (see FORMATS)."""
    if format == "json":
        return as_json(entries)
    if format == "csv":
        return as_csv(entries)
    if format == "coco":
        return as_coco(entries, picture)
    return as_zip(entries, picture)


def as_json(entries: list[dict[str, Any]]) -> bytes:
    """{"inspections": entries}, pictures left out."""
    return json.dumps({"inspections": [_plain(e) for e in entries]}, indent=2).encode()


def as_csv(entries: list[dict[str, Any]]) -> bytes:
    """One row per image; `boxes` counts the boxes, `defect_types` names their types."""
    text = io.StringIO()
    writer = csv.DictWriter(text, CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for entry in entries:
        types = dict.fromkeys(box["defect_type"] for box in entry["boxes"] if box["defect_type"])
        writer.writerow({**entry, "boxes": len(entry["boxes"]), "defect_types": " ".join(types)})
    return text.getvalue().encode()


def as_coco(entries: list[dict[str, Any]], picture: Picture) -> bytes:
    """COCO detections (see `anomalens.formats.coco`), each box outlined by its region of the
    logged mask; entries logged without a mask (by an older server) are left out."""
    kept = [(entry, _mask(picture(entry["id"], "mask"))) for entry in entries]
    kept = [(entry, mask) for entry, mask in kept if mask is not None]
    results = [_result(entry, mask) for entry, mask in kept]
    types = [box.defect_type for result in results for box in result.boxes if box.defect_type]
    document = coco_detections(
        results, [entry["filename"] for entry, _ in kept], list(dict.fromkeys(types))
    )
    return json.dumps(document).encode()


def as_zip(entries: list[dict[str, Any]], picture: Picture) -> bytes:
    """results.json, results.csv and coco.json, with masks/ and overlays/ PNGs named after the
    images (with their folders; the entry id is added where a name repeats)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("results.json", as_json(entries))
        archive.writestr("results.csv", as_csv(entries))
        archive.writestr("coco.json", as_coco(entries, picture))
        for entry, name in zip(entries, _picture_names(entries), strict=True):
            for kind, folder in (("mask", "masks"), ("overlay", "overlays")):
                data = picture(entry["id"], kind)
                if data is not None:
                    archive.writestr(f"{folder}/{name}", data)
    return buffer.getvalue()


def _picture_names(entries: list[dict[str, Any]]) -> list[str]:
    """A PNG name per entry: its file name with .png, unique within the download."""
    paths = [PurePosixPath(entry["filename"]).with_suffix(".png") for entry in entries]
    counts: dict[PurePosixPath, int] = {}
    for path in paths:
        counts[path] = counts.get(path, 0) + 1
    return [
        str(path if counts[path] == 1 else path.with_stem(f"{path.stem}-{entry['id']}"))
        for entry, path in zip(entries, paths, strict=True)
    ]


def _plain(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k not in ("has_overlay", "has_mask")}


def _mask(png: bytes | None) -> np.ndarray | None:
    if png is None:
        return None
    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image.convert("L")) > 0


def _result(entry: dict[str, Any], mask: np.ndarray) -> Result:
    """The logged parts of a result; the log keeps no anomaly map, so it is left empty."""
    return Result(
        score=entry["score"],
        anomaly_map=np.empty((0, 0), np.float32),
        mask=mask,
        boxes=[Box(**box) for box in entry["boxes"]],
        is_anomalous=entry["verdict"] == "NG",
    )
