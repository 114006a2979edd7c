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
from anomalens.cli.options import add_threads_option
from anomalens.errors import AnomalensError
from anomalens.progress import say
from anomalens.threads import set_threads

COMMANDS = [fit, predict, info, weights, report, evaluate, serve, defects, evaluate_types, export]
COMPUTING = ["fit", "predict", "evaluate", "evaluate-types", "defects", "serve", "export"]
"""Commands whose every sub-command takes --threads."""


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every command's sub-parser."""
    parser = argparse.ArgumentParser(
        prog="anomalens",
        description="Find, outline, box and name defects from a handful of good photos.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(subparsers)
    for name in COMPUTING:
        for leaf in _leaf_parsers(subparsers.choices[name]):
            add_threads_option(leaf)
    return parser


def _leaf_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """`parser`, or the parsers of its sub-commands (and theirs) that run something."""
    nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not nested:
        return [parser]
    return [
        leaf for action in nested for sub in action.choices.values() for leaf in _leaf_parsers(sub)
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command named in `argv`; return the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        if "threads" in args:
            set_threads(args.threads)
        return int(args.func(args) or 0)
    except AnomalensError as error:
        say(f"error: {error}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
