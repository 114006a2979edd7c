"""Uploaded files to RGB images, within the server's limits, or a clear error naming the file."""

import hashlib
import io
import tempfile
import threading
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from PIL import Image

from anomalens.errors import ImageError
from anomalens.io.images import load_image
from anomalens.service.errors import TooLarge
from anomalens.service.limits import Limits, size_text


@dataclass
class UploadedImage:
    """One decoded upload.

    Attributes:
        filename: the file's name as the client sent it, with its relative folders
            ("good/000.png") but no "..", "." or leading "/".
        sha256: hex digest of the uploaded bytes.
        image: RGB uint8 (H, W, 3).
    """

    filename: str
    sha256: str
    image: np.ndarray


def read_images(
    files: list[tuple[str | None, BinaryIO]], limits: Limits, what: str = "images"
) -> list[UploadedImage]:
    """Decode uploaded (filename, file) pairs; `what` names them in errors.

    Raises TooLarge for too many files, a file over `limits.max_file_bytes`, an image over
    `limits.max_pixels` or images over `limits.max_request_pixels` together (all checked on the
    headers before anything is decoded), and ImageError naming the file for anything that is
    not a usable image.
    """
    if len(files) > limits.max_files:
        raise TooLarge(f"{len(files)} {what} uploaded; the server takes at most {limits.max_files}")
    contents, total = [], 0
    for index, (filename, file) in enumerate(files):
        name = relative_name(filename) or f"upload {index + 1}"
        data = file.read(limits.max_file_bytes + 1)
        if len(data) > limits.max_file_bytes:
            raise TooLarge(f"{name}: file is larger than {size_text(limits.max_file_bytes)}")
        width, height = _declared_size(name, data)
        if width * height > limits.max_pixels:
            raise TooLarge(
                f"{name}: image is {width}x{height} px, over the limit of {limits.max_pixels}"
            )
        total += width * height
        contents.append((name, data))
    if total > limits.max_request_pixels:
        raise TooLarge(
            f"the {what} uploaded hold {total} pixels together, over the server's limit of "
            f"{limits.max_request_pixels} per request"
        )
    with _decoding(limits.max_decoding):
        return [
            UploadedImage(name, hashlib.sha256(data).hexdigest(), decode(name, data))
            for name, data in contents
        ]


_slots: dict[int, threading.BoundedSemaphore] = {}
_slots_lock = threading.Lock()


def _decoding(requests: int) -> threading.BoundedSemaphore:
    """The turn to decode a request's images, shared by at most `requests` at once (the
    limits' `max_decoding`), so that decoded images stay within the memory they were sized for;
    no model lock is held meanwhile."""
    with _slots_lock:
        return _slots.setdefault(requests, threading.BoundedSemaphore(requests))


def relative_name(filename: str | None) -> str:
    """`filename` as a relative path with "/" separators, without "..", "." or empty parts, so
    that two files of one name in different folders stay apart and none names a place above."""
    parts = (filename or "").replace("\\", "/").split("/")
    return "/".join(part for part in parts if part not in ("", ".", ".."))


def decode(name: str, data: bytes) -> np.ndarray:
    """The image in `data` as RGB uint8; errors name upload `name`."""
    with tempfile.NamedTemporaryFile(prefix="anomalens-upload-") as file:
        file.write(data)
        file.flush()
        try:
            return load_image(file.name)
        except ImageError as error:
            raise ImageError(name, error.problem) from None


def _declared_size(name: str, data: bytes) -> tuple[int, int]:
    """(width, height) from the image header, or (0, 0) when the header cannot be read (decoding
    then reports the problem); TooLarge when PIL itself refuses it as a decompression bomb."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Image.DecompressionBombError:
        raise TooLarge(f"{name}: image is over {2 * Image.MAX_IMAGE_PIXELS} pixels") from None
    except (OSError, SyntaxError, ValueError):
        return 0, 0
