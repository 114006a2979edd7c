"""`anomalens serve [--host H --port P --models DIR]`: the inspection API and web page."""

import argparse
import ipaddress
import sys
from pathlib import Path

from anomalens.cli.options import add_runtime_options
from anomalens.errors import ConfigError
from anomalens.runtime import set_defaults


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
        help="largest accepted file, in MiB (default: %(default)s)",
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=40_000_000,
        help="largest accepted image, in pixels (default: %(default)s)",
    )
    add_runtime_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted."""
    import uvicorn

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
    file_bytes = int(args.max_upload_mb * MEBIBYTE)
    limits = Limits(  # a request can always carry one file and one image at the limits
        max_file_bytes=file_bytes,
        max_request_bytes=max(Limits.max_request_bytes, file_bytes),
        max_pixels=args.max_pixels,
        max_request_pixels=max(Limits.max_request_pixels, args.max_pixels),
    )
    hosts = LOOPBACK_NAMES | {host_name(args.host)} if is_loopback(args.host) else None
    try:
        app = create_app(args.models, limits, hosts)
    except OSError as error:
        problem = error.strerror or str(error)
        raise ConfigError(f"--models {args.models}: cannot use this folder ({problem})") from None
    uvicorn.run(app, host=args.host, port=args.port)
    return 0


def is_loopback(host: str) -> bool:
    """Whether `host` (an IP address or "localhost") is only reachable from this machine."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
