"""`anomalens weights list`: which backbones have their weights on this machine."""

import argparse

from anomalens.backbones import weights_status


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the `weights` sub-parser."""
    parser = subparsers.add_parser("weights", help="show pretrained weights on this machine")
    actions = parser.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="each backbone, availability, source and sha256")
    listing.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print one block per backbone."""
    for row in weights_status():
        state = "available" if row["available"] else "missing"
        print(f"{row['name']:<24} {state:<10} {row['source']}")
        if row["available"]:
            print(f"{'':<24} {row['path']}\n{'':<24} sha256 {row['sha256']}")
    return 0
