"""Load any common image file as an 8-bit RGB array, or fail with a clear message.

Multi-frame files (animated GIF, multi-page TIFF) are read by their first frame, for paths and
uploads alike. High-bit-depth pixels are scaled to 8 bits by their bit depth, taken from the
values: integers in [0, 2^b - 1], b the smallest even number of bits (at least 8) that holds the
image's largest value, are divided by 2^b - 1, so a 12-bit camera's frames in 16-bit files read
as 12-bit ones and a 16-bit file whose values stay under 256 reads like an 8-bit one; floats in
[0, 1] are multiplied by 255, floats in [0, 255] kept; anything else (negative values, floats
over 255) is stretched over its own range. NaN or infinite pixels are refused. Pillow reads
16-bit colour files by the top 8 bits of each channel (a division by 257).
"""

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from anomalens.errors import ImageError

MAX_PIXELS = 100_000_000
"""Images with more pixels are refused as likely decompression bombs."""
MIN_SIDE = 16
"""Images narrower or lower than this (one feature patch) are refused."""
MAX_ASPECT_RATIO = 32
"""Images whose long side exceeds this many times the short one are refused: the backbone
would see them as a strip a few patches wide (crop such images into pieces)."""
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
ROWS_PER_STEP = 256
"""High-bit-depth pixels are scaled this many rows at a time, so that the float copies the
scaling needs stay small beside the image."""


def is_image_file(path: Path) -> bool:
    """Whether `path` has a suffix this package reads as an image."""
    return path.suffix.lower() in IMAGE_SUFFIXES


def load_image(source: str | Path) -> np.ndarray:
    """Read `source` as an RGB uint8 array of shape (H, W, 3), upright per its EXIF tag.

    Handles grayscale, 16-bit, float, palette, RGBA (alpha dropped), CMYK, EXIF-rotated and
    multi-frame files (see the module docstring). Raises ImageError naming the file for anything
    unreadable, truncated, too large, too small, too elongated or holding non-finite pixels.
    Peak memory beyond the result is Pillow's decoded copy (4 bytes per pixel for colour).
    """
    path = Path(source)
    if not path.is_file():
        raise ImageError(path, _missing(path))
    try:
        with warnings.catch_warnings():
            # PIL warns from 89.5 megapixels; MAX_PIXELS is checked right after opening instead.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                check_size(path, *image.size)
                image.load()
                ImageOps.exif_transpose(image, in_place=True)
                array = to_rgb_array(image, path)
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


def _missing(path: Path) -> str:
    if path.is_symlink() and not path.exists():
        return "broken link: its target does not exist"
    return "not a regular file" if path.exists() else "no such file"


def to_rgb_array(image: Image.Image, source: str | Path = "<image>") -> np.ndarray:
    """Convert a PIL image of any mode to an RGB uint8 array (see the module docstring)."""
    if image.mode.startswith(("I", "F")):
        return _gray_to_rgb(to_uint8(np.asarray(image), source))
    if image.mode in ("RGB", "L"):
        return _gray_to_rgb(np.array(image)) if image.mode == "L" else np.array(image)
    if image.mode.startswith("P"):
        image = image.convert("RGBA")
    return np.array(image.convert("RGB"))


def to_uint8(values: np.ndarray, source: str | Path = "<array>") -> np.ndarray:
    """`values` (any shape, integer, boolean or float) as uint8, scaled as the module docstring
    says; ImageError naming `source` for NaN or infinite values."""
    if values.dtype == np.uint8:
        return values
    if values.dtype == bool:
        return values.astype(np.uint8) * 255
    if not (np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)):
        raise ImageError(source, f"pixels of type {values.dtype} are not numbers")
    low, high = _finite_range(values, source)
    if low >= 0 and np.issubdtype(values.dtype, np.integer):
        bits = max(8, -(-int(high).bit_length() // 2) * 2)
        low, high = 0.0, float(2**bits - 1)
    elif low >= 0 and high <= 1:
        low, high = 0.0, 1.0
    elif low >= 0 and high <= 255:
        low, high = 0.0, 255.0
    scale = 255.0 / max(high - low, 1e-12)
    result = np.empty(values.shape, np.uint8)
    for start in range(0, len(values), ROWS_PER_STEP):
        rows = values[start : start + ROWS_PER_STEP].astype(np.float64)
        result[start : start + ROWS_PER_STEP] = np.clip((rows - low) * scale + 0.5, 0, 255)
    return result


def _finite_range(values: np.ndarray, source: str | Path) -> tuple[float, float]:
    if np.issubdtype(values.dtype, np.floating):
        bad = np.count_nonzero(~np.isfinite(values))
        if bad:
            raise ImageError(source, f"{bad} pixel values are NaN or infinite")
    if values.size == 0:
        return 0.0, 0.0
    return float(values.min()), float(values.max())


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[:, :, None], 3, axis=2)


def check_size(source: str | Path, width: int, height: int) -> None:
    """Refuse sizes under MIN_SIDE, over MAX_PIXELS or more elongated than MAX_ASPECT_RATIO;
    checked on the header before decoding, and again on the decoded array."""
    if width * height > MAX_PIXELS:
        raise ImageError(source, f"image is {width}x{height} px, over {MAX_PIXELS} pixels")
    if min(height, width) < MIN_SIDE:
        raise ImageError(
            source, f"image is {width}x{height} px, smaller than one patch ({MIN_SIDE} px)"
        )
    if max(height, width) > MAX_ASPECT_RATIO * min(height, width):
        raise ImageError(
            source,
            f"image is {width}x{height} px, {max(height, width) / min(height, width):.1f} times "
            f"longer than wide; at most {MAX_ASPECT_RATIO}:1 is read (crop it into pieces)",
        )


def check_image_size(source: str | Path, array: np.ndarray) -> None:
    """`check_size` for an (H, W, ...) array."""
    check_size(source, array.shape[1], array.shape[0])


def as_rgb_array(image: "str | Path | np.ndarray", name: str = "<array>") -> np.ndarray:
    """Accept a path or an array (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) and return RGB uint8,
    its values scaled as the module docstring says."""
    if isinstance(image, str | Path):
        return load_image(image)
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ImageError(name, f"expected an HxW, HxWx3 or HxWx4 array, got shape {array.shape}")
    check_image_size(name, array)
    array = to_uint8(array[:, :, :3], name)
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return np.ascontiguousarray(array)
