"""Defect-type labels the server can redo: each box's region embedding, kept with the result.

`Detector.predict` labels boxes with the types registered at the time; the server also keeps
every box's embedding, so that results inspected earlier get the types added or removed since
(`relabelled`) without their images.
"""

import numpy as np

from anomalens.defect_types.registry import DefectTypes
from anomalens.localization.regions import region_masks
from anomalens.results import Result


def box_embeddings(
    types: DefectTypes, images: list[np.ndarray], results: list[Result]
) -> list[np.ndarray | None]:
    """Per result, the (boxes, C) float32 region embeddings of its boxes (None without boxes)."""
    boxed = [i for i, result in enumerate(results) if result.boxes]
    embedded = types.embedder.embed(
        [images[i] for i in boxed],
        [results[i].anomaly_map for i in boxed],
        [list(region_masks(results[i].mask, results[i].boxes)) for i in boxed],
    )
    embeddings: list[np.ndarray | None] = [None] * len(results)
    for index, rows in zip(boxed, embedded, strict=True):
        embeddings[index] = np.asarray(rows, dtype=np.float32)
    return embeddings


def relabelled(types: DefectTypes, boxes: list[dict], embeddings: np.ndarray) -> list[dict]:
    """`boxes` (as `Box.to_dict` gives them) with the type and similarity that `types` give
    their `embeddings` now; without registered types, none."""
    if not types.names:
        return [{**box, "defect_type": None, "similarity": None} for box in boxes]
    matches = types.match(embeddings)
    return [
        {**box, "defect_type": name, "similarity": similarity}
        for box, (name, similarity) in zip(boxes, matches, strict=True)
    ]


def to_bytes(embeddings: np.ndarray) -> bytes:
    """Little-endian float32 bytes of (boxes, C) `embeddings`."""
    return np.ascontiguousarray(embeddings, dtype="<f4").tobytes()


def from_bytes(data: bytes, boxes: int) -> np.ndarray:
    """The (boxes, C) embeddings `to_bytes` wrote."""
    return np.frombuffer(data, dtype="<f4").reshape(boxes, -1)
