"""`anomalens weights list | import NAME FILE | fetch NAME`: which backbones have their weights on
this machine, and installing a file people bring or, on a machine with internet, download."""

import argparse
from pathlib import Path

from anomalens.backbones import get_entry, weights_status
from anomalens.backbones.checkpoints import fetch_weights, import_weights


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the `weights` sub-parser."""
    parser = subparsers.add_parser(
        "weights", help="show, import or fetch pretrained weights on this machine"
    )
    actions = parser.add_subparsers(dest="action", required=True)
    listing = actions.add_parser(
        "list",
        help="each backbone: availability, source, and its file's path and sha256 or "
        "where a missing file goes",
    )
    listing.set_defaults(func=list_weights)
    importing = actions.add_parser(
        "import",
        help="check a weights file and copy it where the backbone is looked for",
        description="Check FILE (the sha256 its registered name carries, where it carries one, "
        "and that it loads into backbone NAME) and copy it into the first weights folder "
        "(`anomalens weights list` shows where).",
    )
    importing.add_argument("name", help="backbone name (see `anomalens weights list`)")
    importing.add_argument("file", type=Path, help="the weights file")
    importing.set_defaults(func=import_file)
    fetching = actions.add_parser(
        "fetch",
        help="download a backbone's public weights (needs internet), check and install them",
        description="Download backbone NAME's public weights file, check it as `import` does, "
        "and install it; for machines with internet (copy the file to others and `import` it).",
    )
    fetching.add_argument("name", help="backbone name (see `anomalens weights list`)")
    fetching.set_defaults(func=fetch)


def list_weights(args: argparse.Namespace) -> int:
    """Print one block per backbone."""
    for row in weights_status():
        state = "available" if row["available"] else "missing"
        print(f"{row['name']:<24} {state:<10} {row['source']}")
        if row["available"]:
            print(f"{'':<24} {row['path']}\n{'':<24} sha256 {row['sha256']}")
            continue
        fetch_hint = f" or `weights fetch {row['name']}`" if row["fetchable"] else ""
        print(f"{'':<24} goes to {row['target']}")
        print(f"{'':<24} (`anomalens weights import {row['name']} FILE`{fetch_hint})")
    return 0


def import_file(args: argparse.Namespace) -> int:
    """Check and install one file."""
    target, digest = import_weights(get_entry(args.name), args.file)
    print(f"imported {args.file} as {target}\nsha256 {digest}")
    return 0


def fetch(args: argparse.Namespace) -> int:
    """Download, check and install one backbone's weights."""
    target, digest = fetch_weights(get_entry(args.name))
    print(f"fetched {get_entry(args.name).url} to {target}\nsha256 {digest}")
    return 0
