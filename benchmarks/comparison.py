"""Every family side by side on every dataset, and docs/comparison.md.

    OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/comparison.py \\
        --data ../shared/data/mtd ../shared/data/mpdd_plate ../shared/data/deeppcb_20085 \\
        --methods autoencoder feature_autoencoder fanogan stfpm efficientad fastflow \\
        --shots 1 16 full --seeds 0 1 2

Each shots setting × dataset × method × seed, in that order (the order the options list them
in), runs the evaluation protocol at the method's defaults into
<reports>/<dataset>/<method>-<resolution>/<shots>-shot-seed<k>/. Finished runs are kept, so the
grid can be filled a piece at a time (the runs that matter most first, in several processes);
datasets of more than --test-cap (200) test images keep every n-th of each test folder.
`--collect` only reads what has finished, naming what has not in the document. Sizes are the
weights a fitted model saves (fixed-shape networks: measured on untrained ones); with
`--overlays`, one detector per method is also fitted on the first dataset at --show-shots (16)
with the first seed, for the saved size of methods whose model grows with the references and
for the overlays written to docs/comparison/ (the same test images for every method: the first
of each defect type and the first good one). The document holds the command, one table per
dataset, the sizes, the overlays, a reading generated from the figures and a hand-written
reading that regeneration keeps (between its markers).
"""

import argparse
import inspect
import io
import json
import math
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
from anomalens.evaluation.report import table_header, table_row
from anomalens.io.atomic import write_bytes, write_text
from anomalens.io.images import load_image
from anomalens.methods import METHODS as METHODS_BY_NAME
from anomalens.methods import create_method
from anomalens.methods.autoencoder import AutoencoderMethod
from anomalens.methods.trained import TrainedMethod
from anomalens.visualize import overlay

DATA = [Path("../shared/data") / name for name in ("mtd", "mpdd_plate", "deeppcb_20085")]
METHODS = ["autoencoder", "feature_autoencoder", "fanogan", "stfpm", "efficientad", "fastflow"]
SHOTS: list[Shots] = [1, 16, FULL]
SEEDS = [0, 1, 2]
COLUMNS = {
    "image_auroc": ("image AUROC", 1, 3),
    "image_ap": ("image AP", 1, 3),
    "pixel_auroc": ("pixel AUROC", 1, 3),
    "aupro": ("AUPRO", 1, 3),
    "recall": ("recall at 1% (%)", 100, 1),
    "false_alarm_rate": ("false alarms (%)", 100, 1),
    "fit_seconds": ("fit s", 1, 1),
    "ms_per_image": ("ms / image", 1, 0),
}
"""Figure name -> (heading, scale, decimals) of the tables."""
WITH_STD = {"image_auroc", "pixel_auroc"}
"""Figures printed with their standard deviation over seeds."""
TEST_CAP = 200
"""Test images scored per dataset at most (by default): MTD's 542 keep every 3rd of each
folder (183), MPDD's 107 and DeepPCB's 156 stay whole; the machine is two shared cores."""
THUMBNAIL = (240, 180)
"""Largest width and height of the overlay PNGs."""
TRUTH_COLOUR = (40, 220, 40)
BEGIN_NOTES = "<!-- hand-written reading: kept when benchmarks/comparison.py regenerates this -->"
END_NOTES = "<!-- end of hand-written reading -->"


@dataclass
class Row:
    """One method at one shots setting on one dataset.

    Attributes:
        dataset: the dataset name.
        method: the method name.
        shots: the shots setting.
        seeds: the seeds its statistics are over.
        values: figure name -> the value of each seed (None where undefined).
        params: the method's parameters in the first seed's run (its `config()`).
    """

    dataset: str
    method: str
    shots: Shots
    seeds: list[int]
    values: dict[str, list[float | None]]
    params: dict[str, Any]

    def cell(self, name: str) -> str:
        """The table cell of figure `name`: mean (± std for WITH_STD), or n/a."""
        values = self.values[name]
        if any(value is None for value in values):
            return "n/a"
        _, scale, decimals = COLUMNS[name]
        scaled = np.array(values, dtype=float) * scale
        text = f"{scaled.mean():.{decimals}f}"
        return f"{text} ± {scaled.std():.{decimals}f}" if name in WITH_STD else text


def settings_for(method: str, shots: list[Shots], seed: int) -> EvaluationSettings:
    """Detector defaults for `method` (its default resolution named explicitly)."""
    parameters = inspect.signature(METHODS_BY_NAME[method]).parameters
    resolution = parameters["resolution"].default if "resolution" in parameters else None
    return EvaluationSettings(method=method, resolution=resolution, shots=shots, seeds=[seed])


def report_folder(reports: Path, dataset: str, method: str, shots: Shots, seed: int) -> Path:
    resolution = settings_for(method, [], seed).resolution
    return reports / dataset / f"{method}-{resolution}" / f"{shots}-shot-seed{seed}"


def evaluate_run(
    data: Path, reports: Path, method: str, shots: Shots, seed: int, collect: bool
) -> dict[str, Any] | None:
    """The report of one dataset × method × shots × seed: a finished one with these settings,
    else (unless `collect`) a fresh evaluation; None when `collect` finds none."""
    settings = settings_for(method, [shots], seed)
    folder = report_folder(reports, data.name, method, shots, seed)
    report = finished_report(data, folder, settings)
    if report is None and not collect:
        evaluate(data, folder, settings)
        report = json.loads((folder / "metrics.json").read_text())
    return report


def row_of(dataset: str, method: str, shots: Shots, reports: list[dict[str, Any]]) -> Row:
    """The row of one dataset × method × shots setting from its reports (one per seed)."""
    entries = [report["summary"][0] for report in reports]
    return Row(
        dataset,
        method,
        shots,
        [seed for entry in entries for seed in entry["seeds"]],
        {name: [entry["mean"][name]["mean"] for entry in entries] for name in COLUMNS},
        reports[0]["detector"]["method_params"],
    )


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

    Every file is a symbolic link to the original, so the k-shot draws stay the same. A subset
    already there is reused (built aside and renamed into place, so that processes running
    parts of the grid at once never see a half-built one).
    """
    final = folder / dataset.root.name
    if final.is_dir():
        return final
    root = folder / f".{dataset.root.name}-{os.getpid()}"
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
    try:
        root.rename(final)
    except OSError:  # another process finished first
        shutil.rmtree(root)
    return final


def fitted_detector(dataset: Dataset, method: str, shots: Shots, seed: int) -> Detector:
    """A detector of `method` fitted on the references the protocol draws for `shots`, `seed`."""
    _, images = seeded_references(dataset, shots, seed, [])
    return settings_for(method, [shots], seed).build_detector(seed).fit(images)


def saved_megabytes(detector: Detector) -> float:
    """Size of the detector's saved folder, in MB."""
    with tempfile.TemporaryDirectory() as folder:
        files = detector.save(Path(folder) / "model").iterdir()
        return sum(path.stat().st_size for path in files) / 1e6


def weights_megabytes(name: str) -> float | None:
    """MB of the weights a fitted `name` saves when they do not depend on the references
    (networks of a fixed shape: the trained methods' fold networks, the autoencoder's), from
    untrained networks of that shape; None for the others."""
    method = create_method(name)
    if isinstance(method, TrainedMethod):
        method.networks = [method.new_network() for _ in range(method.folds)]
    elif not isinstance(method, AutoencoderMethod):
        return None
    return sum(array.nbytes for array in method.state().values()) / 1e6


def backbone_megabytes(config: dict[str, Any]) -> float | None:
    """Size of the backbone weights file a method of `config` loads at run time (None: no
    backbone)."""
    backbone = config.get("backbone")
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


def kept_notes(document: Path) -> str:
    """The hand-written reading of the existing document (empty when there is none)."""
    if not document.is_file():
        return ""
    text = document.read_text(encoding="utf-8")
    if BEGIN_NOTES not in text or END_NOTES not in text:
        return ""
    return text.split(BEGIN_NOTES, 1)[1].split(END_NOTES, 1)[0].strip()


def metrics_table(rows: list[Row]) -> list[str]:
    """One dataset's table: a line per shots setting and method, mean (± std) over seeds."""
    headings = ["shots", "method", "seeds", *(heading for heading, _, _ in COLUMNS.values())]
    lines = [table_header(headings)]
    for row in rows:
        seeds = ", ".join(map(str, row.seeds))
        lines.append(table_row([str(row.shots), row.method, seeds, *map(row.cell, COLUMNS)]))
    return lines


def configurations(rows: list[Row]) -> list[str]:
    """One bullet per method and distinct parameter set (seed aside)."""
    seen: dict[str, str] = {}
    for row in rows:
        params = ", ".join(f"{key}={value}" for key, value in row.params.items() if key != "seed")
        seen.setdefault(row.method, params)
    return [f"- {method}: {params}" for method, params in seen.items()]


def generated_reading(rows: list[Row]) -> list[str]:
    """Per dataset and shots setting, the method with the best mean image AUROC and pixel
    AUROC; then each method's mean image AUROC over the datasets with all references."""
    lines = []
    for dataset in dict.fromkeys(row.dataset for row in rows):
        for shots in dict.fromkeys(row.shots for row in rows if row.dataset == dataset):
            chosen = [r for r in rows if r.dataset == dataset and r.shots == shots]
            parts = []
            for name in ("image_auroc", "pixel_auroc"):
                scored = [
                    (np.mean(r.values[name]), r.method)
                    for r in chosen
                    if None not in r.values[name]
                ]
                if scored:
                    value, method = max(scored)
                    parts.append(f"best {COLUMNS[name][0]} **{method}** ({value:.3f})")
            lines.append(f"- {dataset}, {shots} shots: " + "; ".join(parts) + ".")
    full = [row for row in rows if str(row.shots) == FULL]
    datasets = list(dict.fromkeys(row.dataset for row in rows))
    for method in dict.fromkeys(row.method for row in full):
        own = {
            r.dataset: float(np.mean(r.values["image_auroc"])) for r in full if r.method == method
        }
        if len(own) == len(datasets):
            lines.append(
                f"- {method}, all references: mean image AUROC over the {len(own)} datasets "
                f"{np.mean(list(own.values())):.3f}."
            )
    return lines


def not_run(missing: dict[str, dict[str, list[int]]]) -> str:
    """A sentence naming the runs that have no report: per "dataset method", the seeds of
    each shots setting."""
    if not missing:
        return "Every planned run finished."
    parts = [
        f"{name} ({'; '.join(f'{shots}: seeds {seeds}' for shots, seeds in left.items())})"
        for name, left in missing.items()
    ]
    return f"**Not run** (compute: 2 shared cores): {', '.join(parts)}.".replace("[", "").replace(
        "]", ""
    )


def overlay_section(
    first: str,
    args: argparse.Namespace,
    samples: list[Sample],
    pictures: dict[str, list[str]],
    figures: str,
) -> list[str]:
    """The overlay table's lines (none without --overlays)."""
    if not pictures:
        return []
    return [
        f"## Overlays ({first}, {args.show_shots} shots, seed {args.seeds[0]})",
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
    ]


def document(
    command: str,
    args: argparse.Namespace,
    test_sets: dict[str, str],
    rows: list[Row],
    missing: str,
    sizes: dict[str, tuple[float | None, float | None]],
    samples: list[Sample],
    pictures: dict[str, list[str]],
    notes: str,
) -> str:
    """The Markdown of docs/comparison.md.

    Args:
        command: the command that generated it.
        args: the parsed arguments.
        test_sets: dataset -> which of its test images were scored, in words.
        rows: every evaluated dataset × method × shots setting.
        missing: the sentence naming the runs that did not run.
        sizes: method -> (saved weights MB or None, backbone weights MB or None).
        samples: the test samples shown in the overlays (none without --overlays).
        pictures: column ("input" or method) -> the PNG name of each sample.
        notes: the hand-written reading.
    """
    figures = Path(os.path.relpath(args.figures, args.output.parent)).as_posix()
    first = args.data[0].name
    lines = [
        "# The families side by side",
        "",
        f"Generated by `{command}`.",
        "",
        "Each method at its defaults through the evaluation protocol; mean (± std, population) "
        "over the seeds listed. Recall and false alarms are at the detector's own thresholds, "
        "fitted to a 1% false-alarm rate from the references alone. Reports: "
        f"`{args.reports}/<dataset>/<method>-<resolution>/<shots>-shot-seed<k>/`.",
        "",
        missing,
        "",
        f"Timings: wall time on this machine ({os.cpu_count()} CPU cores shared with seven "
        "other engineers' jobs while it ran, one thread per process), so compare them with "
        "each other rather than with other machines. ms / image covers `Detector.predict` "
        "(maps, masks and boxes included).",
        "",
    ]
    for dataset in dict.fromkeys(row.dataset for row in rows):
        lines += [f"## {dataset} ({test_sets[dataset]})", ""]
        lines += [*metrics_table([row for row in rows if row.dataset == dataset]), ""]
    lines += [
        "Method parameters:",
        "",
        *configurations(rows),
        "",
        "## Model size",
        "",
        "Weights a fitted model saves (`Detector.save`, safetensors), in MB: for the trained "
        "methods two fold networks of a fixed shape, whatever the number of references"
        + (
            f"; methods whose model grows with the references: fitted on {first} at "
            f"{args.show_shots} shots, seed {args.seeds[0]}, the whole saved folder"
            if args.overlays
            else ""
        )
        + ". Methods on a backbone also load its weights at run time, one file shared by every "
        "model.",
        "",
        table_header(["method", "saved weights MB", "backbone weights MB"]),
        *(
            table_row(
                [
                    method,
                    "n/a" if saved is None else f"{saved:.2f}",
                    "–" if backbone is None else f"{backbone:.1f}",
                ]
            )
            for method, (saved, backbone) in sizes.items()
        ),
        "",
        *overlay_section(first, args, samples, pictures, figures),
        "## Reading (generated from the figures above)",
        "",
        *generated_reading(rows),
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
    parser.add_argument("--data", type=Path, nargs="+", default=DATA)
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=sorted(METHODS_BY_NAME))
    parser.add_argument("--shots", type=parse_shots, nargs="+", default=SHOTS)
    parser.add_argument("--seeds", type=int, nargs="+", default=SEEDS)
    parser.add_argument("--reports", type=Path, default=Path("reports/comparison"))
    parser.add_argument("--figures", type=Path, default=Path("docs/comparison"))
    parser.add_argument(
        "--show-shots", type=parse_shots, default=16, help="shots of the sized and shown models"
    )
    parser.add_argument("-o", "--output", type=Path, default=Path("docs/comparison.md"))
    parser.add_argument(
        "--test-cap",
        type=int,
        default=TEST_CAP,
        help="a dataset with more test images keeps every n-th of each folder, n the smallest "
        "that brings it to the cap or below",
    )
    parser.add_argument(
        "--collect", action="store_true", help="only read finished reports, run nothing"
    )
    parser.add_argument("--no-document", action="store_true", help="run the grid only")
    parser.add_argument(
        "--overlays",
        action="store_true",
        help="fit each method at --show-shots on the first dataset: overlays and saved sizes",
    )
    args = parser.parse_args()
    command = shlex.join([".venv/bin/python", "benchmarks/comparison.py", *sys.argv[1:]])
    rows: list[Row] = []
    test_sets: dict[str, str] = {}
    plan = [
        (shots, root, method, seed)
        for shots in args.shots
        for root in args.data
        for method in args.methods
        for seed in args.seeds
    ]
    data_of: dict[Path, Path] = {}
    for root in args.data:
        (dataset,) = discover(root)
        data, every = root, -(-len(dataset.test) // args.test_cap)
        if every > 1:  # the subset's data and reports live apart from the full set's
            data = test_subset(dataset, every, args.reports / f"test-every{every}")
        data_of[root] = data
        kept = len(discover(data)[0].test)
        test_sets[root.name] = f"{kept} of the {len(dataset.test)} test images" + (
            f", one in {every} of each test folder from the first" if every > 1 else ""
        )
    found: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    missing: dict[str, dict[str, list[int]]] = {}
    for shots, root, method, seed in plan:  # smallest work first: the order of the options
        report = evaluate_run(data_of[root], args.reports, method, shots, seed, args.collect)
        if report is None:
            left = missing.setdefault(f"{root.name} {method}", {})
            left.setdefault(str(shots), []).append(seed)
        else:
            found.setdefault((root.name, method, str(shots)), []).append(report)
    for root in args.data:
        for method in args.methods:
            for shots in sorted(args.shots, key=lambda s: math.inf if s == FULL else int(s)):
                if reports := found.get((root.name, method, str(shots))):
                    rows.append(row_of(root.name, method, shots, reports))
    if args.no_document:
        return
    sizes: dict[str, tuple[float | None, float | None]] = {
        method: (weights_megabytes(method), backbone_megabytes(create_method(method).config()))
        for method in args.methods
    }
    samples: list[Sample] = []
    pictures: dict[str, list[str]] = {}
    if args.overlays:
        (dataset,) = discover(args.data[0])
        samples = showcase(dataset)
        images = [load_image(sample.path) for sample in samples]
        truth = [with_truth(image, sample) for image, sample in zip(images, samples, strict=True)]
        pictures["input"] = write_pictures("input", samples, truth, args.figures)
        for method in args.methods:
            detector = fitted_detector(dataset, method, args.show_shots, args.seeds[0])
            sizes[method] = (saved_megabytes(detector), sizes[method][1])
            shown = overlays(detector, images)
            pictures[method] = write_pictures(method, samples, shown, args.figures)
    notes = kept_notes(args.output)
    text = document(
        command, args, test_sets, rows, not_run(missing), sizes, samples, pictures, notes
    )
    write_text(args.output, text)


if __name__ == "__main__":
    main()
