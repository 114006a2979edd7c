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
from pathlib import Path

import numpy as np
import torch

from anomalens.calibration import calibrate
from anomalens.cli.evaluate_types import single_dataset
from anomalens.data.masks import load_mask
from anomalens.evaluation.typed_runs import truth_regions
from anomalens.features import resized
from anomalens.localization.maps import SMOOTHING_SIGMA, anomaly_map
from anomalens.localization.regions import extract_regions
from anomalens.methods.ensemble import combined_grid
from anomalens.metrics import iou_matrix, match_boxes, pixel_metrics


def combined_map(cached, key: str, size: tuple[int, int], how: str, sigma: float) -> np.ndarray:
    """The pixel map of cached image `key` ("test_<i>" or "held_out_<i>") with the members'
    grids combined by `how`, as `Ensemble` and `Detector` build it."""
    members = sorted(k for k in cached.files if k.startswith("member") and k.endswith(f"_{key}"))
    grids = [cached[k].astype(np.float32) for k in members]
    extents = [tuple(cached[k.replace("member", "extent", 1)]) for k in members]
    finest = max(range(len(grids)), key=lambda j: grids[j].size)
    stacked = torch.stack(
        [resized(torch.from_numpy(g)[None], grids[finest].shape)[0] for g in grids]
    )
    grid = combined_grid(stacked, how)
    return anomaly_map(grid, extents[finest], size, sigma)


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
        held_keys = [k for k in cached.files if k.startswith("held_out_")]
        for how, sigma in itertools.product(args.combine, args.sigma):
            maxima = [
                combined_map(cached, key, cached[key].shape, how, sigma).max() for key in held_keys
            ]
            maps, truths = [], []
            for index, sample in enumerate(samples):
                size = cached[f"test_{index}"].shape
                maps.append(combined_map(cached, f"test_{index}", size, how, sigma))
                if sample.label == 0:
                    truths.append((None, None))
                else:
                    mask = load_mask(sample.mask_path, size) if sample.mask_path else None
                    boxes, _ = truth_regions(sample, size)
                    truths.append((mask, [bounds for bounds, _ in boxes]))
            pixels = pixel_metrics(maps, [mask for mask, _ in truths])
            for rate, low in itertools.product(args.box_false_alarm, args.hysteresis):
                threshold = calibrate(np.array(maxima, dtype=np.float64), rate).value
                matched = touched = truth_count = on_defective = on_good = good = 0
                for anomaly, (_, boxes) in zip(maps, truths, strict=True):
                    _, found = extract_regions(anomaly, threshold, low, args.min_area)
                    if boxes is None:
                        good += 1
                        on_good += len(found)
                        continue
                    predicted = [(b.x0, b.y0, b.x1, b.y1) for b in found]
                    matched += len(match_boxes(boxes, predicted, [b.score for b in found]))
                    touched += int((iou_matrix(boxes, predicted) > 0).any(axis=1).sum())
                    truth_count += len(boxes)
                    on_defective += len(found)
                print(
                    f"| {Path(data).name} | {how} | {sigma:g} | {rate:g} | {low:g} "
                    f"| {matched / truth_count:.3f} | {touched / truth_count:.3f} "
                    f"| {matched / max(on_defective, 1):.3f} | {on_good / good:.2f} "
                    f"| {pixels['pixel_auroc']:.3f} | {pixels['aupro']:.3f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
