"""Defect-type labels the server can redo: each box's region embedding, kept with the result.

`Detector.predict` labels boxes with the types registered at the time; the server also keeps
every box's embedding (`DefectTypes.box_embeddings`), so that results inspected earlier get the
types added or removed since (`relabelled`) without their images. Adding or removing a type
drops a trained classifier, so the embeddings alone name those boxes as the model would.
"""

import numpy as np

from anomalens.defect_types.registry import DefectTypes


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
