"""Region extraction chosen by measurement: for each way of combining the default ensemble's
member maps and each hysteresis floor, the boxes a user gets at the pixel threshold (class-agnostic
box recall and precision at IoU > 0.33, false boxes per good image) and the map's pixel AUROC and
AUPRO, from the member grids `region_maps.py` cached (test images and held-out references).

    OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/region_rules.py \\
        maps/mtd-0.npz:../shared/data/mtd maps/mpdd_plate-0.npz:../shared/data/mpdd_plate \\
        maps/deeppcb_20085-0.npz:../shared/data/deeppcb_20085 \\
        [--combine max mean geomean] [--hysteresis 1.0 0.9 0.8 0.7] [--sigma 4]
        [--box-false-alarm 0.2 ...] [--min-area 16]

The pixel threshold is set as `Detector.fit` sets it: the log-normal bound of the held-out maps'
maxima at the box false-alarm rate. Prints one table row per dataset, combination, smoothing,
rate and floor; "touched" is the share of ground-truth boxes that some predicted box overlaps at
all (found, if not fitted well enough to count).
"""

import argparse
import itertools
import json
from collections import Counter
from pathlib import Path

import numpy as np

from anomalens.calibration import calibrate
from anomalens.cli.evaluate_types import single_dataset
from anomalens.data.masks import load_mask
from anomalens.evaluation.typed_runs import truth_regions
from anomalens.localization.maps import SMOOTHING_SIGMA, anomaly_map
from anomalens.localization.regions import extract_regions
from anomalens.methods.ensemble import combined_grid
from anomalens.metrics import iou_matrix, match_boxes, pixel_metrics


def combined_map(cached, key: str, size: tuple[int, int], how: str, sigma: float) -> np.ndarray:
    """The pixel map of cached image `key` ("test_<i>" or "held_out_<i>") with the members'
    grids combined by `how`, as `Ensemble` and `Detector` build it."""
    members = sorted(k for k in cached.files if k.startswith("member") and k.endswith(f"_{key}"))
    grids = [cached[k].astype(np.float32) for k in members]
    finest = max(range(len(grids)), key=lambda j: grids[j].size)
    extent = tuple(cached[members[finest].replace("member", "extent", 1)])
    return anomaly_map(combined_grid(grids, how), extent, size, sigma)


def box_counts(maps, truths, threshold: float, low: float, min_area: int) -> Counter:
    """Ground-truth boxes matched (IoU > 0.33, one to one) and touched, boxes predicted on
    defective and on good images, and the images, of the detector's regions on `maps`."""
    counts: Counter = Counter()
    for anomaly, (_, boxes) in zip(maps, truths, strict=True):
        _, found = extract_regions(anomaly, threshold, low, min_area)
        if boxes is None:
            counts["good"] += 1
            counts["on_good"] += len(found)
            continue
        predicted = [(b.x0, b.y0, b.x1, b.y1) for b in found]
        counts["matched"] += len(match_boxes(boxes, predicted, [b.score for b in found]))
        counts["touched"] += int((iou_matrix(boxes, predicted) > 0).any(axis=1).sum())
        counts["truth"] += len(boxes)
        counts["on_defective"] += len(found)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("caches", nargs="+", help="MAPS.npz:DATA pairs")
    parser.add_argument("--combine", nargs="+", default=["max", "mean", "geomean"])
    parser.add_argument("--hysteresis", type=float, nargs="+", default=[1.0, 0.9, 0.8, 0.7])
    parser.add_argument("--sigma", type=float, nargs="+", default=[SMOOTHING_SIGMA])
    parser.add_argument("--box-false-alarm", type=float, nargs="+", default=[0.2])
    parser.add_argument("--min-area", type=int, default=16)
    args = parser.parse_args()
    print(
        "| dataset | map | sigma | box false alarm | hysteresis | box recall | touched "
        "| box precision "
        "| false boxes / good image | pixel AUROC | AUPRO |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    )
    for pair in args.caches:
        maps_path, data = pair.split(":", 1)
        cached = np.load(maps_path)
        meta = json.loads(str(cached["meta"]))
        by_path = {str(sample.path): sample for sample in single_dataset(Path(data)).test}
        samples = [by_path[path] for path in meta["paths"]]
        held_out = {k: cached[k].shape for k in cached.files if k.startswith("held_out_")}
        sizes = [cached[f"test_{index}"].shape for index in range(len(samples))]
        truths = []
        for sample, size in zip(samples, sizes, strict=True):
            if sample.label == 0:
                truths.append((None, None))
            else:
                mask = load_mask(sample.mask_path, size) if sample.mask_path else None
                boxes, _ = truth_regions(sample, size)
                truths.append((mask, [bounds for bounds, _ in boxes]))
        for how, sigma in itertools.product(args.combine, args.sigma):
            maxima = [
                combined_map(cached, key, size, how, sigma).max() for key, size in held_out.items()
            ]
            maps = [
                combined_map(cached, f"test_{index}", size, how, sigma)
                for index, size in enumerate(sizes)
            ]
            pixels = pixel_metrics(maps, [mask for mask, _ in truths])
            for rate in args.box_false_alarm:
                threshold = calibrate(np.array(maxima, dtype=np.float64), rate).value
                for low in args.hysteresis:
                    counts = box_counts(maps, truths, threshold, low, args.min_area)
                    print(
                        f"| {Path(data).name} | {how} | {sigma:g} | {rate:g} | {low:g} "
                        f"| {counts['matched'] / counts['truth']:.3f} "
                        f"| {counts['touched'] / counts['truth']:.3f} "
                        f"| {counts['matched'] / max(counts['on_defective'], 1):.3f} "
                        f"| {counts['on_good'] / counts['good']:.2f} "
                        f"| {pixels['pixel_auroc']:.3f} | {pixels['aupro']:.3f} |",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
