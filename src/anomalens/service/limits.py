"""What the server accepts: upload sizes, image pixels, files per request, fitting resolution,
how slowly a body may arrive and how many requests decode at once; `Limits.for_machine`
derives the memory-bound ones from the machine's memory."""

import asyncio
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MEBIBYTE = 2**20
BYTES_PER_PIXEL = 24
"""Memory an inspected image takes per pixel while its request is served: the decoded RGB
image, its float32 map, mask and overlay and their PNGs (the probe of issue 18 saw 7.6 GB for
400 megapixels, 19 bytes each)."""
MEMORY_SHARE = 0.25
"""Share of the machine's memory that decoded images of requests in progress may take together;
the rest is the models', the fits' and the system's."""
FILES_AT_THE_LIMIT = 20
"""A request body may be as large as this many files at the upload limit."""


@dataclass(frozen=True)
class Limits:
    """Upper bounds on what one request may ask of the server.

    Attributes:
        max_file_bytes: size of one uploaded file.
        max_request_bytes: size of a whole request body.
        max_pixels: width x height of one uploaded image.
        max_request_pixels: width x height summed over a request's images, checked before any
            is decoded (a small PNG of one colour can declare 40 megapixels, 120 MB decoded).
        max_files: files in one request.
        max_resolution: the `resolution` a new model may be fitted at.
        max_decoding: requests that decode images at once (the others wait their turn).
        body_timeout: seconds a request body may stall, and the grace before `min_body_rate`
            applies; a slower body is answered 408.
        min_body_rate: bytes per second a body must average after that grace.
    """

    max_file_bytes: int = 25 * MEBIBYTE
    max_request_bytes: int = FILES_AT_THE_LIMIT * 25 * MEBIBYTE
    max_pixels: int = 40_000_000
    max_request_pixels: int = 400_000_000
    max_files: int = 500
    max_resolution: int = 1024
    max_decoding: int = 2
    body_timeout: int = 30
    min_body_rate: int = 64 * 1024

    @classmethod
    def for_machine(
        cls, max_file_bytes: int | None = None, max_pixels: int | None = None, memory: int = 0
    ) -> "Limits":
        """Limits within `memory` bytes (default: this machine's, see `machine_memory`): the
        decoded images of `max_decoding` requests at `max_request_pixels` fill MEMORY_SHARE of
        it; a request body takes up to FILES_AT_THE_LIMIT files of `max_file_bytes`, and always
        one file and one image at the limits given."""
        budget = int((memory or machine_memory()) * MEMORY_SHARE / BYTES_PER_PIXEL)  # pixels
        file_bytes = max_file_bytes or cls.max_file_bytes
        pixels = min(max_pixels or cls.max_pixels, budget)
        request_pixels = max(min(cls.max_request_pixels, budget // cls.max_decoding), pixels)
        return cls(
            max_file_bytes=file_bytes,
            max_request_bytes=FILES_AT_THE_LIMIT * file_bytes,
            max_pixels=pixels,
            max_request_pixels=request_pixels,
            max_decoding=max(1, budget // request_pixels),
        )

    def to_dict(self) -> dict[str, int]:
        """The limits by name, for clients."""
        return asdict(self)


def machine_memory() -> int:
    """Bytes of memory this process may use: the machine's, or its cgroup's limit if lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        return total
    return min(total, int(limit)) if limit.isdigit() else total


class BodySizeLimit:
    """ASGI middleware that answers 413 to a request whose body is over `max_bytes`, and 408 to
    one whose body stalls for `timeout` seconds or, after them, averages under `min_rate` bytes
    per second (so that slow or partial uploads do not hold the server's connections).

    A declared Content-Length over the limit is refused before the body is read; a streamed
    body is counted as it arrives.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, timeout: float = 30, min_rate: int = 65536):
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.min_rate = min_rate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await JSONResponse({"detail": self._problem()}, status_code=413)(scope, receive, send)
            return
        received, start, complete = 0, time.monotonic(), False

        async def counting_receive() -> Message:
            nonlocal received, complete
            if complete:  # the body is in: what follows is the wait for a disconnect
                return await receive()
            # the next part must come before the body falls under min_rate (after the grace)
            due = start + self.timeout + received / self.min_rate - time.monotonic()
            try:
                message = await asyncio.wait_for(receive(), timeout=max(min(due, self.timeout), 0))
            except TimeoutError:
                raise HTTPException(
                    408,
                    f"the request body arrived too slowly (under {size_text(self.min_rate)} per "
                    f"second, or nothing for {self.timeout:g} s); send it again",
                ) from None
            received += len(message.get("body", b""))
            complete = not message.get("more_body", False)
            if received > self.max_bytes:
                raise HTTPException(413, self._problem())
            return message

        await self.app(scope, counting_receive, send)

    def _problem(self) -> str:
        return f"request body is larger than the server's limit of {size_text(self.max_bytes)}"


def size_text(size: int) -> str:
    """A byte count for people: "25 MiB", "3.5 KiB" or "700 bytes"."""
    for unit, scale in (("MiB", MEBIBYTE), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:g} {unit}"
    return f"{size} bytes"
