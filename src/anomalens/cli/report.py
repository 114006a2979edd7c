"""`anomalens report RESULTS_DIR -o report.html`: one self-contained HTML page of a prediction."""

import argparse
from pathlib import Path

from anomalens.formats.html_report import write_html_report


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the `report` command to `subparsers`."""
    parser = subparsers.add_parser(
        "report",
        help="write an HTML report of a predict output directory",
        description="Write one self-contained HTML page (overlays, scores, boxes, labels, "
        "thresholds; sortable, opens offline) from a directory written by `anomalens predict`.",
    )
    parser.add_argument("results", type=Path, help="directory written by `anomalens predict`")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        help="HTML file to write (default: report.html inside the results directory)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the report of `args.results` to `args.output`; return the exit code."""
    output = write_html_report(args.results, args.output or args.results / "report.html")
    print(f"report written to {output}")
    return 0
