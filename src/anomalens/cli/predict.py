"""`anomalens predict MODEL INPUT... -o OUT`: inspect images, write results, masks, overlays.

Every run goes the same way, whatever computes the results: discover the inputs, skip those
the output folder already holds, let an engine (local, Ray, or the zero-shot batch) yield each
image's outcome as it completes, and write each one to the output folder as it comes
(`anomalens.batch`).
"""

import argparse
import functools
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from tqdm import tqdm

from anomalens.batch.folder import PredictionFolder, fingerprint, staging_folder
from anomalens.batch.local import BATCH, LocalEngine, ZeroShotEngine
from anomalens.batch.outcomes import Outcome
from anomalens.batch.sources import discover, is_uri
from anomalens.cli.options import (
    add_detector_options,
    add_runtime_options,
    detector_params,
    report_error,
    skipped_summary,
)
from anomalens.detector import Detector
from anomalens.errors import AnomalensError

ZERO_SHOT_METHOD = "anomalydino"
"""The zero-shot default: the default ensemble's coarse member alone. Mutual scoring compares
every pair of images patch by patch, and the fine member's stride-8 grid at full size holds
16 times the patches on 640 px images (256 times the work)."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the `predict` sub-parser."""
    parser = subparsers.add_parser(
        "predict",
        help="inspect images with a fitted model, or a batch with none (--zero-shot)",
        usage="anomalens predict MODEL INPUT... -o OUT [options]\n"
        "       anomalens predict --zero-shot INPUT... -o OUT [options]",
        description=(
            "Score images and write OUT/results.json (score, verdict, boxes per image), "
            "OUT/masks/*.png and OUT/overlays/*.png (heatmap and boxes over the image). Results "
            "are appended to OUT/results.jsonl as they are computed: rerunning the same command "
            "resumes, and a prediction of another model or other inputs is replaced whole once "
            "the new one is complete. A non-empty folder that is not a prediction is refused."
        ),
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="MODEL INPUT",
        help="the model folder written by `anomalens fit` (not with --zero-shot), then image "
        "files, folders, .txt lists of them (one a line) or URIs pyarrow reads (s3://...)",
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--format",
        choices=["json", "coco"],
        default="json",
        help="coco also writes OUT/coco.json (COCO detections with segmentation)",
    )
    parser.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="local: this process; ray: a pool of Ray actors (pip install 'anomalens[ray]')",
    )
    parser.add_argument("--address", help="Ray cluster to join (default: start a local one)")
    parser.add_argument("--workers", type=int, help="Ray actors (default: one per CPU)")
    parser.add_argument(
        "--batch-size", type=int, default=BATCH, help=f"images per batch (default: {BATCH})"
    )
    zero_shot = parser.add_argument_group(
        "zero-shot batch mode (no model: each image is scored against the other images)"
    )
    zero_shot.add_argument(
        "--zero-shot",
        action="store_true",
        help="inspect the inputs as one batch with no references; thresholds from the batch",
    )
    zero_shot.add_argument(
        "--refit",
        type=int,
        default=0,
        metavar="K",
        help="fit a model on the K lowest-scoring images judged OK and predict with it",
    )
    add_detector_options(zero_shot)
    add_runtime_options(parser)
    parser.set_defaults(func=run, method=None)


def run(args: argparse.Namespace) -> int:
    """Inspect every input; a bad file is reported and the rest go on; exit 1 if any failed."""
    if args.batch_size < 1:
        raise AnomalensError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.engine != "ray" and (args.address or args.workers):
        raise AnomalensError("--address and --workers are options of --engine ray")
    if not args.zero_shot and any([args.method, args.backbone, args.resolution, args.param]):
        raise AnomalensError(
            "--method, --backbone, --resolution and --param set up a --zero-shot detector; a "
            "model folder brings its own settings"
        )
    if not args.zero_shot and args.refit:
        raise AnomalensError("--refit picks references from a --zero-shot batch")
    inputs = [str(Path(i).absolute()) if not is_uri(i) else i for i in args.inputs]
    if args.zero_shot:
        detector, key, protected = zero_shot_detector(args, inputs)
    else:
        if len(inputs) < 2:
            raise AnomalensError("give the model folder and at least one input")
        model, inputs = Path(args.inputs[0]), inputs[1:]
        load = model_loader(args)
        detector = load()
        key, protected = {"model": fingerprint(model), "inputs": inputs}, [model]
    items, skipped = discover(inputs, [args.output, staging_folder(args.output)])
    for line in skipped_summary(skipped):
        print(line, file=sys.stderr)
    folder = PredictionFolder(args.output, key, protected)
    pending = folder.pending(items)
    if folder.resumed:
        print(f"resuming {args.output}: {folder.resumed} images already inspected")
    if args.zero_shot:
        engine = ZeroShotEngine(detector, items, args.refit)
    elif args.engine == "ray":
        from anomalens.batch.ray_engine import RayEngine

        engine = RayEngine(load, args.address, args.workers, args.batch_size)
    else:
        engine = LocalEngine(detector, args.batch_size)
    try:
        write(folder, engine.outcomes(pending), len(pending))
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: the results so far are in {folder.work}/results.jsonl; "
            "rerun the same command to resume",
            file=sys.stderr,
        )
        return 130
    summary = engine.summary() if args.zero_shot else model_summary(model, detector)
    names = detector.defect_types.names
    document = folder.finish(summary, names, skipped, args.format == "coco")
    flagged = sum(entry["verdict"] == "NG" for entry in document["images"])
    errors = document["errors"]
    print(
        f"{len(document['images'])} inspected, {flagged} NG, {len(errors)} failed; "
        f"see {args.output}"
    )
    if not items:
        print(f"error: no images found in {' '.join(args.inputs)}", file=sys.stderr)
    return 1 if errors or not items else 0


def zero_shot_detector(
    args: argparse.Namespace, inputs: list[str]
) -> tuple[Detector, dict, list[Path]]:
    """The unfitted detector whose features a --zero-shot batch is scored with, the key its
    prediction is resumed by, and the folders the output must keep off (none)."""
    if args.engine != "local":
        raise AnomalensError("--zero-shot scores one batch in this process: use --engine local")
    detector = Detector(
        method=args.method or ZERO_SHOT_METHOD,
        backbone=args.backbone,
        resolution=args.resolution,
        **detector_params(args.param),
    )
    return detector, {"zero_shot": {**detector.config(), "refit": args.refit}, "inputs": inputs}, []


def write(folder: PredictionFolder, outcomes: Iterator[Outcome], total: int) -> None:
    """Write each outcome as it comes, the bar counting images inspected, errors on their own
    lines."""
    with tqdm(total=total, desc="inspecting", unit="image") as bar:
        for outcome in outcomes:
            record = folder.add(outcome)
            if "error" in record:
                with bar.external_write_mode():
                    report_error(record["path"], AnomalensError(record["error"]))
            bar.update()


def model_loader(args: argparse.Namespace) -> Callable[[], Detector]:
    """What loads the model (the first input), here and in each Ray actor: picklable, and the
    one place the options that shape a loaded model go."""
    return functools.partial(Detector.load, Path(args.inputs[0]), args.runtime, args.device)


def model_summary(path: Path, detector: Detector) -> dict:
    """What results.json says about the model that produced it."""
    return {
        "path": str(path),
        **detector.config(),
        "thresholds": detector.threshold_dicts(),
    }
