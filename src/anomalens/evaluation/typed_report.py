"""The report of `evaluate-types --boxes`: every figure of `TypedBoxCounts` per shots value, as
the mean over episodes (and seeds) with its 95% confidence interval, overall and per type."""

import argparse
from dataclasses import asdict
from typing import Any

from anomalens.defect_types.episodes import Estimate
from anomalens.evaluation.typed_boxes import TypedBoxCounts
from anomalens.metrics.boxes import MATCH_IOU

OVERALL = {
    "precision": "typed precision",
    "recall": "typed recall",
    "f_score": "typed F",
    "mean_ap": "mean AP",
    "box_recall": "box recall (any type)",
    "false_boxes_per_good_image": "false boxes / good image",
    "unknown_rate": "boxes called unknown",
    "found_called_unknown": "found defects called unknown",
    "good_boxes_called_unknown": "false boxes called unknown",
}
PER_TYPE = {"precision": "precision", "recall": "recall", "f_score": "F", "ap": "AP"}


def estimate(values: list[float | None]) -> dict[str, float] | None:
    """Mean and 95% interval of the values that are not None; None when all are."""
    present = [value for value in values if value is not None]
    return asdict(Estimate.of(present)) if present else None


def typed_summary(
    args: argparse.Namespace,
    detector: dict[str, Any] | None,
    episodes: dict[str, list[TypedBoxCounts]],
    skipped: list[str],
) -> dict[str, Any]:
    """metrics.json: the settings, and per shots value the overall and per-type estimates."""
    results = {}
    for shots, counts in episodes.items():
        figures = [c.figures() for c in counts]
        by_type = [c.by_type() for c in counts]
        types = sorted({kind for entry in by_type for kind in entry})
        results[shots] = {
            "overall": {key: estimate([f[key] for f in figures]) for key in OVERALL},
            "by_type": {
                kind: {
                    key: estimate([entry[kind][key] for entry in by_type if kind in entry])
                    for key in PER_TYPE
                }
                | {"truth_boxes": sum(c.truth[kind] for c in counts) / len(counts)}
                for kind in types
            },
        }
    return {
        "data": str(args.data),
        "rule": f"IoU > {MATCH_IOU} with a ground-truth box of the same type, one-to-one",
        "detector": detector,
        "episodes": args.episodes,
        "seeds": args.seed,
        "classifier": args.classifier,
        "results": results,
        "skipped": skipped,
    }


def typed_report(summary: dict[str, Any]) -> str:
    """report.md: a table of the overall figures by shots, then one per-type table by shots."""
    episodes = summary["episodes"] * len(summary["seeds"])
    lines = [
        f"# Typed boxes: {summary['data']}",
        "",
        f"- rule: a box is right when its {summary['rule']}",
        f"- {summary['episodes']} episodes × seeds {summary['seeds']} ({episodes} in all): each "
        "queries half the defective images and every good one, its examples drawn from the "
        "other half",
        "- types named by "
        + (
            f"a CNN ({summary['classifier']}) trained on each episode's example crops"
            if summary.get("classifier")
            else "the similarity rule"
        ),
        "- means over episodes with 95% confidence intervals",
        "",
        "| examples per type | " + " | ".join(OVERALL.values()) + " |",
        "|---" * (len(OVERALL) + 1) + "|",
    ]
    for shots, result in summary["results"].items():
        cells = [_cell(result["overall"][key]) for key in OVERALL]
        lines.append(f"| {shots} | " + " | ".join(cells) + " |")
    for shots, result in summary["results"].items():
        lines += [
            "",
            f"## {shots} examples per type",
            "",
            "| type | ground-truth boxes per episode | " + " | ".join(PER_TYPE.values()) + " |",
            "|---" * (len(PER_TYPE) + 2) + "|",
        ]
        for kind, figures in result["by_type"].items():
            cells = [_cell(figures[key]) for key in PER_TYPE]
            lines.append(f"| {kind} | {figures['truth_boxes']:.1f} | " + " | ".join(cells) + " |")
    if summary["skipped"]:
        lines += ["", "## Skipped", "", *(f"- {problem}" for problem in summary["skipped"])]
    return "\n".join(lines) + "\n"


def _cell(value: dict[str, float] | None) -> str:
    if value is None:
        return "–"
    return f"{value['mean']:.3f} [{value['low']:.3f}, {value['high']:.3f}]"
