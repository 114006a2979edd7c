"""`anomalens defects add|list|remove|train|untrain|threshold MODEL ...`: name defect types
from a few photos."""

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from anomalens.data import DatasetError
from anomalens.data.boxes import read_typed_box_file
from anomalens.defect_types import DefectTypeError, DefectTypes
from anomalens.defect_types.supervised import VARIANTS, CropClassifier
from anomalens.detector import Detector
from anomalens.errors import AnomalensError, ImageError
from anomalens.progress import spinner


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the `defects` sub-parser and its actions."""
    parser = subparsers.add_parser(
        "defects",
        help="name defect types from a few example photos",
        description=(
            "Register defect types with a saved model: from then on `predict` labels each "
            "detected region with its most similar type, or 'unknown' when it resembles none."
        ),
    )
    actions = parser.add_subparsers(dest="action", required=True)
    add = actions.add_parser(
        "add",
        help="register a defect type from example images (or add examples to it)",
        description=(
            "The defect in each example is its mask when --masks is given, else its boxes when "
            "--boxes is given, else the strongest region the model finds in the image. An "
            "unusable example is reported and the others are added; the command fails only "
            "when none is usable."
        ),
    )
    add.add_argument("model", type=Path, help="model folder written by `anomalens fit`")
    add.add_argument("name", help="the defect type's name")
    add.add_argument("images", type=Path, nargs="+", help="example images of the defect")
    add.add_argument(
        "--masks",
        type=Path,
        nargs="+",
        metavar="MASK",
        help="one mask per image, in the same order (nonzero pixels = defect)",
    )
    add.add_argument(
        "--boxes",
        type=boxes_argument,
        nargs="+",
        metavar="BOXES",
        help="one entry per image, in the same order: x0,y0,x1,y1 in pixels (x1, y1 exclusive; "
        "several boxes joined by ';', each an example), a boxes file ('x1 y1 x2 y2 [type]' "
        "per line, x2 and y2 inclusive as in DeepPCB; lines of another type are ignored), or "
        "'-' for the strongest detected region",
    )
    add.set_defaults(func=run_add)
    listing = actions.add_parser("list", help="show the registered defect types")
    listing.add_argument("model", type=Path, help="model folder")
    listing.set_defaults(func=run_list)
    remove = actions.add_parser("remove", help="forget a defect type")
    remove.add_argument("model", type=Path, help="model folder")
    remove.add_argument("name", help="the defect type's name")
    remove.set_defaults(func=run_remove)
    train = actions.add_parser(
        "train",
        help="fine-tune a CNN on the examples to choose each region's type",
        description=(
            "Fine-tune EfficientNet-Lite0 on crops around every registered example; from then "
            "on it chooses each detected region's type, and a region is still 'unknown' when "
            "it is unlike every type. It names shapes (as on printed circuit boards) better "
            "than the similarity rule once there are about five examples per type, and "
            "textures worse (docs/defect_types.md): the command first trains it on half of "
            "each type's examples, names the other half, and prints how often it and the "
            "similarity rule were right. Adding or removing a type drops the classifier."
        ),
    )
    train.add_argument("model", type=Path, help="model folder")
    train.add_argument(
        "--variant",
        choices=VARIANTS,
        default=CropClassifier.variant,
        help="plain cross-entropy, class-weighted, or augmented rare types (default: %(default)s)",
    )
    train.add_argument(
        "--steps",
        type=int,
        default=CropClassifier.steps,
        help="optimiser steps (default: %(default)s)",
    )
    train.add_argument("--seed", type=int, default=0, help="seed of the training (default: 0)")
    train.set_defaults(func=run_train)
    untrain = actions.add_parser(
        "untrain", help="drop the trained classifier: name types by similarity again"
    )
    untrain.add_argument("model", type=Path, help="model folder")
    untrain.set_defaults(func=run_untrain)
    threshold = actions.add_parser(
        "threshold",
        help="set the similarity below which a region is 'unknown'",
        description="Set the unknown threshold by hand, or 'auto' to calibrate it from the "
        "examples again (the default).",
    )
    threshold.add_argument("model", type=Path, help="model folder")
    threshold.add_argument("value", type=threshold_argument, help="a similarity, or 'auto'")
    threshold.set_defaults(func=run_threshold)


def threshold_argument(text: str) -> float | None:
    """argparse type of a threshold: a number, or None for 'auto'."""
    if text == "auto":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {text!r}") from None


def boxes_argument(text: str) -> list[tuple[int, int, int, int]] | Path | None:
    """argparse type of one image's boxes: a list of bounds, a boxes file, or None for '-'."""
    if text == "-":
        return None
    if "," not in text:
        return Path(text)
    boxes = []
    for part in text.split(";"):
        try:
            x0, y0, x1, y1 = (int(value) for value in part.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected x0,y0,x1,y1 whole numbers (or a boxes file), got {part!r}"
            ) from None
        if not (x0 < x1 and y0 < y1):
            raise argparse.ArgumentTypeError(f"box {part!r} needs x0 < x1 and y0 < y1")
        boxes.append((x0, y0, x1, y1))
    return boxes


def file_boxes(path: Path, name: str) -> list[tuple[int, int, int, int]]:
    """The boxes of type `name` (or of no type) in a boxes file; ImageError names the file when
    it cannot be read or holds none."""
    try:
        typed = read_typed_box_file(path)
    except DatasetError as error:
        raise ImageError(path, str(error).removeprefix(f"{path}: ")) from None
    boxes = [bounds for bounds, kind in typed if kind in (None, name)]
    if not boxes:
        raise ImageError(path, f"no box of type {name!r}")
    return boxes


def run_add(args: argparse.Namespace) -> int:
    """Add the usable examples to the type, save the model, show the types; report the
    unusable ones on stderr."""
    count = len(args.images)
    for given, kind in ((args.masks, "masks"), (args.boxes, "boxes")):
        if given and len(given) != count:
            raise AnomalensError(f"{len(given)} {kind} given for {count} images")
    skipped: list[str] = []
    images, masks, boxes = list(args.images), args.masks, args.boxes
    if boxes:
        read: list = []
        for index, entry in enumerate(boxes):
            try:
                read.append(file_boxes(entry, args.name) if isinstance(entry, Path) else entry)
            except ImageError as error:
                skipped.append(f"{error}; {images[index]} skipped")
                read.append(False)
        keep = [i for i, entry in enumerate(read) if entry is not False]
        images, boxes = [images[i] for i in keep], [read[i] for i in keep]
        masks = [masks[i] for i in keep] if masks else None
        if not images:
            raise DefectTypeError(f"no usable example of {args.name!r}: " + "; ".join(skipped))

    def add(detector: Detector) -> None:
        try:
            detector.add_defect_type(args.name, images, masks, boxes, skipped=skipped)
        finally:
            for problem in skipped:
                print(f"skipped: {problem}", file=sys.stderr)

    return _update(args.model, add)


def run_list(args: argparse.Namespace) -> int:
    """Show the model's defect types."""
    print("\n".join(describe(Detector.load(args.model).defect_types)))
    return 0


def run_remove(args: argparse.Namespace) -> int:
    """Forget the type, save the model, show the types."""
    return _update(args.model, lambda detector: detector.remove_defect_type(args.name))


def run_train(args: argparse.Namespace) -> int:
    """Check the classifier on held-out examples, train it on all, save the model."""

    def train(detector: Detector) -> None:
        types = detector.defect_types
        classifier = CropClassifier(args.variant, steps=args.steps, seed=args.seed)
        with spinner("naming held-out examples"):
            checked = types.held_out_accuracy(classifier)
        with spinner(f"training on {sum(map(len, types.examples.values()))} examples"):
            types.train(classifier)
        if checked is None:
            print("not checked on held-out examples: a type has only one example")
            return
        cnn, similarity = checked
        print(
            f"held-out examples named right: classifier {cnn:.0%}, similarity rule "
            f"{similarity:.0%} (each half of every type's examples named by both trained on "
            "the other)"
        )
        if cnn < similarity:
            print(
                f"the similarity rule did better here; `anomalens defects untrain {args.model}` "
                "goes back to it"
            )

    return _update(args.model, train)


def run_untrain(args: argparse.Namespace) -> int:
    """Drop the classifier, save the model."""

    def untrain(detector: Detector) -> None:
        if detector.defect_types.classifier is None:
            raise DefectTypeError(f"{args.model} has no trained classifier")
        detector.defect_types.classifier = None

    return _update(args.model, untrain)


def run_threshold(args: argparse.Namespace) -> int:
    """Set or reset the unknown threshold, save the model, show the types."""

    def set_threshold(detector: Detector) -> None:
        detector.defect_types.unknown_threshold = args.value

    return _update(args.model, set_threshold)


def describe(types: DefectTypes) -> list[str]:
    """Lines telling people which types a model names and when a region is "unknown"."""
    if not types.names:
        return ["no defect types registered"]
    lines = [f"{name}: {len(types.examples[name])} examples" for name in types.names]
    if types.classifier is not None:
        lines.append(
            f"types chosen by a trained classifier ({types.classifier.variant}, "
            f"{types.classifier.steps} steps)"
        )
    threshold = types.threshold
    if types.unknown_threshold is not None:
        how = "set by hand"
    elif threshold is not None:
        how = f"calibrated on {len(types.held_out_similarities())} held-out examples"
    else:
        lines.append(
            "unknown threshold not calibrated (no type has two examples): every region gets "
            "its most similar type"
        )
        return lines
    lines.append(f"'unknown' below similarity {threshold:.3f} ({how})")
    return lines


def _update(model: Path, change: Callable[[Detector], object]) -> int:
    """Load `model`, apply `change(detector)`, save it back and show its types."""
    detector = Detector.load(model)
    change(detector)
    detector.save(model)
    print("\n".join(describe(detector.defect_types)))
    return 0
