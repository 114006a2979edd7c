"""Thresholds set from good images only, checked on MTD; and defective references caught.

    .venv/bin/python benchmarks/calibration.py [--shots 16] [--seed 0] [--intruder-seeds 1]

1. Mixes 2 defective test images, drawn by the seed from all of them, into 16 good references
   and prints which references `fit` flags as outliers (both should be); with --intruder-seeds N,
   does so for seeds 0 .. N-1 (references and intruders drawn by each) and prints the total.
2. Fits the default detector on the 16 good references calibrated for 1% false alarms, inspects
   test/good and every defect type, and prints the measured false-alarm rate and the recall of
   each defect type; and, per defect type, how many of its images `fit` would flag as an
   outlier if it were one of the references (its score against the 16 held-out reference
   scores; for good test images this is the false-flag rate).
"""

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

from anomalens import Detector
from anomalens.calibration import OUTLIER_Z, outliers
from anomalens.data import discover
from anomalens.data.dataset import Dataset
from anomalens.data.shots import seeded_order
from anomalens.detector import SPLIT_BELOW


def catch_intruders(dataset: Dataset, shots: int, seed: int) -> int:
    """Mix 2 defective test images drawn by `seed` into `shots` good references drawn by it;
    print what `fit` flags and return how many of the 2 it caught."""
    references = seeded_order(dataset.pool, seed)[:shots]
    defective = [s for s in dataset.test if s.label == 1]
    picks = np.random.default_rng(seed).choice(len(defective), 2, replace=False)
    intruders = [defective[i].path for i in picks]
    mixed = references + intruders
    detector = Detector(seed=seed).fit(mixed, names=[str(p) for p in mixed])
    flagged = detector.reference_outliers
    caught = [name for name in flagged if Path(name) in intruders]
    kinds = ", ".join(defective[i].defect_type for i in picks)
    print(f"seed {seed}: outliers flagged among {len(mixed)} references: {flagged}")
    print(f"seed {seed}: defective references ({kinds}) caught: {len(caught)} of {len(intruders)}")
    return len(caught)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/mtd"))
    parser.add_argument("--shots", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-false-alarm", type=float, default=0.01)
    parser.add_argument("--intruder-seeds", type=int, default=1, help="seeds of part 1")
    args = parser.parse_args()
    (dataset,) = discover(args.data)
    seeds = range(args.intruder_seeds) if args.intruder_seeds > 1 else [args.seed]
    caught = sum(catch_intruders(dataset, args.shots, seed) for seed in seeds)
    if args.intruder_seeds > 1:
        print(f"defective references caught over {len(seeds)} seeds: {caught} of {2 * len(seeds)}")

    references = seeded_order(dataset.pool, args.seed)[: args.shots]
    detector = Detector(max_false_alarm=args.max_false_alarm, seed=args.seed)
    detector.fit(references, progress=True)
    reference_scores = detector.held_out_scores  # what fit flags outliers by (one per reference)
    checks_outliers = len(references) >= SPLIT_BELOW
    flagged: dict[str, list[bool]] = defaultdict(list)
    as_outlier: dict[str, list[bool]] = defaultdict(list)
    for start in range(0, len(dataset.test), 8):
        batch = dataset.test[start : start + 8]
        for sample, result in zip(batch, detector.predict([s.path for s in batch]), strict=True):
            flagged[sample.defect_type].append(result.is_anomalous)
            if checks_outliers:
                candidate = outliers(np.array([*reference_scores, result.score]))
                as_outlier[sample.defect_type].append(len(reference_scores) in candidate)
    threshold = detector.thresholds["image"]
    target = args.max_false_alarm
    print(f"image threshold {threshold.value:.4f} ({threshold.method}, target {target:.0%})")
    for defect_type, verdicts in sorted(flagged.items()):
        rate = sum(verdicts) / len(verdicts)
        label = "false-alarm rate" if defect_type == "good" else "recall"
        print(f"{defect_type:<10} {label:<16} {rate:6.1%}  ({sum(verdicts)}/{len(verdicts)})")
    if not checks_outliers:
        print(f"fit flags no outlier among fewer than {SPLIT_BELOW} references")
        return
    print(f"flagged as an outlier among the {len(references)} references (robust z > {OUTLIER_Z}):")
    for defect_type, verdicts in sorted(as_outlier.items()):
        rate = sum(verdicts) / len(verdicts)
        print(f"{defect_type:<10} {rate:6.1%}  ({sum(verdicts)}/{len(verdicts)})")


if __name__ == "__main__":
    main()
