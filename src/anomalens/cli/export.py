"""`anomalens export MODEL -o DIR --format onnx|openvino [--int8]`: a model whose backbones run
in ONNX Runtime or OpenVINO."""

import argparse
from pathlib import Path

from anomalens.cli.options import image_files
from anomalens.errors import ConfigError
from anomalens.runtime import export, read_manifest
from anomalens.runtime.graphs import FORMATS


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the `export` sub-parser."""
    parser = subparsers.add_parser(
        "export",
        help="export a model's backbones to ONNX or OpenVINO (optionally int8)",
        description=(
            "Write DIR: the model (bank, thresholds, defect types, configuration) with its "
            "backbones as ONNX or OpenVINO graphs of dynamic height and width. DIR is a model: "
            "`predict DIR` and `serve` run it in the fastest runtime measured here, or the "
            "one --runtime names."
        ),
    )
    parser.add_argument("model", type=Path, help="model folder written by `anomalens fit`")
    parser.add_argument("-o", "--output", type=Path, required=True, help="new or empty folder")
    parser.add_argument("--format", choices=FORMATS, default="onnx", help="graph format")
    parser.add_argument(
        "--int8",
        action="store_true",
        help="quantise the graphs to int8, calibrated on the references, and rebuild the bank "
        "and thresholds from the int8 features",
    )
    parser.add_argument(
        "--references",
        type=Path,
        nargs="+",
        help="reference images or folders (default: the model's references, where they are)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Export the model; print where it went and each runtime's time per image."""
    if args.references:
        references = [path for path, _ in image_files(args.references)]
    else:
        from anomalens.persistence import load_detector

        references = [Path(name) for name in load_detector(args.model).references]
        missing = [str(path) for path in references if not path.is_file()]
        if missing:
            raise ConfigError(
                f"the model's references are not here ({missing[0]} and {len(missing) - 1} "
                "more): name them with --references"
            )
    export(args.model, args.output, args.format, args.int8, references)
    timings = read_manifest(args.output)["milliseconds"]
    print(f"exported {args.model} to {args.output} ({args.format}{', int8' if args.int8 else ''})")
    for name, milliseconds in sorted(timings.items(), key=lambda item: item[1]):
        print(f"  {name:12s} {milliseconds:8.1f} ms per image")
    return 0
