"""Cache the default detector's anomaly maps once per dataset and seed, so that region
extraction (pixel threshold, minimum area, splitting, merging) can be swept without refitting.

    OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/region_maps.py DATA [--shots 16]
        [--seed 0] [-o maps/NAME-SEED.npz] [--param KEY=VALUE ...]

Writes one .npz: "test_<i>" float16 maps of the test images that are not references,
"held_out_<i>" float16 held-out maps of the references (each scored by a model without it, or
quadrants below 8 references), the test image scores, the paths, and the detector's thresholds;
for an ensemble also "member<j>_test_<i>" and "member<j>_held_out_<i>" float16, each member's
normalised patch grid of test image or held-out reference i, and its "extent<j>_...", so that
maps of other combinations and smoothings, and their thresholds, can be rebuilt.
"""

import argparse
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from anomalens.cli.options import detector_params
from anomalens.data import discover
from anomalens.data.shots import seeded_order
from anomalens.detector import Detector
from anomalens.evaluation.protocol import test_samples
from anomalens.io.images import load_image


def member_arrays(detector: Detector, members, key: str) -> dict[str, np.ndarray]:
    """Each member's normalised patch grid ("member<j>_<key>", float16) and extent."""
    arrays = {}
    for j, part in enumerate(members):
        grid = part.grid / float(detector.method.map_scale[j])
        arrays[f"member{j}_{key}"] = grid.astype(np.float16)
        arrays[f"extent{j}_{key}"] = np.array(part.extent)
    return arrays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--shots", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--param", action="append", default=[])
    parser.add_argument("-o", "--output", type=Path)
    args = parser.parse_args()
    dataset = discover(args.data)[0]
    output = args.output or Path("maps") / f"{dataset.name}-{args.seed}.npz"
    references = seeded_order(dataset.pool, args.seed)[: args.shots]
    detector = Detector(seed=args.seed, **detector_params(args.param))
    held_out: list = []
    fit_with_holdout = detector._fit_with_holdout
    detector._fit_with_holdout = lambda *a: held_out.extend(fit_with_holdout(*a)) or held_out
    parts: list = []
    if hasattr(detector.method, "_combined"):
        combined = detector.method._combined
        detector.method._combined = lambda p: parts.append(p) or combined(p)
    detector.fit([load_image(path) for path in references], progress=True)
    arrays = {f"held_out_{i}": detector._map(s).astype(np.float16) for i, s in enumerate(held_out)}
    for i, members in enumerate(parts[-len(held_out) :] if parts else []):
        arrays |= member_arrays(detector, members, f"held_out_{i}")
    parts.clear()
    test = test_samples(dataset, references)
    scores = []
    for i, sample in enumerate(tqdm(test, desc="predicting")):
        result = detector.predict([sample.path])[0]
        arrays[f"test_{i}"] = result.anomaly_map.astype(np.float16)
        scores.append(result.score)
        arrays |= member_arrays(detector, parts.pop() if parts else [], f"test_{i}")
    meta = {
        "paths": [str(sample.path) for sample in test],
        "labels": [sample.label for sample in test],
        "types": [sample.defect_type for sample in test],
        "scores": scores,
        "thresholds": {k: t.value for k, t in detector.thresholds.items()},
        "references": [str(path) for path in references],
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(output, meta=np.array(json.dumps(meta)), **arrays)
    print(output, meta["thresholds"])


if __name__ == "__main__":
    main()
