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


def label(types: DefectTypes, results: list[Result], embeddings: list[np.ndarray | None]) -> None:
    """Set each box's defect type and similarity from its embedding (what `Detector.predict`
    does, for results predicted with `label=False`)."""
    for result, rows in zip(results, embeddings, strict=True):
        if rows is not None:
            for box, (name, similarity) in zip(result.boxes, matches(types, rows), strict=True):
                box.defect_type, box.similarity = name, similarity


def relabelled(types: DefectTypes, boxes: list[dict], embeddings: np.ndarray) -> list[dict]:
    """`boxes` (as `Box.to_dict` gives them) with the type and similarity that `types` give
    their `embeddings` now."""
    return [
        {**box, "defect_type": name, "similarity": similarity}
        for box, (name, similarity) in zip(boxes, matches(types, embeddings), strict=True)
    ]


def matches(types: DefectTypes, embeddings: np.ndarray) -> list[tuple[str | None, float | None]]:
    """(type name or "unknown", similarity) per embedding; (None, None) without types."""
    if not types.names:
        return [(None, None)] * len(embeddings)
    return types.match(embeddings)


def to_bytes(embeddings: np.ndarray) -> bytes:
    """Little-endian float32 bytes of (boxes, C) `embeddings`."""
    return np.ascontiguousarray(embeddings, dtype="<f4").tobytes()


def from_bytes(data: bytes, boxes: int) -> np.ndarray:
    """The (boxes, C) embeddings `to_bytes` wrote."""
    return np.frombuffer(data, dtype="<f4").reshape(boxes, -1)
