"""Where the time of one AnomalyDINO prediction goes (the default ensemble's coarse member), and
how it compares with a bare backbone forward pass.

For AnomalyDINO on MTD at 320 and 448 px with 1 and 16 references, prints ms per image
for feature extraction, nearest-neighbour search and post-processing (map, threshold, boxes),
and the ratio of the whole to a bare backbone forward pass of the same image. With --approximate
it also reports the approximate index's cost in accuracy: mean absolute change of the image
score and the share of patches whose nearest-neighbour distance changes.

    .venv/bin/python benchmarks/speed.py [--data ../shared/data/mtd] [--images 30]
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from anomalens import Detector
from anomalens.data import discover
from anomalens.data.shots import seeded_order
from anomalens.io.images import load_image
from anomalens.results import Result


def timed(function, *args) -> tuple[float, object]:
    """(milliseconds spent, value) of `function(*args)`."""
    start = time.perf_counter()
    value = function(*args)
    return 1000 * (time.perf_counter() - start), value


def post_process(detector: Detector, grid, found) -> Result:
    """Patch scores to image score, map, mask and boxes: the steps of `Detector.predict` after
    the search, through the same private methods."""
    return detector._result(detector.method._scores(grid, *found), None)


def profile(detector: Detector, images: list[np.ndarray]) -> dict[str, float]:
    """Mean ms per image of each stage, one image at a time as a line would send them.

    Each image goes through the whole prediction once untimed first: torch prepares its kernels
    for each new input size on the first pass (the backbone's, the map's smoothing), a cost a
    line's camera (one image size) pays once but that would fall on the timed stages here, where
    every MTD tile has its own size, and not on the bare forward pass timed after them.
    """
    method = detector.method
    totals = {"features": 0.0, "search": 0.0, "post": 0.0, "forward": 0.0}
    for image in images:
        detector.predict([image])
        spent, (grid,) = timed(method.patch_grids, [image])
        totals["features"] += spent
        flat = grid.features.reshape(-1, grid.features.shape[-1])
        spent, found = timed(method.neighbours.distances, flat)
        totals["search"] += spent
        totals["post"] += timed(post_process, detector, grid, found)[0]
        tensor, _ = method.extractor.preprocess(image)
        with torch.inference_mode():
            totals["forward"] += timed(
                method.extractor.model, tensor[None], method.extractor.levels
            )[0]
    return {stage: value / len(images) for stage, value in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/mtd"))
    parser.add_argument("--images", type=int, default=30, help="test images timed per setting")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[320, 448])
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--approximate", action="store_true", help="also time the IVF index")
    args = parser.parse_args()
    (dataset,) = discover(args.data)
    pool = dataset.pool
    tests = sorted(sample.path for sample in dataset.test)
    tests = tests[:: max(1, len(tests) // args.images)][: args.images]
    images = [load_image(path) for path in tests]
    print(f"torch threads {torch.get_num_threads()}; {len(images)} MTD test images per setting")
    header = "resolution shots index   bank  features  search  post  total  forward  ratio"
    print(header)
    for resolution in args.resolutions:
        for shots in args.shots:
            references = [load_image(p) for p in seeded_order(pool, 0)[:shots]]
            fitted = {}
            for approximate in (False, True) if args.approximate else (None,):
                detector = Detector(
                    method="anomalydino", resolution=resolution, approximate=approximate
                )
                detector.fit(references)
                fitted[approximate] = detector
                profile(detector, images[:2])  # warm-up
                stages = profile(detector, images)
                total = stages["features"] + stages["search"] + stages["post"]
                kind = {None: "auto", False: "exact", True: "ivf"}[approximate]
                bank = len(detector.method.neighbours.bank)
                print(
                    f"{resolution:>10} {shots:>5} {kind:>5} {bank:>6}"
                    f" {stages['features']:>9.1f} {stages['search']:>7.1f} {stages['post']:>5.1f}"
                    f" {total:>6.1f} {stages['forward']:>8.1f} {total / stages['forward']:>6.2f}"
                )
            if args.approximate:
                print("  ivf vs exact: " + approximation_cost(fitted[False], fitted[True], images))


def approximation_cost(exact: Detector, approximate: Detector, images: list[np.ndarray]) -> str:
    """How much the approximate index changes image scores and patch distances."""
    score_change, patches_changed = [], []
    for image in images:
        (a,), (b,) = exact.method.score([image]), approximate.method.score([image])
        score_change.append(abs(a.image_score - b.image_score) / max(a.image_score, 1e-12))
        patches_changed.append(np.mean(~np.isclose(a.grid, b.grid, rtol=1e-4, atol=1e-6)))
    return (
        f"mean relative image-score change {np.mean(score_change):.2%}, "
        f"patches with a different nearest distance {np.mean(patches_changed):.1%}"
    )


if __name__ == "__main__":
    main()
