"""`anomalens evaluate-types DATA`: how well defect types are named from a few examples; with
`--boxes`, end to end: the detector's boxes named and scored with DeepPCB's typed rule."""

import argparse
from dataclasses import asdict
from pathlib import Path

from anomalens.cli.options import add_detector_options, detector_params
from anomalens.data import Dataset, DatasetError, discover
from anomalens.data.shots import seeded_order, shot_count
from anomalens.defect_types.episodes import (
    LOGISTIC_REGRESSION,
    ClassifierResult,
    Estimate,
    run_episodes,
)
from anomalens.defect_types.labelled import REGION_SOURCES, embed_defects
from anomalens.defect_types.registry import DEFAULT_RULE
from anomalens.defect_types.supervised import VARIANTS, CropClassifier
from anomalens.detector import Detector
from anomalens.errors import ConfigError
from anomalens.evaluation.typed_boxes import TypedBoxCounts
from anomalens.evaluation.typed_report import typed_report, typed_summary
from anomalens.evaluation.typed_runs import ALL, embed_test_set, test_samples_of
from anomalens.evaluation.typed_runs import run_episodes as run_typed_episodes
from anomalens.io.atomic import write_json, write_text
from anomalens.io.images import load_image

METRIC_LABELS = {
    "accuracy": "accuracy",
    "macro_f1": "macro-F1",
    "unknown_auroc": "unknown AUROC",
    "false_unknown_rate": "known called unknown",
    "unknown_recall": "unknown called unknown",
}
CLASSIFIER_LABELS = {
    "prototype": "nearest prototype",
    "example": "nearest example",
    "both": "prototype + example",
    LOGISTIC_REGRESSION: "logistic regression (supervised)",
}
MODE_TITLES = {"closed_set": "Closed set", "open_set": "Open set (one type held out per episode)"}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the `evaluate-types` sub-parser."""
    parser = subparsers.add_parser(
        "evaluate-types",
        help="measure defect-type naming with few-shot episodes on a labelled dataset",
        description=(
            "Embed each defective test image's region once (DATA is one MVTec-AD category; "
            "its test/<type> folders name the types), then run N-way k-shot episodes: every "
            "matching rule beside a logistic-regression classifier trained on the same shots. "
            "Writes metrics.json and report.md to the output folder."
        ),
    )
    parser.add_argument("data", type=Path, help="MVTec-AD category folder")
    parser.add_argument(
        "--shots",
        type=shots_value,
        nargs="+",
        default=[5],
        help="examples per type and episode; with --boxes several values, 'all' for every "
        "example of the episode's pool (default: 5)",
    )
    parser.add_argument("--episodes", type=int, default=100, help="number of episodes")
    parser.add_argument(
        "--boxes",
        action="store_true",
        help="end to end: name the detector's boxes on the test images from examples' "
        "ground-truth boxes (boxes/ folder, annotations.json, or mask components) and score "
        "them with DeepPCB's rule (IoU > 0.33 with a box of the same type); --regions and "
        "--open-set do not apply",
    )
    parser.add_argument(
        "--classifier",
        choices=VARIANTS,
        help="with --boxes: name the boxes by a CNN trained on each episode's example crops "
        "(as `defects train` does) instead of the similarity rule",
    )
    parser.add_argument(
        "--open-set",
        action="store_true",
        help="also run episodes holding one type out, which should come back 'unknown'",
    )
    parser.add_argument(
        "--regions",
        choices=REGION_SOURCES,
        default="masks",
        help="defect regions from the ground-truth masks or the detector (default: %(default)s)",
    )
    parser.add_argument(
        "--model", type=Path, help="use this fitted model instead of fitting one on train/good"
    )
    parser.add_argument(
        "--good",
        type=int,
        help="good images the detector is fitted on (seeded draw; default: 16 with --boxes, "
        "else 4)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        nargs="+",
        default=[0],
        help="seed of the draws and the detector; with --boxes several, a detector each",
    )
    add_detector_options(parser)
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("types-evaluation"),
        help="report folder (default: %(default)s)",
    )
    parser.set_defaults(func=run)


def shots_value(text: str) -> int | str:
    """argparse type of a shots value: a positive number or 'all'."""
    if text == ALL:
        return ALL
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number or {ALL!r}, got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    """Embed, run the episodes, write and print the report."""
    if args.boxes:
        return run_boxes(args)
    if len(args.shots) > 1 or args.shots[0] == ALL or len(args.seed) > 1 or args.classifier:
        raise ConfigError("several --shots or --seed values, 'all' and --classifier need --boxes")
    args.shots, args.seed = args.shots[0], args.seed[0]
    dataset = single_dataset(args.data)
    detector = Detector.load(args.model) if args.model else fitted_detector(dataset, args, 4)
    regions = embed_defects(dataset, detector, args.regions).with_more_than(args.shots)
    embedder = detector.defect_types.embedder
    settings = {"shots": args.shots, "episodes": args.episodes, "seed": args.seed}
    outcomes = {"closed_set": run_episodes(regions.embeddings, regions.labels, **settings)}
    if args.open_set:
        outcomes["open_set"] = run_episodes(
            regions.embeddings, regions.labels, open_set=True, **settings
        )
    summary = {
        "data": str(args.data),
        "regions": args.regions,
        "detector": detector.config(),
        "embedder": {**embedder.config(), "levels": list(embedder.extractor.levels)},
        **settings,
        "types": {name: regions.labels.count(name) for name in sorted(set(regions.labels))},
        "skipped": regions.skipped,
        **{mode: [asdict(result) for result in results] for mode, results in outcomes.items()},
    }
    write_json(args.output / "metrics.json", summary)
    report = markdown_report(summary, outcomes)
    write_text(args.output / "report.md", report)
    print(report)
    return 0


def single_dataset(folder: Path) -> Dataset:
    """The one MVTec-AD category at `folder`."""
    datasets = discover(folder)
    if len(datasets) != 1 or datasets[0].layout != "mvtec":
        raise DatasetError(f"{folder}: expected one MVTec-AD category (train/good, test/<type>)")
    return datasets[0]


def fitted_detector(
    dataset: Dataset, args: argparse.Namespace, good: int, seed: int | None = None
) -> Detector:
    """A detector fitted on `args.good` (else `good`) seeded good images of `dataset`."""
    seed = args.seed if seed is None else seed
    count = shot_count(args.good or good, dataset.pool)
    detector = Detector(
        method=args.method,
        backbone=args.backbone,
        resolution=args.resolution,
        seed=seed,
        **detector_params(args.param),
    )
    references = seeded_order(dataset.pool, seed)[:count]
    images = [load_image(path) for path in references]
    return detector.fit(images, progress=True, names=[str(path) for path in references])


def run_boxes(args: argparse.Namespace) -> int:
    """Per seed: fit (or load), predict and embed the test set once, run the episodes; write
    and print the typed box report."""
    dataset = single_dataset(args.data)
    skipped = list(dataset.problems)
    episodes: dict[str, list[TypedBoxCounts]] = {str(value): [] for value in args.shots}
    classifier = CropClassifier(args.classifier) if args.classifier else None
    config = None
    for seed in args.seed:
        detector = (
            Detector.load(args.model) if args.model else fitted_detector(dataset, args, 16, seed)
        )
        config = detector.config()
        references = [Path(name) for name in detector.references]
        images = embed_test_set(detector, test_samples_of(dataset, references), skipped)
        outcome = run_typed_episodes(images, args.shots, args.episodes, seed, classifier)
        for value, counts in outcome.items():
            episodes[value] += counts
    summary = typed_summary(args, config, episodes, skipped)
    write_json(args.output / "metrics.json", summary)
    report = typed_report(summary)
    write_text(args.output / "report.md", report)
    print(report)
    return 0


def markdown_report(summary: dict, outcomes: dict[str, list[ClassifierResult]]) -> str:
    """The report: settings, a metrics table per mode and the default rule's confusion matrix."""
    types, embedder = list(summary["types"]), summary["embedder"]
    counts = ", ".join(f"{name} {count}" for name, count in summary["types"].items())
    lines = [
        f"# Defect types: {len(types)}-way {summary['shots']}-shot, {summary['episodes']} episodes",
        "",
        f"- data: {summary['data']} ({counts}; {len(summary['skipped'])} images skipped)",
        f"- regions: {summary['regions']}, weighted by the detector's anomaly maps",
        f"- features: {embedder['backbone']} {'+'.join(embedder['levels'])} at "
        f"{embedder['resolution']} px",
        "- means over episodes with 95% confidence intervals",
    ]
    for mode, results in outcomes.items():
        metrics = list(results[0].metrics)
        lines += [
            "",
            f"## {MODE_TITLES[mode]}",
            "",
            "| classifier | " + " | ".join(METRIC_LABELS[m] for m in metrics) + " |",
            "|---" * (len(metrics) + 1) + "|",
        ]
        for result in results:
            cells = [_cell(result.metrics.get(metric)) for metric in metrics]
            lines.append(f"| {_label(result.name)} | " + " | ".join(cells) + " |")
    default = next(r for r in outcomes["closed_set"] if r.name == DEFAULT_RULE)
    lines += [
        "",
        f"## Confusion matrix ({_label(DEFAULT_RULE)}, closed set, summed over episodes)",
        "",
        "| true \\ predicted | " + " | ".join(types) + " |",
        "|---" * (len(types) + 1) + "|",
    ]
    lines += [
        f"| {name} | " + " | ".join(map(str, row)) + " |"
        for name, row in zip(types, default.confusion, strict=True)
    ]
    if summary["skipped"]:
        lines += ["", "## Skipped", "", *(f"- {problem}" for problem in summary["skipped"])]
    return "\n".join(lines) + "\n"


def _label(name: str) -> str:
    label = CLASSIFIER_LABELS[name]
    return f"{label} (default)" if name == DEFAULT_RULE else label


def _cell(estimate: Estimate | None) -> str:
    if estimate is None:
        return "–"
    return f"{estimate.mean:.3f} [{estimate.low:.3f}, {estimate.high:.3f}]"
