"""`anomalens defects add|list|remove|threshold MODEL ...`: name defect types from a few photos."""

import argparse
from collections.abc import Callable
from pathlib import Path

from anomalens.defect_types import DefectTypes
from anomalens.detector import Detector
from anomalens.errors import AnomalensError


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
            "The defect in each example is its mask when --masks is given, else the strongest "
            "region the model finds in the image."
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
    add.set_defaults(func=run_add)
    listing = actions.add_parser("list", help="show the registered defect types")
    listing.add_argument("model", type=Path, help="model folder")
    listing.set_defaults(func=run_list)
    remove = actions.add_parser("remove", help="forget a defect type")
    remove.add_argument("model", type=Path, help="model folder")
    remove.add_argument("name", help="the defect type's name")
    remove.set_defaults(func=run_remove)
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


def run_add(args: argparse.Namespace) -> int:
    """Add the examples to the type, save the model, show the types."""
    if args.masks and len(args.masks) != len(args.images):
        raise AnomalensError(f"{len(args.masks)} masks given for {len(args.images)} images")
    return _update(args.model, lambda d: d.add_defect_type(args.name, args.images, args.masks))


def run_list(args: argparse.Namespace) -> int:
    """Show the model's defect types."""
    print("\n".join(describe(Detector.load(args.model).defect_types)))
    return 0


def run_remove(args: argparse.Namespace) -> int:
    """Forget the type, save the model, show the types."""
    return _update(args.model, lambda detector: detector.remove_defect_type(args.name))


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
