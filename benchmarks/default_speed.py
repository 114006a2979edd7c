"""Time per image of the default detector against the single AnomalyDINO it replaced, per dataset.

Both detectors are fitted on the same seeded references of every dataset under the data root,
then predict the same test images one at a time, as a line sends them, on the threads set here;
prints fit seconds, ms per image and the ratio of the default's to AnomalyDINO's.

    .venv/bin/python benchmarks/default_speed.py [--data-root ../shared/data] [--images 20]
        [--shots 16] [--threads 1]
"""

import argparse
import time
from pathlib import Path

from anomalens import Detector
from anomalens.data import discover
from anomalens.data.shots import seeded_order
from anomalens.io.images import load_image
from anomalens.threads import set_threads

DETECTORS = {"default (ensemble)": {}, "anomalydino": {"method": "anomalydino"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    parser.add_argument("--images", type=int, default=20, help="test images per dataset")
    parser.add_argument("--shots", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    set_threads(args.threads)
    print("| dataset | detector | fit s | ms/image | ratio |")
    print("| --- | --- | --- | --- | --- |")
    for dataset in discover(args.data_root):
        references = [load_image(p) for p in seeded_order(dataset.pool, 0)[: args.shots]]
        step = max(len(dataset.test) // args.images, 1)
        images = [load_image(sample.path) for sample in dataset.test[::step][: args.images]]
        timings = {}
        for name, settings in DETECTORS.items():
            started = time.perf_counter()
            detector = Detector(**settings).fit(references)
            fitted = time.perf_counter()
            for image in images:
                detector.predict([image])
            per_image = 1000 * (time.perf_counter() - fitted) / len(images)
            timings[name] = (fitted - started, per_image)
        baseline = timings["anomalydino"][1]
        for name, (fit_seconds, per_image) in timings.items():
            ratio = per_image / baseline
            print(
                f"| {dataset.name} | {name} | {fit_seconds:.1f} | {per_image:.0f} | {ratio:.2f} |"
            )


if __name__ == "__main__":
    main()
