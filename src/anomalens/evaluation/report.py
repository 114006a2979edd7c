"""Write what an evaluation found: per-run folders as runs finish, then the summary files.

matplotlib is imported where a figure is drawn, so that importing the package (every CLI call)
does not pay for it.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from anomalens.data import Dataset
from anomalens.data.dataset import relative_name
from anomalens.data.shots import LISTED, write_reference_list
from anomalens.evaluation.operating_point import OPERATING_METRICS
from anomalens.evaluation.protocol import EvaluationSettings, Run
from anomalens.evaluation.summary import THRESHOLD_FREE, TIMINGS, summarize
from anomalens.io.atomic import atomic_write, write_json, write_text
from anomalens.metrics.boxes import MATCH_IOU
from anomalens.metrics.image import ranked_weights
from anomalens.visualize import overlay

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

SCHEMA_VERSION = 1
LABELS = {
    "image_auroc": "image AUROC",
    "image_ap": "image AP",
    "image_f1_max": "image F1-max",
    "pixel_auroc": "pixel AUROC",
    "pixel_ap": "pixel AP",
    "pixel_f1_max": "pixel F1-max",
    "aupro": "AUPRO@0.3",
    "false_alarm_rate": "false alarm rate",
    "recall": "recall",
    "box_recall": "box recall",
    "box_precision": "box precision",
    "false_boxes_per_good_image": "false boxes / good image",
    "fit_seconds": "fit s",
    "ms_per_image": "ms / image",
}
"""Column headings of report.md."""
SCORE_COLUMNS = ["category", "shots", "seed", "path", "label", "defect_type", "score"]


def run_folder(out_dir: Path, run: Run) -> Path:
    """Where a run's own files go: runs/<category>/<shots>-shot-seed<seed>."""
    return out_dir / "runs" / run.category / run.name


def write_run(out_dir: Path, root: Path, run: Run) -> list[Path]:
    """Write a run's references.txt, roc.png, pr.png, overlays.png and maps.npz (if kept).

    Args:
        out_dir: the report folder.
        root: the data root that paths are written relative to.
        run: the finished run.
    """
    folder = run_folder(out_dir, run)
    written = [
        write_reference_list(folder / "references.txt", run.references, root),
        save_figure(folder / "roc.png", roc_figure(run)),
        save_figure(folder / "pr.png", pr_figure(run)),
    ]
    if run.examples:
        written.append(save_figure(folder / "overlays.png", overlay_figure(run)))
    if run.maps:
        written.append(atomic_write(folder / "maps.npz", lambda tmp: save_npz(tmp, run.maps)))
    return written


def write_summary(
    out_dir: Path,
    root: Path,
    datasets: list[Dataset],
    settings: EvaluationSettings,
    runs: list[Run],
    reference_list: Path | None,
) -> list[Path]:
    """Write metrics.json, report.md and scores.csv for all `runs`.

    Args:
        out_dir: the report folder.
        root: the data root.
        datasets: the evaluated categories.
        settings: what was evaluated.
        runs: every finished run.
        reference_list: the list file that fixed the references, if any.
    """
    report = metrics_document(out_dir, root, datasets, settings, runs, reference_list)
    return [
        write_json(out_dir / "metrics.json", report),
        write_text(out_dir / "report.md", markdown(report)),
        write_text(out_dir / "scores.csv", scores_csv(root, runs)),
    ]


def metrics_document(
    out_dir: Path,
    root: Path,
    datasets: list[Dataset],
    settings: EvaluationSettings,
    runs: list[Run],
    reference_list: Path | None,
) -> dict[str, Any]:
    """The metrics.json content (schema in docs/evaluation.md)."""
    sources = [(dataset.name, dataset.boxes_source) for dataset in datasets]
    folders = [run_folder(out_dir, run).relative_to(out_dir).as_posix() for run in runs]
    return {
        "schema_version": SCHEMA_VERSION,
        "data": str(root.resolve()),
        "layout": sorted({dataset.layout for dataset in datasets}),
        "categories": [dataset.name for dataset in datasets],
        "boxes": {name: relative_name(path, root) if path else None for name, path in sources},
        "settings": {
            "method": settings.method,
            "backbone": settings.backbone,
            "resolution": settings.resolution,
            "method_params": settings.method_params,
            "shots": [LISTED] if reference_list or settings.model else settings.shots,
            "seeds": settings.seeds,
            "reference_list": str(reference_list) if reference_list else None,
            "model": settings.model,
            "runtime": settings.runtime,
            "device": settings.device,
        },
        "detector": runs[0].detector_config if runs else None,
        "runs": [
            run_entry(run, root) | {"folder": folder}
            for run, folder in zip(runs, folders, strict=True)
        ],
        "summary": summarize(runs),
        "problems": [problem for dataset in datasets for problem in dataset.problems],
    }


def run_entry(run: Run, root: Path) -> dict[str, Any]:
    """A run's figures as metrics.json lists them (without its folder), paths relative to
    `root`."""
    return {
        "category": run.category,
        "shots": run.shots,
        "seed": run.seed,
        "references": [relative_name(path, root) for path in run.references],
        "test_images": len(run.scores),
        "metrics": run.metrics,
        "operating_point": run.operating_point.to_dict(),
        "fit_seconds": run.fit_seconds,
        "ms_per_image": run.ms_per_image,
        "skipped": run.skipped,
    }


def markdown(report: dict[str, Any]) -> str:
    """report.md: settings, the mean ± std table per shots, per-run rows and problems."""
    settings = report["settings"]
    columns = [*THRESHOLD_FREE, *TIMINGS]
    headings = [LABELS[name] for name in columns]
    detector = ", ".join(f"{key}={value}" for key, value in (report["detector"] or {}).items())
    boxes = ", ".join(f"{name}: `{path}`" for name, path in report["boxes"].items() if path)
    lines = [
        "# Evaluation report",
        "",
        f"- Data: `{report['data']}` ({', '.join(report['layout'])} layout), "
        f"categories: {', '.join(report['categories'])}",
        f"- Detector (first run): {detector}",
        f"- Shots: {', '.join(map(str, settings['shots']))}; seeds: "
        f"{', '.join(map(str, settings['seeds']))}",
        f"- Box ground truth: {boxes or 'none'}",
        "",
        "## Mean ± std over seeds (mean over categories)",
        "",
        table_header(["shots", *headings]),
    ]
    lines += [
        table_row([str(row["shots"]), *(stat(row["mean"][name]) for name in columns)])
        for row in report["summary"]
    ]
    if len(report["categories"]) > 1:
        lines += ["", "## Per category", "", table_header(["shots", "category", *headings])]
        lines += [
            table_row([str(row["shots"]), category, *(stat(values[name]) for name in columns)])
            for row in report["summary"]
            for category, values in row["categories"].items()
        ]
    lines += ["", "## Runs", "", table_header(["category", "shots", "seed", *headings, "files"])]
    lines += [
        table_row(
            [
                run["category"],
                str(run["shots"]),
                str(run["seed"]),
                *(number(run["metrics"][name]) for name in THRESHOLD_FREE),
                number(run["fit_seconds"]),
                number(run["ms_per_image"]),
                f"[{run['folder']}]({run['folder']}/)",
            ]
        )
        for run in report["runs"]
    ]
    lines += operating_point_markdown(report)
    notes = report["problems"] + [note for run in report["runs"] for note in run["skipped"]]
    if notes:
        lines += ["", "## Problems", "", *(f"- {note}" for note in dict.fromkeys(notes))]
    return "\n".join(lines) + "\n"


def operating_point_markdown(report: dict[str, Any]) -> list[str]:
    """report.md's section on the verdicts and boxes at the detector's own thresholds."""
    several = len(report["categories"]) > 1
    lines = [
        "",
        "## At the detector's own thresholds",
        "",
        "Verdicts and boxes as `predict` returns them. A predicted box matches a ground-truth "
        f"box at IoU > {MATCH_IOU}, one to one, strongest prediction first; box figures need "
        "box ground truth.",
        "",
        table_header(["shots", "category", *(LABELS[name] for name in OPERATING_METRICS)]),
    ]
    for row in report["summary"]:
        groups = [*(row["categories"].items() if several else []), ("mean", row["mean"])]
        lines += [
            table_row([str(row["shots"]), name, *(stat(values[key]) for key in OPERATING_METRICS)])
            for name, values in groups
        ]
    lines += ["", table_header(["shots", "category", "defect type", "recall"])]
    lines += [
        table_row([str(row["shots"]), category, defect_type, stat(values)])
        for row in report["summary"]
        for category, recalls in row["recall_by_type"].items()
        for defect_type, values in recalls.items()
    ]
    headings = ["false alarms", "recall", "per defect type", "box recall", "box precision"]
    lines += ["", table_header(["category", "shots", "seed", *headings, "boxes on good images"])]
    lines += [table_row(operating_point_cells(run)) for run in report["runs"]]
    return lines


def operating_point_cells(run: dict[str, Any]) -> list[str]:
    """A run's row of counts: "k of n" per figure."""
    counts = run["operating_point"]
    by_type = ", ".join(
        f"{name} {of_type['flagged']} of {of_type['images']}"
        for name, of_type in counts["by_defect_type"].items()
    )
    boxes = counts["boxes"]
    box_cells = [
        *(
            [
                f"{boxes['matched']} of {boxes['truth']}",
                f"{boxes['matched']} of {boxes['predicted_on_defective']}",
            ]
            if boxes
            else ["n/a"] * 2
        ),
        f"{counts['boxes_on_good_images']} on {counts['good_images']}",
    ]
    return [
        run["category"],
        str(run["shots"]),
        str(run["seed"]),
        f"{counts['false_alarms']} of {counts['good_images']}",
        f"{counts['flagged_defective']} of {counts['defective_images']}",
        by_type,
        *box_cells,
    ]


def table_header(names: list[str]) -> str:
    """A markdown table header row and its separator."""
    return table_row(names) + "\n" + table_row(["---"] * len(names))


def table_row(cells: list[str]) -> str:
    """One markdown table row."""
    return "| " + " | ".join(cells) + " |"


def stat(values: dict[str, float | None]) -> str:
    """ "mean ± std" with the mean's number of decimals, or "n/a" when undefined."""
    if values["mean"] is None:
        return "n/a"
    return f"{number(values['mean'])} ± {number(values['std'], like=values['mean'])}"


def number(value: float | None, like: float | None = None) -> str:
    """Three decimals below 10, one from there (judged by `like` when given); "n/a" for None."""
    if value is None:
        return "n/a"
    scale = value if like is None else like
    return f"{value:.3f}" if abs(scale) < 10 else f"{value:.1f}"


def scores_csv(root: Path, runs: list[Run]) -> str:
    """scores.csv: one row per run and test image."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(SCORE_COLUMNS)
    for run in runs:
        for sample, score in run.scores:
            path = relative_name(sample.path, root)
            writer.writerow(
                [run.category, run.shots, run.seed, path, sample.label, sample.defect_type, score]
            )
    return buffer.getvalue()


def curve_points(labels: list[int], scores: list[float]) -> tuple[np.ndarray, ...]:
    """(false positive rate, recall, precision) at every distinct score threshold, highest
    first, starting from the point above all scores."""
    _, positives, negatives = ranked_weights(labels, scores)
    true_positives = np.concatenate([[0.0], np.cumsum(positives)])
    false_positives = np.concatenate([[0.0], np.cumsum(negatives)])
    predicted = true_positives + false_positives
    precision = np.divide(
        true_positives, predicted, out=np.ones_like(predicted), where=predicted > 0
    )
    return false_positives / false_positives[-1], true_positives / true_positives[-1], precision


def roc_figure(run: Run) -> Figure:
    """The image-level ROC curve of a run."""
    false_positive_rate, recall, _ = curve_points(*run_labels_and_scores(run))
    figure, axes = curve_axes(f"Image ROC, {run.category} {run.name}", run.metrics["image_auroc"])
    axes.plot(false_positive_rate, recall)
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    axes.set(xlabel="false positive rate", ylabel="true positive rate")
    return figure


def pr_figure(run: Run) -> Figure:
    """The image-level precision-recall curve of a run."""
    _, recall, precision = curve_points(*run_labels_and_scores(run))
    figure, axes = curve_axes(f"Image PR, {run.category} {run.name}", run.metrics["image_ap"])
    axes.step(recall, precision, where="pre")  # area = AP: each precision over its recall step
    axes.set(xlabel="recall", ylabel="precision")
    return figure


def curve_axes(title: str, area: float | None) -> tuple[Figure, Axes]:
    """A square figure with unit axes, a grid and `title` with the area under the curve."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.5, 4.5), layout="constrained")
    axes = figure.subplots()
    axes.set_title(f"{title} (area {number(area)})", fontsize=9)
    axes.set(xlim=(0, 1), ylim=(0, 1.02))
    axes.grid(alpha=0.3)
    return figure, axes


def run_labels_and_scores(run: Run) -> tuple[list[int], list[float]]:
    """Labels and image scores of a run's test samples."""
    return [sample.label for sample, _ in run.scores], [score for _, score in run.scores]


def overlay_figure(run: Run) -> Figure:
    """A grid of overlays, one row per example role, ground truth outlined in green."""
    from matplotlib.figure import Figure

    roles = list(dict.fromkeys(example.role for example in run.examples))
    columns = max(sum(example.role == role for example in run.examples) for role in roles)
    figure = Figure(figsize=(3 * columns, 3.2 * len(roles)), layout="constrained")
    axes = figure.subplots(len(roles), columns, squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for row, role in enumerate(roles):
        chosen = [example for example in run.examples if example.role == role]
        for column, example in enumerate(chosen):
            axis = axes[row, column]
            axis.imshow(overlay(example.image, example.result, example.pixel_threshold))
            if example.truth is not None and example.truth.any():
                axis.contour(example.truth, levels=[0.5], colors="lime", linewidths=0.8)
            axis.set_title(
                f"{role}\n{example.sample.defect_type} {example.sample.path.name}\n"
                f"score {example.result.score:.3g}",
                fontsize=7,
            )
    return figure


def save_figure(path: Path, figure: Figure) -> Path:
    """Write `figure` as a PNG atomically (rendered by matplotlib's Agg canvas)."""
    return atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=100))


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write `arrays` to `path` as a compressed .npz (keys may contain slashes)."""
    with path.open("wb") as handle:
        np.savez_compressed(handle, **arrays)
