"""`anomalens fit NORMAL_DIR -o MODEL`: learn from good images and save the detector."""

import argparse
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from anomalens.cli.options import (
    add_detector_options,
    detector_params,
    image_files,
    plural,
    report_error,
)
from anomalens.data import discover
from anomalens.data.shots import read_reference_list, seeded_order
from anomalens.detector import SPLIT_BELOW, Detector
from anomalens.errors import AnomalensError
from anomalens.io.images import load_image
from anomalens.progress import SHOW_AFTER, say, spinner


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the `fit` sub-parser."""
    parser = subparsers.add_parser(
        "fit",
        help="learn what good looks like from a folder of good images",
        description="Fit a detector on good images, calibrate its thresholds, save it.",
    )
    parser.add_argument(
        "normal_dir", type=Path, help="folder of good images (searched recursively)"
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="model folder to write")
    add_detector_options(parser)
    parser.add_argument("--shots", type=int, help="use only K references, drawn by --seed")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the draw and the method (default: %(default)s)"
    )
    parser.add_argument("--references", type=Path, help="file listing the exact reference images")
    parser.add_argument(
        "--max-false-alarm",
        type=float,
        default=0.01,
        help="target rate of good images flagged NG (default: %(default)s)",
    )
    parser.add_argument(
        "--exclude-outliers",
        action="store_true",
        help=f"drop references that look defective (checked with {SPLIT_BELOW} references or "
        "more; fewer are too few to tell)",
    )
    parser.add_argument(
        "--calibrate",
        type=Path,
        help=(
            "labelled images (an MVTec-AD category folder, or good/ + defective/): "
            "F1-optimal threshold"
        ),
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Fit, report outliers and failed files, save; exit 1 if any file failed."""
    paths = reference_paths(args)
    images, names, failed = [], [], 0
    for path in tqdm(paths, desc="loading references", unit="image", delay=SHOW_AFTER):
        try:
            images.append(load_image(path))
            names.append(str(path))
        except AnomalensError as error:
            report_error(path, error)
            failed += 1
    if not images:
        raise AnomalensError(f"{args.normal_dir}: no readable good images")
    detector = Detector(
        method=args.method,
        backbone=args.backbone,
        resolution=args.resolution,
        max_false_alarm=args.max_false_alarm,
        seed=args.seed,
        **detector_params(args.param),
    )
    exclude = args.exclude_outliers and len(images) >= SPLIT_BELOW
    if args.exclude_outliers and not exclude:
        say(
            f"note: --exclude-outliers does nothing with {plural(len(images), 'reference')}: "
            f"outliers are told from {SPLIT_BELOW} or more; all are kept"
        )
    detector.fit(images, progress=True, exclude_outliers=exclude, names=names)
    for name in detector.reference_outliers:
        action = "excluded" if exclude else "kept (use --exclude-outliers to drop)"
        say(f"warning: reference {name} scores like a defect against the others; {action}")
    if args.calibrate:
        failed += calibrate(detector, args.calibrate)
    detector.save(args.output)
    thresholds = ", ".join(f"{k} {t.value:.4f}" for k, t in detector.thresholds.items())
    fitted = plural(len(detector.references), "reference")
    print(f"fitted on {fitted}; thresholds: {thresholds}")
    print(f"saved {args.output}")
    return 1 if failed else 0


def reference_paths(args: argparse.Namespace) -> list[Path]:
    """The reference files: a --references list, or the folder's images (--shots of them)."""
    if args.references:
        return read_reference_list(args.references, args.normal_dir)
    found = image_files([args.normal_dir])
    for line in found.summary():
        print(line, file=sys.stderr)
    paths = [path for path, _ in found]
    if not paths:
        raise AnomalensError(f"{args.normal_dir}: no images found")
    if args.shots:
        if args.shots > len(paths):
            raise AnomalensError(
                f"{args.normal_dir}: --shots {args.shots} but only {len(paths)} images"
            )
        paths = seeded_order(paths, args.seed)[: args.shots]
    return paths


def calibrate(detector: Detector, folder: Path) -> int:
    """Set the F1-optimal image threshold on the labelled images under `folder`; unreadable
    ones are reported and left out, and when too few are left (a class missing) the references'
    threshold stays. Returns how many problems were reported."""
    images, labels, failed = [], [], 0
    samples = [sample for dataset in discover(folder) for sample in dataset.test]
    for sample in tqdm(samples, desc="loading labelled images", unit="image", delay=SHOW_AFTER):
        try:
            images.append(load_image(sample.path))
            labels.append(sample.label)
        except AnomalensError as error:
            report_error(sample.path, error)
            failed += 1
    try:
        with spinner(f"calibrating on {plural(len(images), 'labelled image')}"):
            detector.calibrate(images, np.array(labels, dtype=bool))
    except AnomalensError as error:
        problem = f"not calibrated, the references' threshold stays ({error})"
        report_error(folder, AnomalensError(problem))
        failed += 1
    return failed
