"""Load any common image file as an 8-bit RGB array, or fail with a clear message."""

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from anomalens.errors import ImageError

MAX_PIXELS = 100_000_000
"""Images with more pixels are refused as likely decompression bombs."""
MIN_SIDE = 16
"""Images narrower or lower than this (one feature patch) are refused."""
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})


def is_image_file(path: Path) -> bool:
    """Whether `path` has a suffix this package reads as an image."""
    return path.suffix.lower() in IMAGE_SUFFIXES


def load_image(source: str | Path) -> np.ndarray:
    """Read `source` as an RGB uint8 array of shape (H, W, 3), upright per its EXIF tag.

    Handles grayscale, 16-bit, palette, RGBA (alpha dropped), CMYK and EXIF-rotated files.
    Raises ImageError naming the file for anything unreadable, truncated, too large or too small.
    """
    path = Path(source)
    if not path.is_file():
        raise ImageError(path, "no such file")
    try:
        with warnings.catch_warnings():
            # PIL warns from 89.5 megapixels; MAX_PIXELS is checked right after opening instead.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                _check_pixel_count(path, image.size)
                image.load()
                image = ImageOps.exif_transpose(image)
                array = to_rgb_array(image)
    except ImageError:
        raise
    except Image.DecompressionBombError:  # PIL refuses twice its warning size before we look
        raise ImageError(path, f"image is larger than {MAX_PIXELS} pixels") from None
    except UnidentifiedImageError:
        raise ImageError(path, "not an image file, or a format this tool cannot read") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(path, f"corrupt or truncated image ({error})") from None
    check_image_size(path, array)
    return array


def to_rgb_array(image: Image.Image) -> np.ndarray:
    """Convert a PIL image of any mode to an RGB uint8 array."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        gray = np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        span = max(values.max() - values.min(), 1e-12)
        gray = ((values - values.min()) / span * 255.0 + 0.5).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode == "P":
        image = image.convert("RGBA")
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def check_image_size(source: str | Path, array: np.ndarray) -> None:
    """Refuse arrays smaller than one patch or larger than MAX_PIXELS."""
    height, width = array.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise ImageError(
            source, f"image is {width}x{height} px, smaller than one patch ({MIN_SIDE} px)"
        )
    _check_pixel_count(source, (width, height))


def _check_pixel_count(source: str | Path, size: tuple[int, int]) -> None:
    if size[0] * size[1] > MAX_PIXELS:
        raise ImageError(source, f"image is {size[0]}x{size[1]} px, over {MAX_PIXELS} pixels")


def as_rgb_array(image: "str | Path | np.ndarray", name: str = "<array>") -> np.ndarray:
    """Accept a path or an array (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) and return RGB uint8."""
    if isinstance(image, str | Path):
        return load_image(image)
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ImageError(name, f"expected an HxW, HxWx3 or HxWx4 array, got shape {array.shape}")
    if array.dtype.kind not in "biuf":  # strings, objects, complex numbers, dates
        raise ImageError(name, f"an image array holds numbers; this one holds {array.dtype}")
    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.floating) and array.max(initial=0) <= 1.0:
            array = array * 255.0
        array = np.clip(array, 0, 255).astype(np.uint8)
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    array = np.ascontiguousarray(array[:, :, :3])
    check_image_size(name, array)
    return array
