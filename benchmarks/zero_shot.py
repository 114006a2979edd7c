"""Zero-shot batch mode on every dataset: each test set inspected with no references at all.

    OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/zero_shot.py [--data-root ../shared/data]
        [--datasets mtd ...] [--batches all 64 16] [--method anomalydino] [--param KEY=VALUE]
        [--refit K] [--seed 0]

Each test set is shuffled once (seeded: a production stream mixes good and defective parts,
while the dataset's folders are sorted by defect type) and cut into batches of the given size
("all": the whole test set as one batch; otherwise the test set is split into
equal batches of about that size). The test sets are mostly defective (69-76%), which no line
is: `--defect-share 0.1` keeps every good image and a seeded tenth of defective ones instead.
Every batch goes through `Detector.predict_batch(zero_shot=True)` and is judged by its own
threshold. Image AUROC and AUPRO pool the scores and maps of all batches; recall and false
alarms count the verdicts at each batch's threshold. stdout gets one markdown row per dataset
and batch size; progress goes to stderr.
"""

import argparse
import sys
import time

import numpy as np

from anomalens.cli.options import detector_params
from anomalens.data import discover
from anomalens.detector import Detector
from anomalens.evaluation.protocol import read_truth
from anomalens.io.images import load_image
from anomalens.metrics import PixelMetrics, image_auroc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--datasets", nargs="+", default=["mtd", "mpdd_plate", "deeppcb_20085"])
    parser.add_argument("--batches", nargs="+", default=["all", "64", "16"])
    parser.add_argument("--method", default="anomalydino")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--refit", type=int, default=0, help="references refitted per batch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--defect-share",
        type=float,
        help="keep every good test image and only enough defective ones (seeded) to make this "
        "share of the set, as on a production line (default: the whole test set)",
    )
    args = parser.parse_args()
    print("| dataset | batch | images | image AUROC | AUPRO | recall (%) | false alarms (%) | s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in args.datasets:
        (dataset,) = discover(f"{args.data_root}/{name}")
        rng = np.random.default_rng(args.seed)
        samples = [dataset.test[i] for i in rng.permutation(len(dataset.test))]
        if args.defect_share is not None:
            good = [sample for sample in samples if sample.label == 0]
            count = round(len(good) * args.defect_share / (1 - args.defect_share))
            defective = [sample for sample in samples if sample.label == 1][:count]
            kept = good + defective
            samples = [kept[i] for i in rng.permutation(len(kept))]
        for batch in args.batches:
            size = len(samples) if batch == "all" else int(batch)
            start = time.perf_counter()
            row = evaluate(samples, size, args)
            seconds = time.perf_counter() - start
            print(f"| {name} | {batch} | {len(samples)} | {row} | {seconds:.0f} |", flush=True)
    return 0


def evaluate(samples: list, size: int, args: argparse.Namespace) -> str:
    """One row's figures: the test set inspected in consecutive batches of about `size`."""
    labels, scores, flagged = [], [], []
    pixels = PixelMetrics()
    for chunk in np.array_split(
        np.array(samples, dtype=object), max(1, round(len(samples) / size))
    ):
        images = [load_image(sample.path) for sample in chunk]
        detector = Detector(method=args.method, **detector_params(args.param))
        results = detector.predict_batch(images, zero_shot=True, refit=args.refit)
        for sample, image, result in zip(chunk, images, results, strict=True):
            labels.append(sample.label)
            scores.append(result.score)
            flagged.append(result.is_anomalous)
            pixels.update(result.anomaly_map, read_truth(sample, image.shape[:2], []))
        print(f"  batch of {len(chunk)} images done", file=sys.stderr, flush=True)
    labels_array, flagged_array = np.array(labels), np.array(flagged)
    recall = flagged_array[labels_array == 1].mean() * 100
    false_alarms = flagged_array[labels_array == 0].mean() * 100
    aupro = pixels.compute()["aupro"]
    auroc = image_auroc(labels_array, np.array(scores))
    return f"{auroc:.3f} | {aupro:.3f} | {recall:.1f} | {false_alarms:.1f}"


if __name__ == "__main__":
    sys.exit(main())
