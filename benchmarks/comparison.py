"""Compare the autoencoder baseline with the feature-based methods and write docs/comparison.md.

    .venv/bin/python benchmarks/comparison.py --data ../shared/data/mtd \\
        --methods autoencoder anomalydino patchcore padim --shots 4 16 full --seeds 0 1 2

Every method runs the evaluation protocol at its default settings into
<reports>/<method>-<resolution>/, the folders benchmarks/results_table.py writes, so that after
the results table `--resume` only reads them. Then one detector per method is fitted at the
--show-shots setting (16) with the first seed: saved to a temporary folder for its size on disk,
and run on the same test images (the first of each defect type and the first good one) for the
overlays written to docs/comparison/. The document holds the command, the table, the sizes,
the overlays, a reading generated from the figures and a hand-written reading that
regeneration keeps (between its markers). --resume reuses report folders already evaluated
with the same settings (or more shots).
"""

import argparse
import inspect
import io
import json
import os
import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

from anomalens.backbones import weights_status
from anomalens.data import Dataset, Sample, discover
from anomalens.data.masks import load_mask
from anomalens.data.shots import FULL, Shots, parse_shots
from anomalens.detector import Detector
from anomalens.evaluation import EvaluationSettings, evaluate, finished_report
from anomalens.evaluation.protocol import seeded_references
from anomalens.evaluation.report import number, stat, table_header, table_row
from anomalens.io.atomic import write_bytes, write_text
from anomalens.io.images import load_image
from anomalens.methods import METHODS as METHODS_BY_NAME
from anomalens.visualize import overlay

METHODS = ["autoencoder", "anomalydino", "patchcore", "padim"]
SHOTS: list[Shots] = [4, 16, FULL]
SEEDS = [0, 1, 2]
METRICS = {"image_auroc": "image AUROC", "pixel_auroc": "pixel AUROC", "aupro": "AUPRO@0.3"}
TIMINGS = {"fit_seconds": "fit s", "ms_per_image": "ms / image"}
RANKED = [
    ("image_auroc", "best image AUROC", True),
    ("pixel_auroc", "best pixel AUROC", True),
    ("aupro", "best AUPRO@0.3", True),
    ("ms_per_image", "fastest inference", False),
    ("fit_seconds", "fastest fit", False),
]
"""(name, words, whether higher is better) of each figure the generated reading ranks."""
UNITS = {"fit_seconds": " s", "ms_per_image": " ms / image"} | dict.fromkeys(METRICS, "")
THUMBNAIL = (240, 180)
"""Largest width and height of the overlay PNGs."""
TRUTH_COLOUR = (40, 220, 40)
BEGIN_NOTES = "<!-- hand-written reading: kept when benchmarks/comparison.py regenerates this -->"
END_NOTES = "<!-- end of hand-written reading -->"


@dataclass
class Row:
    """The evaluation of one method at one shots setting.

    Attributes:
        method: the method name.
        shots: the shots setting.
        seeds: the seeds its statistics are over.
        mean: metric or timing name -> {"mean", "std"} over seeds.
        params: the method's parameters in the first run (its `config()`).
    """

    method: str
    shots: Shots
    seeds: list[int]
    mean: dict[str, dict[str, float | None]]
    params: dict[str, Any]


def settings_for(method: str, shots: list[Shots], seeds: list[int]) -> EvaluationSettings:
    """Detector defaults for `method`, its default resolution named explicitly so that the
    report folder is the one benchmarks/results_table.py writes for it."""
    resolution = inspect.signature(METHODS_BY_NAME[method]).parameters["resolution"].default
    return EvaluationSettings(method=method, resolution=resolution, shots=shots, seeds=seeds)


def evaluate_method(
    data: Path, reports: Path, method: str, shots: list[Shots], seeds: list[int], resume: bool
) -> list[Row]:
    """Run (or with `resume`, reuse) the protocol for one method into
    reports/<method>-<resolution>, one row per shots setting.

    Args:
        data: the dataset root.
        reports: the folder of every method's reports.
        method: the method.
        shots: the shots settings.
        seeds: the seeds.
        resume: keep a finished report of these settings (or of more shots) instead of
            running again.
    """
    settings = settings_for(method, shots, seeds)
    folder = reports / f"{method}-{settings.resolution}"
    report = finished_report(data, folder, settings) if resume else None
    if report is None:
        evaluate(data, folder, settings)
        report = json.loads((folder / "metrics.json").read_text())
    params = report["detector"]["method_params"]
    return [
        Row(method, entry["shots"], entry["seeds"], entry["mean"], params)
        for entry in report["summary"]
        if str(entry["shots"]) in map(str, shots)
    ]


def showcase(dataset: Dataset) -> list[Sample]:
    """The first test sample of each defect type, then the first good one."""
    first = {}
    for sample in dataset.test:
        first.setdefault(sample.defect_type, sample)
    good = first.pop("good")
    return [*first.values(), good]


def test_subset(dataset: Dataset, every: int, folder: Path) -> Path:
    """An MVTec-AD category in `folder` that keeps every `every`-th test image of `dataset` per
    defect type (in path order, starting with the first) with its mask, and all its references.

    Every file is a symbolic link to the original, so the k-shot draws stay the same.
    """
    root = folder / dataset.root.name
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    (root / "train").symlink_to(dataset.root.resolve() / "train", target_is_directory=True)
    for defect_type in dict.fromkeys(sample.defect_type for sample in dataset.test):
        of_type = [sample for sample in dataset.test if sample.defect_type == defect_type]
        for sample in of_type[::every]:
            links = [(Path("test") / defect_type, sample.path)]
            if sample.mask_path:
                links.append((Path("ground_truth") / defect_type, sample.mask_path))
            for place, target in links:
                (root / place).mkdir(parents=True, exist_ok=True)
                (root / place / target.name).symlink_to(target.resolve())
    return root


def fitted_detector(dataset: Dataset, method: str, shots: Shots, seed: int) -> Detector:
    """A detector of `method` fitted on the references the protocol draws for `shots`, `seed`."""
    _, images = seeded_references(dataset, shots, seed, [])
    return settings_for(method, [shots], [seed]).build_detector(seed).fit(images)


def saved_megabytes(detector: Detector) -> float:
    """Size of the detector's saved folder, in MB."""
    with tempfile.TemporaryDirectory() as folder:
        files = detector.save(Path(folder) / "model").iterdir()
        return sum(path.stat().st_size for path in files) / 1e6


def backbone_megabytes(detector: Detector) -> float | None:
    """Size of the backbone weights file the detector loads at run time (None: no backbone)."""
    backbone = detector.method.config().get("backbone")
    for entry in weights_status():
        if entry["name"] == backbone and entry["available"]:
            return Path(str(entry["path"])).stat().st_size / 1e6
    return None


def png(array: np.ndarray) -> bytes:
    """`array` as PNG bytes, shrunk to fit THUMBNAIL."""
    picture = Image.fromarray(array)
    picture.thumbnail(THUMBNAIL)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def with_truth(image: np.ndarray, sample: Sample) -> np.ndarray:
    """`image` with its ground-truth region outlined (unchanged for good images)."""
    if sample.mask_path is None:
        return image
    mask = load_mask(sample.mask_path, image.shape[:2])
    outline = ndimage.binary_dilation(mask, iterations=2) & ~mask
    outlined = image.copy()
    outlined[outline] = TRUTH_COLOUR
    return outlined


def write_pictures(
    column: str, samples: list[Sample], pictures: list[np.ndarray], folder: Path
) -> list[str]:
    """Write one column of the overlay table as PNGs; return their file names.

    Args:
        column: "input" or the method name.
        samples: the test samples shown.
        pictures: the picture of each sample in this column.
        folder: where the PNGs go.
    """
    names = [f"{sample.defect_type}-{sample.path.stem}-{column}.png" for sample in samples]
    for name, picture in zip(names, pictures, strict=True):
        write_bytes(folder / name, png(picture))
    return names


def overlays(detector: Detector, images: list[np.ndarray]) -> list[np.ndarray]:
    """The detector's overlay of each image, on the scale of its pixel threshold."""
    threshold = detector.thresholds["pixel"].value
    return [
        overlay(image, result, threshold)
        for image, result in zip(images, detector.predict(images), strict=True)
    ]


def metrics_table(rows: list[Row]) -> list[str]:
    """The mean ± std table, one line per shots setting and method."""
    headings = ["shots", "method", "seeds", *METRICS.values(), *TIMINGS.values()]
    lines = [table_header(headings)]
    for row in rows:
        values = [stat(row.mean[name]) for name in METRICS]
        timings = [number(row.mean[name]["mean"]) for name in TIMINGS]
        seeds = ", ".join(map(str, row.seeds))
        lines.append(table_row([str(row.shots), row.method, seeds, *values, *timings]))
    return lines


def configurations(rows: list[Row]) -> list[str]:
    """One bullet per method and distinct parameter set (seed aside), naming the shots settings
    it ran at."""
    shots_of: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        params = ", ".join(f"{key}={value}" for key, value in row.params.items() if key != "seed")
        shots_of.setdefault((row.method, params), []).append(str(row.shots))
    return [
        f"- {method} ({', '.join(shots)} shots): {params}"
        for (method, params), shots in shots_of.items()
    ]


def best(rows: list[Row], name: str, highest: bool) -> tuple[list[str], float] | None:
    """The methods whose mean of `name` is best as printed (ties share it) and that mean; None
    when no row has it."""
    printed = {
        row.method: float(number(row.mean[name]["mean"]))
        for row in rows
        if row.mean[name]["mean"] is not None
    }
    if not printed:
        return None
    value = max(printed.values()) if highest else min(printed.values())
    return [method for method, mean in printed.items() if mean == value], value


def generated_reading(rows: list[Row], sizes: dict[str, float]) -> list[str]:
    """One bullet per shots setting naming the best method per metric and the fastest, and how
    far the autoencoder is from the best; then the smallest model."""
    lines = []
    for shots in dict.fromkeys(row.shots for row in rows):
        chosen = [row for row in rows if row.shots == shots]
        parts = []
        for name, label, highest in RANKED:
            if winners := best(chosen, name, highest):
                methods, value = winners
                parts.append(f"{label} **{', '.join(methods)}** ({number(value)}{UNITS[name]})")
        lines.append(f"- {shots} shots: " + "; ".join(parts) + ".")
        lines += autoencoder_gap(chosen)
    if sizes:
        smallest = min(sizes, key=sizes.__getitem__)
        lines.append(f"- Smallest saved model: **{smallest}** ({sizes[smallest]:.2f} MB).")
    return lines


def autoencoder_gap(rows: list[Row]) -> list[str]:
    """A sub-bullet: the autoencoder's image and pixel AUROC against the best other method."""
    baseline = next((row for row in rows if row.method == "autoencoder"), None)
    others = [row for row in rows if row.method != "autoencoder"]
    if baseline is None or not others:
        return []
    gaps = []
    for name in ("image_auroc", "pixel_auroc"):
        winners = best(others, name, highest=True)
        own = baseline.mean[name]["mean"]
        if winners and own is not None:
            methods, value = winners
            gaps.append(
                f"{METRICS[name]} {own:.3f} ({own - value:+.3f} against {', '.join(methods)})"
            )
    return [f"  - autoencoder: {', '.join(gaps)}."] if gaps else []


def kept_notes(document: Path) -> str:
    """The hand-written reading of the existing document (empty when there is none)."""
    if not document.is_file():
        return ""
    text = document.read_text(encoding="utf-8")
    if BEGIN_NOTES not in text or END_NOTES not in text:
        return ""
    return text.split(BEGIN_NOTES, 1)[1].split(END_NOTES, 1)[0].strip()


def not_run(methods: list[str], shots: list[Shots], seeds: list[int], test_every: int) -> str:
    """A sentence naming the parts of the full protocol that were left out."""
    subset = [f"test images other than every {test_every}th per folder"] if test_every > 1 else []
    missing = subset + [
        f"{label} {', '.join(map(str, left))}"
        for label, left in (
            ("methods", [m for m in METHODS if m not in methods]),
            ("shots", [s for s in SHOTS if s not in shots]),
            ("seeds", [s for s in SEEDS if s not in seeds]),
        )
        if left
    ]
    if not missing:
        return "Every setting of the full protocol was run."
    return f"**Not run** (left out to save compute): {'; '.join(missing)}."


def document(
    command: str,
    args: argparse.Namespace,
    test_set: str,
    rows: list[Row],
    sizes: dict[str, tuple[float, float | None]],
    samples: list[Sample],
    pictures: dict[str, list[str]],
    notes: str,
) -> str:
    """The Markdown of docs/comparison.md.

    Args:
        command: the command that generated it.
        args: the parsed arguments.
        test_set: which test images the evaluation scored, in words.
        rows: every evaluated method × shots setting.
        sizes: method -> (saved model MB, backbone weights MB or None).
        samples: the test samples shown in the overlays.
        pictures: column ("input" or method) -> the PNG name of each sample.
        notes: the hand-written reading.
    """
    figures = Path(os.path.relpath(args.figures, args.output.parent)).as_posix()
    shown = args.show_shots
    lines = [
        "# Autoencoder baseline versus the feature-based methods",
        "",
        f"Generated by `{command}`.",
        "",
        f"Data: `{args.data}`, {test_set}; mean ± std over seeds (population std, 0 for one "
        "seed). Detector defaults (backbone efficientnet_lite0, each method's default resolution). "
        f"Reports: `{args.reports}/<method>-<resolution>/`.",
        "",
        not_run(args.methods, args.shots, args.seeds, args.test_every),
        "",
        f"Timings: wall time on this machine ({os.cpu_count()} CPU cores, shared with other "
        "jobs while it ran), so compare them with each other rather than with other machines. "
        "ms / image covers `Detector.predict` on the test set (maps, masks and boxes included).",
        "",
        "## Accuracy and speed",
        "",
        *metrics_table(rows),
        "",
        "Method parameters:",
        "",
        *configurations(sorted(rows, key=lambda row: METHODS.index(row.method))),
        "",
        f"## Model size on disk ({shown} shots, seed {args.seeds[0]})",
        "",
        "The saved detector folder (`Detector.save`). Feature-based methods also load their "
        "backbone's weights at run time, one file shared by every model; the autoencoder "
        "carries all its weights in the folder.",
        "",
        table_header(["method", "saved model MB", "backbone weights MB"]),
        *(
            table_row([method, f"{saved:.2f}", "–" if backbone is None else f"{backbone:.1f}"])
            for method, (saved, backbone) in sizes.items()
        ),
        "",
        f"## Overlays ({shown} shots, seed {args.seeds[0]})",
        "",
        "The same test images for every method: the first of each defect type and the first "
        "good one. Input: ground truth outlined in green. Overlays: the heat scale puts each "
        "detector's pixel threshold at mid-range; boxes are the detected regions.",
        "",
        table_header(["image", *pictures]),
        *(
            table_row(
                [f"{sample.defect_type}<br>{sample.path.name}"]
                + [f"![{names[row]}]({figures}/{names[row]})" for names in pictures.values()]
            )
            for row, sample in enumerate(samples)
        ),
        "",
        "## Reading (generated from the figures above)",
        "",
        *generated_reading(rows, {method: saved for method, (saved, _) in sizes.items()}),
        "",
        "## Reading (hand-written)",
        "",
        BEGIN_NOTES,
        notes or "_Not written yet: look at the figures and overlays, then write it here._",
        END_NOTES,
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/mtd"))
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--shots", type=parse_shots, nargs="+", default=SHOTS)
    parser.add_argument("--seeds", type=int, nargs="+", default=SEEDS)
    parser.add_argument("--reports", type=Path, default=Path("reports/table"))
    parser.add_argument("--figures", type=Path, default=Path("docs/comparison"))
    parser.add_argument(
        "--show-shots", type=parse_shots, default=16, help="shots of the sized and shown models"
    )
    parser.add_argument("-o", "--output", type=Path, default=Path("docs/comparison.md"))
    parser.add_argument("--test-every", type=int, default=1, help="keep every n-th test image")
    parser.add_argument("--resume", action="store_true", help="reuse finished report folders")
    args = parser.parse_args()
    command = shlex.join([".venv/bin/python", "benchmarks/comparison.py", *sys.argv[1:]])
    (dataset,) = discover(args.data)
    data = args.data
    if args.test_every > 1:  # the subset's data and reports live apart from the full set's
        args.reports = args.reports / f"test-every{args.test_every}"
        data = test_subset(dataset, args.test_every, args.reports)
    kept = len(discover(data)[0].test)
    test_set = f"{kept} of the {len(dataset.test)} test images"
    if args.test_every > 1:
        test_set += f" (every {args.test_every}th of each test folder, the first included)"
    rows = [
        row
        for method in args.methods
        for row in evaluate_method(data, args.reports, method, args.shots, args.seeds, args.resume)
    ]
    rows.sort(key=lambda row: [str(s) for s in args.shots].index(str(row.shots)))
    samples = showcase(dataset)
    images = [load_image(sample.path) for sample in samples]
    inputs = [with_truth(image, sample) for image, sample in zip(images, samples, strict=True)]
    pictures = {"input": write_pictures("input", samples, inputs, args.figures)}
    sizes: dict[str, tuple[float, float | None]] = {}
    for method in args.methods:
        detector = fitted_detector(dataset, method, args.show_shots, args.seeds[0])
        sizes[method] = (saved_megabytes(detector), backbone_megabytes(detector))
        pictures[method] = write_pictures(method, samples, overlays(detector, images), args.figures)
    notes = kept_notes(args.output)
    text = document(command, args, test_set, rows, sizes, samples, pictures, notes)
    write_text(args.output, text)


if __name__ == "__main__":
    main()
