"""`anomalens serve [--host H --port P --models DIR]`: the inspection API and web page."""

import argparse
import contextlib
import ipaddress
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from anomalens.cli.options import add_runtime_options
from anomalens.errors import ConfigError
from anomalens.runtime import set_defaults
from anomalens.service.limits import FILES_AT_THE_LIMIT

if TYPE_CHECKING:
    import uvicorn

    from anomalens.service.jobs import FitJobs

MAX_CONNECTIONS = 256
"""Connections served at once; more are answered 503, so that slow clients cannot take every
file descriptor."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the `serve` sub-parser."""
    parser = subparsers.add_parser(
        "serve",
        help="run the inspection server (API and web page)",
        description=(
            "Serve the models in --models over HTTP: a JSON API (schema at /openapi.json) and "
            "a web page at / to create models, inspect images and add defect types."
        ),
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: %(default)s, loopback only)",
    )
    parser.add_argument(
        "--port", type=int, default=8000, help="port to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--models",
        type=Path,
        default=Path("models"),
        help="folder holding the models and log (default: %(default)s)",
    )
    parser.add_argument(
        "--max-upload-mb",
        type=float,
        default=25,
        help=f"largest accepted file, in MiB; a request takes up to {FILES_AT_THE_LIMIT} of "
        "them (default: %(default)s)",
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=40_000_000,
        help="largest accepted image, in pixels, lowered to what the machine's memory allows "
        "(default: %(default)s)",
    )
    add_runtime_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted: a SIGTERM (or Ctrl-C) lets the running fit finish and keeps the
    queued ones recorded for the next start; a second one stops at once, the running fit
    recorded too."""
    from anomalens.service import Limits, create_app
    from anomalens.service.limits import MEBIBYTE
    from anomalens.service.origin import LOOPBACK_NAMES, host_name

    if not is_loopback(args.host):
        print(
            f"warning: listening on {args.host}: anyone who can reach it can create, "
            "delete and query models (the server has no authentication)",
            file=sys.stderr,
        )
    if args.max_upload_mb <= 0 or args.max_pixels <= 0:
        raise ConfigError("--max-upload-mb and --max-pixels must be positive")
    set_defaults(args.runtime, args.device)  # every model the server loads runs there
    limits = Limits.for_machine(int(args.max_upload_mb * MEBIBYTE), args.max_pixels)
    if limits.max_pixels < args.max_pixels:
        print(
            f"warning: --max-pixels lowered to {limits.max_pixels}, what this machine's memory "
            "allows",
            file=sys.stderr,
        )
    hosts = LOOPBACK_NAMES | {host_name(args.host)} if is_loopback(args.host) else None
    try:
        app = create_app(args.models, limits, hosts)
    except OSError as error:
        problem = error.strerror or str(error)
        raise ConfigError(f"--models {args.models}: cannot use this folder ({problem})") from None
    config = uvicorn_config(app, args.host, args.port)
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn raises Ctrl-C again once stopped
        stopping_server(config, app.state.jobs).run()
    return 0


def uvicorn_config(app: object, host: str, port: int) -> "uvicorn.Config":
    """The server's settings: at most MAX_CONNECTIONS at once."""
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, limit_concurrency=MAX_CONNECTIONS)


def stopping_server(config: "uvicorn.Config", jobs: "FitJobs") -> "uvicorn.Server":
    """A uvicorn server on which a second SIGTERM or SIGINT stops at once: open connections
    are closed and the running fit is abandoned (`FitJobs.abandon`; it is recorded and runs
    again at the next start) instead of waited for."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if self.should_exit:
                self.force_exit = True
                jobs.abandon()
            super().handle_exit(sig, frame)

    return Server(config)


def is_loopback(host: str) -> bool:
    """Whether `host` (an IP address or "localhost") is only reachable from this machine."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
