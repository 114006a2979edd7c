"""`anomalens evaluate DATA`: the few-shot protocol over shots × seeds, with a report folder."""

import argparse
from pathlib import Path

from anomalens.cli.options import add_detector_options, add_runtime_options, detector_params
from anomalens.data.shots import parse_shots
from anomalens.errors import ConfigError
from anomalens.evaluation import EvaluationSettings, evaluate


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the `evaluate` sub-parser."""
    defaults = EvaluationSettings()
    parser = subparsers.add_parser(
        "evaluate",
        help="measure a method on a labelled dataset with the few-shot protocol",
        description=(
            "Fit on k good references per shots setting and seed, score the test images and "
            "write metrics.json, report.md, scores.csv, curves and overlays to the output "
            "folder. DATA is an MVTec-AD category (train/good, test/<type>, ground_truth/"
            "<type>), a folder of such categories, or a folder with good/, defective/ and "
            "optional masks/. Box ground truth, where a category has it (boxes/<stem>.txt or "
            "annotations.json), adds box recall and precision at the detector's thresholds."
        ),
    )
    parser.add_argument("data", type=Path, help="dataset folder")
    add_detector_options(parser)
    parser.add_argument(
        "--shots",
        nargs="+",
        type=shots_argument,
        default=defaults.shots,
        help="reference counts to evaluate, or 'full' (default: %(default)s)",
    )
    parser.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=defaults.seeds,
        help="seeds; each draws its own references (default: %(default)s)",
    )
    parser.add_argument(
        "--references",
        type=Path,
        metavar="LIST.txt",
        help="use exactly these references (one path per line, relative to DATA) instead of "
        "the seeded draw; --shots is then ignored",
    )
    parser.add_argument(
        "--model",
        type=Path,
        help="evaluate this saved or exported model as it is instead of fitting: its own "
        "references (which must be in DATA, one category) are left out of the test set; "
        "--shots, --seeds, --references and the detector options do not apply; --runtime "
        "and --device say where it runs",
    )
    add_runtime_options(parser)
    parser.add_argument(
        "--boxes",
        type=Path,
        metavar="COCO.json",
        help="box ground truth as a COCO file (bbox [x, y, w, h], images matched by file_name) "
        "in place of each category's boxes/ folder or annotations.json",
    )
    parser.add_argument(
        "--batch-size", type=int, default=defaults.batch_size, help="test images per batch"
    )
    parser.add_argument(
        "--save-maps", action="store_true", help="also write each run's anomaly maps (maps.npz)"
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("evaluation-report"),
        help="report folder (default: %(default)s)",
    )
    parser.set_defaults(func=run)


def shots_argument(text: str) -> int | str:
    """argparse type for one --shots value."""
    try:
        return parse_shots(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive number or 'full', got {text!r}"
        ) from None


def run(args: argparse.Namespace) -> int:
    """Evaluate and print where the report is (bad input ends in `main`'s one-line error)."""
    settings = EvaluationSettings(
        method=args.method,
        backbone=args.backbone,
        resolution=args.resolution,
        shots=args.shots,
        seeds=args.seeds,
        method_params=detector_params(args.param),
        batch_size=args.batch_size,
        save_maps=args.save_maps,
        model=str(args.model) if args.model else None,
        runtime=args.runtime,
        device=args.device,
    )
    if (args.runtime or args.device != "cpu") and not args.model:
        raise ConfigError("--runtime and --device need --model")
    evaluate(args.data, args.output, settings, args.references, boxes=args.boxes)
    print(f"report written to {args.output / 'report.md'}")
    return 0
