"""`anomalens predict MODEL INPUT... -o OUT`: inspect images, write results, masks, overlays."""

import argparse
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from anomalens.cli.options import add_runtime_options, image_files, report_error
from anomalens.detector import Detector
from anomalens.errors import AnomalensError
from anomalens.formats.coco import write_coco
from anomalens.io.atomic import write_bytes, write_json
from anomalens.io.images import load_image
from anomalens.results import Result
from anomalens.visualize import mask_image, overlay, png_bytes

BATCH = 8


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the `predict` sub-parser."""
    parser = subparsers.add_parser(
        "predict",
        help="inspect images with a fitted model",
        description=(
            "Score images and write OUT/results.json (score, verdict, boxes per image), "
            "OUT/masks/*.png and OUT/overlays/*.png (heatmap and boxes over the image)."
        ),
    )
    parser.add_argument("model", type=Path, help="model folder written by `anomalens fit`")
    parser.add_argument("inputs", type=Path, nargs="+", help="image files or folders")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--format",
        choices=["json", "coco"],
        default="json",
        help="coco also writes OUT/coco.json (COCO detections with segmentation)",
    )
    add_runtime_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Inspect every input; a bad file is reported and skipped; exit 1 if any failed."""
    detector = Detector.load(args.model, args.runtime, args.device)
    found = image_files(args.inputs)
    for line in found.summary():
        print(line, file=sys.stderr)
    files = found.files
    entries, errors, coco_results, coco_paths = [], [], [], []
    pending: list[tuple[Path, str, np.ndarray]] = []

    def flush() -> None:
        results = detector.predict([image for _, _, image in pending])
        for (path, name, image), result in zip(pending, results, strict=True):
            result.path = str(path)
            entries.append(write_outputs(args.output, name, image, result, detector))
            if args.format == "coco":  # only then are the masks kept until the end
                coco_results.append(result)
                coco_paths.append(path)
        pending.clear()

    for path, name in tqdm(files, desc="inspecting", unit="image"):
        try:
            pending.append((path, name, load_image(path)))
        except AnomalensError as error:
            report_error(path, error)
            errors.append({"path": str(path), "error": str(error)})
        if len(pending) == BATCH:
            flush()
    if pending:
        flush()
    write_json(
        args.output / "results.json",
        {
            "model": model_summary(args.model, detector),
            "images": entries,
            "errors": errors,
            "skipped": [skipped.to_dict() for skipped in found.skipped],
        },
    )
    if args.format == "coco":
        write_coco(args.output / "coco.json", coco_results, coco_paths, detector.defect_types.names)
    flagged = sum(entry["verdict"] == "NG" for entry in entries)
    print(f"{len(entries)} inspected, {flagged} NG, {len(errors)} failed; see {args.output}")
    return 1 if errors or not files else 0


def write_outputs(
    folder: Path, name: str, image: np.ndarray, result: Result, detector: Detector
) -> dict:
    """Write the mask and overlay PNGs of one image; return its results.json entry."""
    mask_path = Path("masks") / f"{name}.png"
    overlay_path = Path("overlays") / f"{name}.png"
    write_bytes(folder / mask_path, png_bytes(mask_image(result)))
    picture = overlay(image, result, detector.thresholds["pixel"].value)
    write_bytes(folder / overlay_path, png_bytes(picture))
    return {**result.to_dict(), "mask": mask_path.as_posix(), "overlay": overlay_path.as_posix()}


def model_summary(path: Path, detector: Detector) -> dict:
    """What results.json says about the model that produced it."""
    return {
        "path": str(path),
        **detector.config(),
        "thresholds": detector.threshold_dicts(),
    }
