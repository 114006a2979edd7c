"""What the server accepts: upload sizes, image pixels, files per request, fitting resolution."""

from dataclasses import asdict, dataclass

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MEBIBYTE = 2**20


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
    """

    max_file_bytes: int = 25 * MEBIBYTE
    max_request_bytes: int = 512 * MEBIBYTE
    max_pixels: int = 40_000_000
    max_request_pixels: int = 400_000_000
    max_files: int = 500
    max_resolution: int = 1024

    def to_dict(self) -> dict[str, int]:
        """The limits by name, for clients."""
        return asdict(self)


class BodySizeLimit:
    """ASGI middleware that answers 413 to a request whose body is over `max_bytes`.

    A declared Content-Length over the limit is refused before the body is read; a streamed
    body is counted as it arrives.
    """

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await JSONResponse({"detail": self._problem()}, status_code=413)(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
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
