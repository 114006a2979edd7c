"""Pictures people look at: the anomaly heatmap over the image, a colour legend, the verdict and
score, and each box with its label, all sized to the image."""

import io
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from anomalens.results import Box, Result

BOX_COLOUR = (255, 40, 40)
LABEL_TEXT = (255, 255, 255)
VERDICT_COLOURS = {"NG": (220, 30, 30), "OK": (20, 150, 60)}
PANEL_COLOUR = (20, 20, 20)
HEAT_OPACITY = 0.6
"""Opacity of the heatmap where the score reaches the top of the colour scale; lower scores are
more transparent, so a good image stays visible."""
HEAT_FLOOR = 0.25
"""Below this fraction of the pixel threshold no heat is drawn: the photo keeps its own tones
there (a grey part stays grey), and colour starts faintly above it."""

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


def text_size(image_shape: tuple[int, ...]) -> int:
    """Font size in pixels for an image: about 1/40 of its longer side, at least 10."""
    return max(10, round(max(image_shape[:2]) / 40))


def overlay(image: np.ndarray, result: Result, pixel_threshold: float | None = None) -> np.ndarray:
    """The image with its anomaly heatmap blended in, each box drawn with its defect type and
    score, the verdict and image score in the top-left corner and the colour legend in the
    bottom-left one.

    The colour scale puts `pixel_threshold` (when given) at mid-range, so colours mean the same
    thing on every image; otherwise the map's own maximum sets the top of the scale. Where the
    map is under HEAT_FLOOR of the threshold the image is left as it is.
    """
    scale = 2.0 * pixel_threshold if pixel_threshold else float(result.anomaly_map.max()) or 1.0
    picture = Image.fromarray(_blend(image, result.anomaly_map, scale))
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default(size=text_size(image.shape))
    width = max(1, round(max(image.shape[:2]) / 300))
    for box in result.boxes:
        draw.rectangle([box.x0, box.y0, box.x1 - 1, box.y1 - 1], outline=BOX_COLOUR, width=width)
        _label(draw, box, font)
    _verdict(draw, result, font)
    _legend(
        draw, picture.size, font, ("0", "threshold", "2x") if pixel_threshold else ("0", "", "max")
    )
    return np.asarray(picture)


def _label(draw: ImageDraw.ImageDraw, box: Box, font: ImageFont.FreeTypeFont) -> None:
    """The box's defect type and score on a filled tab above its top-left corner (inside the
    box when it touches the top edge)."""
    text = f"{box.defect_type} {box.score:.2f}" if box.defect_type else f"{box.score:.2f}"
    pad = max(1, round(font.size / 5))
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    height = bottom - top + 2 * pad
    y = box.y0 - height if box.y0 >= height else box.y0
    draw.rectangle([box.x0, y, box.x0 + right - left + 2 * pad, y + height - 1], fill=BOX_COLOUR)
    draw.text((box.x0 + pad - left, y + pad - top), text, fill=LABEL_TEXT, font=font)


def _verdict(draw: ImageDraw.ImageDraw, result: Result, font: ImageFont.FreeTypeFont) -> None:
    """ "NG 1.84" (or "OK ...") on a tab of the verdict's colour in the top-left corner."""
    text = f"{result.verdict} {result.score:.3g}"
    pad = max(1, round(font.size / 4))
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    draw.rectangle(
        [0, 0, right - left + 2 * pad, bottom - top + 2 * pad], fill=VERDICT_COLOURS[result.verdict]
    )
    draw.text((pad - left, pad - top), text, fill=LABEL_TEXT, font=font)


def _legend(
    draw: ImageDraw.ImageDraw,
    size: tuple[int, int],
    font: ImageFont.FreeTypeFont,
    labels: tuple[str, str, str],
) -> None:
    """The colour ramp on a dark panel in the bottom-left corner, `labels` under its start,
    middle and end; left out on images too small to hold it."""
    width, height = size
    pad = max(1, round(font.size / 4))
    bar_width = max(round(width / 4), math.ceil(draw.textlength("  ".join(labels), font=font)))
    bar_height = max(3, round(font.size * 0.6))
    text_height = draw.textbbox((0, 0), "0", font=font)[3]
    panel_width, panel_height = bar_width + 2 * pad, bar_height + text_height + 3 * pad
    if panel_width > width - 2 * pad or panel_height > height / 4:
        return
    x0, y0 = pad, height - panel_height - pad
    draw.rectangle([x0, y0, x0 + panel_width - 1, y0 + panel_height - 1], fill=PANEL_COLOUR)
    for offset, colour in enumerate(heat_colours(np.linspace(0.0, 1.0, bar_width))):
        x = x0 + pad + offset
        draw.line([x, y0 + pad, x, y0 + pad + bar_height - 1], fill=tuple(int(c) for c in colour))
    text_y = y0 + 2 * pad + bar_height
    for label, fraction, anchor in zip(labels, (0, 0.5, 1), ("la", "ma", "ra"), strict=True):
        x = x0 + pad + fraction * (bar_width - 1)
        draw.text((x, text_y), label, fill=LABEL_TEXT, font=font, anchor=anchor)


def _blend(image: np.ndarray, anomaly_map: np.ndarray, scale: float) -> np.ndarray:
    """The heatmap of `anomaly_map / scale` blended into `image`, ROWS_PER_STEP rows at a time
    so that the float copies stay small beside the picture."""
    floor = HEAT_FLOOR / 2  # HEAT_FLOOR of the threshold, which sits at level 0.5
    blended = np.empty_like(image)
    for start in range(0, len(image), ROWS_PER_STEP):
        rows = slice(start, start + ROWS_PER_STEP)
        level = np.clip(anomaly_map[rows] / scale, 0.0, 1.0)
        opacity = (HEAT_OPACITY * np.clip((level - floor) / (1 - floor), 0.0, 1.0))[:, :, None]
        mixed = (1 - opacity) * image[rows].astype(np.float32) + opacity * heat_colours(level)
        blended[rows] = np.rint(mixed).clip(0, 255)
    return blended


def mask_image(result: Result) -> np.ndarray:
    """The binary mask as a uint8 image (0 or 255)."""
    return result.mask.astype(np.uint8) * 255


def png_bytes(array: np.ndarray) -> bytes:
    """PNG encoding of a uint8 image array."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()
