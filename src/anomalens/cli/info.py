"""`anomalens info MODEL`: what a saved model is, its references and its thresholds."""

import argparse
import json
from pathlib import Path

from anomalens.cli.defects import describe
from anomalens.detector import Detector


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the `info` sub-parser."""
    parser = subparsers.add_parser("info", help="show a model's settings and thresholds")
    parser.add_argument("model", type=Path, help="model folder written by `anomalens fit`")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the model's configuration, references, outliers, thresholds and defect types."""
    detector = Detector.load(args.model)
    summary = {
        **detector.config(),
        "references": detector.references,
        "reference_outliers": detector.reference_outliers,
        "held_out_scores": detector.held_out_scores,
        "thresholds": detector.threshold_dicts(),
        "calibration_warnings": detector.calibration_warnings,
        "defect_types": describe(detector.defect_types),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"model       {args.model}")
    print(f"method      {detector.method.name} {json.dumps(detector.method.config())}")
    print(f"references  {len(detector.references)}")
    for name in detector.reference_outliers:
        print(f"outlier     {name}")
    for name, threshold in detector.thresholds.items():
        target = threshold.max_false_alarm
        goal = f", target false-alarm rate {target:.2%}" if target is not None else ""
        print(
            f"threshold   {name}: {threshold.value:.6g} ({threshold.method}, "
            f"{threshold.samples} samples{goal})"
        )
    for name, problem in detector.calibration_warnings.items():
        print(f"warning     {name} threshold: {problem}")
    for line in summary["defect_types"]:
        print(f"types       {line}")
    return 0
