"""Detector settings side by side on one dataset, sharing its test images' backbone features.

    .venv/bin/python benchmarks/discriminator.py DATA [--shots 16] [--seed 0]
        [--setting '{"method": "discriminator", "noise_std": 0.03}' ...]

Each setting is a JSON object of Detector keywords; the default compares the default
AnomalyDINO with the default discriminator. Every setting is one run of the evaluation protocol
(`anomalens evaluate`: the seeded references, every other test image), inside one feature cache
so that a test image passes through the backbone once per backbone configuration; fit seconds
and ms per image count the cached backbone time back in, as `evaluate` does.
"""

import argparse
import json
from pathlib import Path

from anomalens.data import discover
from anomalens.evaluation.protocol import EvaluationSettings, run_once
from anomalens.features import shared_feature_cache

DEFAULT_SETTINGS = ['{"method": "anomalydino"}', '{"method": "discriminator"}']
COLUMNS = ("image_auroc", "pixel_auroc", "aupro")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--shots", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--setting", action="append", metavar="JSON")
    args = parser.parse_args()
    (dataset,) = discover(args.data)
    print(f"{dataset.name}, {args.shots} references, seed {args.seed}")
    print(" | ".join(["setting", *COLUMNS, "fit s", "ms/image"]))
    with shared_feature_cache() as cache:
        for text in args.setting or DEFAULT_SETTINGS:
            params = json.loads(text)
            settings = EvaluationSettings(method=params.pop("method", None), method_params=params)
            run = run_once(args.data, dataset, settings, args.shots, args.seed, None, False, cache)
            figures = [f"{run.metrics[name]:.3f}" for name in COLUMNS]
            timing = [f"{run.fit_seconds:.1f}", f"{run.ms_per_image:.0f}"]
            print(" | ".join([text, *figures, *timing]), flush=True)


if __name__ == "__main__":
    main()
