"""What a prediction returns: an image score, a map, a mask, boxes and a verdict."""

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass
class Box:
    """One connected anomalous region.

    Attributes:
        x0, y0, x1, y1: pixel bounds in the original image; x1 and y1 are exclusive.
        score: peak anomaly score inside the region.
        area: number of mask pixels in the region.
        defect_type: name of the nearest registered defect type, "unknown", or None when no
            types are registered.
        similarity: cosine similarity to that type (None when no types are registered).
    """

    x0: int
    y0: int
    x1: int
    y1: int
    score: float
    area: int
    defect_type: str | None = None
    similarity: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable fields."""
        return asdict(self)


@dataclass
class Result:
    """The inspection of one image.

    Attributes:
        score: image anomaly score (higher is more anomalous).
        anomaly_map: (H, W) float32 pixel anomaly scores at the original image size.
        mask: (H, W) bool, pixels above the detector's pixel threshold.
        boxes: anomalous regions, strongest first.
        is_anomalous: whether the score is above the detector's image threshold.
        path: the image's file, when it came from one.
        error: why the image could not be inspected (then the score is NaN, the map and mask
            are empty, there are no boxes and the verdict is "ERROR"); None when it was.
    """

    score: float
    anomaly_map: np.ndarray
    mask: np.ndarray
    boxes: list[Box] = field(default_factory=list)
    is_anomalous: bool = False
    path: str | None = None
    error: str | None = None

    @classmethod
    def failed(cls, error: str, path: str | None = None) -> "Result":
        """The result of an image that could not be inspected, saying why."""
        empty = np.zeros((0, 0), dtype=np.float32)
        return cls(float("nan"), empty, empty.astype(bool), path=path, error=error)

    @property
    def verdict(self) -> str:
        """ "NG" for an anomalous image, "OK" otherwise, "ERROR" for one not inspected."""
        if self.error is not None:
            return "ERROR"
        return "NG" if self.is_anomalous else "OK"

    def to_dict(self) -> dict[str, Any]:
        """Path, score, verdict and boxes as JSON-serialisable values (and the error of an
        image not inspected, whose score is None)."""
        if self.error is not None:
            return {
                "path": self.path,
                "score": None,
                "verdict": "ERROR",
                "boxes": [],
                "error": self.error,
            }
        return {
            "path": self.path,
            "score": float(self.score),
            "verdict": self.verdict,
            "boxes": [box.to_dict() for box in self.boxes],
        }
