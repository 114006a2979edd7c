"""Pictures people look at: the anomaly heatmap and boxes drawn over the image."""

import io

import numpy as np
from PIL import Image, ImageDraw

from anomalens.results import Result

BOX_COLOUR = (255, 40, 40)
HEAT_OPACITY = 0.6
"""Opacity of the heatmap where the score reaches the top of the colour scale; lower scores are
more transparent, so a good image stays visible."""
ROWS_PER_STEP = 256
"""Rows blended at a time: an overlay costs its picture and a few bands, not float copies of a
whole large image."""


def _ramp(values: np.ndarray) -> np.ndarray:
    """RGB uint8 colours of values in [0, 1] on a blue-green-yellow-red ramp."""
    stops = np.array([[0, 0, 128], [0, 96, 255], [0, 220, 160], [255, 230, 0], [230, 0, 0]], float)
    position = np.clip(values, 0.0, 1.0) * (len(stops) - 1)
    low = np.floor(position).astype(int).clip(0, len(stops) - 2)
    weight = (position - low)[..., None]
    return ((1 - weight) * stops[low] + weight * stops[low + 1]).astype(np.uint8)


HEAT_LEVELS = _ramp(np.linspace(0.0, 1.0, 256))
"""The ramp at 256 levels: looking colours up is ten times faster than interpolating each pixel,
which took seconds on a 12-megapixel image."""


def heat_colours(values: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] to RGB uint8 with a blue-green-yellow-red ramp (256 levels)."""
    return HEAT_LEVELS[np.rint(np.clip(values, 0.0, 1.0) * 255).astype(np.uint8)]


def overlay(image: np.ndarray, result: Result, pixel_threshold: float | None = None) -> np.ndarray:
    """The image with its anomaly heatmap blended in and each box drawn with its label.

    The colour scale puts `pixel_threshold` (when given) at mid-range, so colours mean the same
    thing on every image; otherwise the map's own maximum sets the top of the scale.
    """
    scale = 2.0 * pixel_threshold if pixel_threshold else float(result.anomaly_map.max()) or 1.0
    picture = Image.fromarray(_blend(image, result.anomaly_map, scale))
    draw = ImageDraw.Draw(picture)
    width = max(1, round(max(image.shape[:2]) / 300))
    for box in result.boxes:
        draw.rectangle([box.x0, box.y0, box.x1 - 1, box.y1 - 1], outline=BOX_COLOUR, width=width)
        label = f"{box.defect_type} " if box.defect_type else ""
        draw.text((box.x0 + 2, max(box.y0 - 12, 0)), f"{label}{box.score:.2f}", fill=BOX_COLOUR)
    return np.asarray(picture)


def _blend(image: np.ndarray, anomaly_map: np.ndarray, scale: float) -> np.ndarray:
    """The heatmap of `anomaly_map / scale` blended into `image`, ROWS_PER_STEP rows at a time
    so that the float copies stay small beside the picture."""
    blended = np.empty_like(image)
    for start in range(0, len(image), ROWS_PER_STEP):
        rows = slice(start, start + ROWS_PER_STEP)
        level = np.clip(anomaly_map[rows] / scale, 0.0, 1.0)
        heat = heat_colours(level).astype(np.float32)
        opacity = (HEAT_OPACITY * level)[:, :, None]
        mixed = (1 - opacity) * image[rows].astype(np.float32) + opacity * heat
        blended[rows] = mixed.clip(0, 255)
    return blended


def mask_image(result: Result) -> np.ndarray:
    """The binary mask as a uint8 image (0 or 255)."""
    return result.mask.astype(np.uint8) * 255


def png_bytes(array: np.ndarray) -> bytes:
    """PNG encoding of a uint8 image array."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()
