"""The `anomalens` command line: one module per command, each adding its own parser."""

import argparse
import sys
from collections.abc import Sequence

from anomalens.cli import (
    defects,
    evaluate,
    evaluate_types,
    export,
    fit,
    info,
    predict,
    report,
    serve,
    weights,
)
from anomalens.errors import AnomalensError

COMMANDS = [fit, predict, info, weights, report, evaluate, serve, defects, evaluate_types, export]


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every command's sub-parser."""
    parser = argparse.ArgumentParser(
        prog="anomalens",
        description="Find, outline, box and name defects from a handful of good photos.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command named in `argv`; return the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except AnomalensError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
