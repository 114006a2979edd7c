"""Refuse requests that a web page open in the user's browser forges against the server."""

from collections.abc import Collection
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
"""The names a browser on this machine uses for a server bound to loopback."""
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class SameOriginOnly:
    """ASGI middleware answering 403 to cross-site requests.

    A request that changes something (any method but GET, HEAD and OPTIONS) and carries an
    Origin header naming another site is refused: browsers send any page's form posts and
    simple fetches to a local server, so without this check any website could fit or delete
    models. With `hosts`, a request whose Host header names any other host is refused too,
    which stops DNS rebinding (a foreign name resolving to 127.0.0.1) from reading the API.

    Args:
        app: the application to guard.
        hosts: host names (no port) the server answers to; None answers to any.
    """

    def __init__(self, app: ASGIApp, hosts: Collection[str] | None = None):
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            problem = self._problem(scope["method"], Headers(scope=scope))
            if problem:
                await JSONResponse({"detail": problem}, status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _problem(self, method: str, headers: Headers) -> str | None:
        host = headers.get("host", "")
        if self.hosts is not None and host_name(host) not in self.hosts:
            return f"this server answers to {sorted(self.hosts)}, not to {host!r}"
        origin = headers.get("origin")
        if method not in SAFE_METHODS and origin is not None and urlsplit(origin).netloc != host:
            return f"requests from {origin!r} may not change anything on this server"
        return None


def host_name(host: str) -> str:
    """The name in a Host header (or an address) without port, case or final dot:
    "[::1]:8000" -> "::1", "LocalHost.:80" -> "localhost"."""
    if host.startswith("["):
        host = host[1 : host.find("]")]
    elif host.count(":") == 1:
        host = host.rsplit(":", 1)[0]
    return host.lower().rstrip(".")
