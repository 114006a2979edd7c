"""End-to-end typed box figures (`evaluate-types --boxes`) from the maps `region_maps.py`
cached, so that the pixel threshold's rate can be chosen without refitting or predicting again.

    OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/typed_boxes.py MAPS.npz DATA
        [--box-false-alarm 0.2 ...] [--hysteresis 0.8] [--shots 1 5 10 all] [--episodes 20]
        [--classifier plain|weighted|augmented] [-o report/]

Per rate: the pixel threshold is the log-normal bound of the held-out maps' maxima at that rate
(as `Detector.fit` sets it), the boxes are the detector's (`extract_regions`: hysteresis 0.8,
minimum area 16), each test image is embedded once, and the episodes of
`anomalens.evaluation.typed_runs` run on them.
Prints the report of each rate; with -o writes RATE/metrics.json and report.md.
"""

import argparse
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from anomalens.calibration import calibrate
from anomalens.cli.evaluate_types import shots_value, single_dataset
from anomalens.defect_types.supervised import VARIANTS, CropClassifier
from anomalens.detector import BOX_FALSE_ALARM, HYSTERESIS, Detector
from anomalens.evaluation.typed_report import typed_report, typed_summary
from anomalens.evaluation.typed_runs import embed_image, run_episodes
from anomalens.io.atomic import write_json, write_text
from anomalens.io.images import load_image
from anomalens.localization.regions import extract_regions
from anomalens.results import Result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("maps", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("--box-false-alarm", type=float, nargs="+", default=[BOX_FALSE_ALARM])
    parser.add_argument("--shots", type=shots_value, nargs="+", default=[1, 5, 10, "all"])
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--min-area", type=int, default=16)
    parser.add_argument("--hysteresis", type=float, default=HYSTERESIS)
    parser.add_argument("--classifier", choices=VARIANTS)
    parser.add_argument("-o", "--output", type=Path)
    args = parser.parse_args()
    cached = np.load(args.maps)
    meta = json.loads(str(cached["meta"]))
    held_out = np.array([cached[k].max() for k in cached.files if k.startswith("held_out_")])
    by_path = {str(sample.path): sample for sample in single_dataset(args.data).test}
    samples = [by_path[path] for path in meta["paths"]]
    pictures = [load_image(sample.path) for sample in samples]
    embedder = Detector().defect_types.embedder
    for rate in args.box_false_alarm:
        threshold = calibrate(held_out.astype(np.float64), rate).value
        skipped: list[str] = []
        images = []
        for index, (sample, picture) in enumerate(
            tqdm(list(zip(samples, pictures, strict=True)), desc=f"rate {rate}")
        ):
            anomaly_map = cached[f"test_{index}"].astype(np.float32)
            mask, boxes = extract_regions(anomaly_map, threshold, args.hysteresis, args.min_area)
            result = Result(meta["scores"][index], anomaly_map, mask, boxes)
            found = embed_image(embedder, sample, picture, result, skipped)
            images += [found] if found else []
        classifier = CropClassifier(args.classifier) if args.classifier else None
        episodes = run_episodes(images, args.shots, args.episodes, 0, classifier)
        settings = argparse.Namespace(
            data=args.data, episodes=args.episodes, seed=[0], classifier=args.classifier
        )
        detector = {
            "maps": str(args.maps),
            "box_false_alarm": rate,
            "hysteresis": args.hysteresis,
            "pixel_threshold": threshold,
        }
        summary = typed_summary(settings, detector, episodes, skipped)
        report = typed_report(summary)
        print(f"## box_false_alarm {rate}: pixel threshold {threshold:.4f}\n\n{report}", flush=True)
        if args.output:
            write_json(args.output / str(rate) / "metrics.json", summary)
            write_text(args.output / str(rate) / "report.md", report)


if __name__ == "__main__":
    main()
