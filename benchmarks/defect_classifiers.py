"""Naming ground-truth regions: the prototype rule and logistic regression on region
embeddings against EfficientNet-Lite0 fine-tuned on crops (plain, class-weighted, augmented).

    OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/defect_classifiers.py DATA
        [--shots 1 5 10 20 all] [--episodes 3] [--steps 60] [--classifiers ...]

DATA is one MVTec-AD category: its boxes/ (typed boxes, as DeepPCB) or else its masks (one
region per image, typed by its folder) are the regions. Each episode draws K regions of every
type as training examples (K = all: half of each type's regions) and queries the others; every
classifier trains on the same draw. Prints accuracy and macro-F1 (mean [95% interval]) per K.
"""

import argparse
import sys
import time
from collections import defaultdict

import numpy as np
import torch
from sklearn.metrics import f1_score

from anomalens.cli.evaluate_types import shots_value, single_dataset
from anomalens.data.masks import load_mask
from anomalens.defect_types.embedding import RegionEmbedder
from anomalens.defect_types.episodes import Estimate, _logistic_regression, _matcher
from anomalens.defect_types.supervised import VARIANTS, CropClassifier, crop
from anomalens.evaluation.typed_runs import ALL, truth_regions
from anomalens.io.images import load_image


def regions(data, embedder: RegionEmbedder):
    """(embeddings, crops, labels) of every ground-truth region of the defective test images."""
    rows, crops, labels = [], [], []
    for sample in single_dataset(data).test:
        if sample.label == 0:
            continue
        image = load_image(sample.path)
        if sample.boxes is not None:
            truth, masks = truth_regions(sample, image.shape[:2])
        elif sample.mask_path is not None:
            mask = load_mask(sample.mask_path, image.shape[:2])
            if not mask.any():
                continue
            ys, xs = np.nonzero(mask)
            truth, masks = (
                [((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1), sample.defect_type)],
                [mask],
            )
        else:
            continue
        [embedded] = embedder.embed([image], [np.ones(image.shape[:2], np.float32)], [masks])
        rows += list(embedded)
        crops += [crop(image, bounds) for bounds, _ in truth]
        labels += [kind for _, kind in truth]
    return np.stack(rows), torch.stack(crops), labels


def draw(targets: np.ndarray, shots, rng: np.random.Generator):
    support = []
    for kind in np.unique(targets):
        members = rng.permutation(np.flatnonzero(targets == kind))
        support += list(members[: len(members) // 2 if shots == ALL else shots])
    support = np.sort(support)
    return support, np.setdiff1d(np.arange(len(targets)), support)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--shots", type=shots_value, nargs="+", default=[1, 5, 10, 20, ALL])
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--classifiers", nargs="+", default=["prototype", "logistic", *VARIANTS])
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    embeddings, crops, labels = regions(args.data, RegionEmbedder())
    types = sorted(set(labels))
    targets = np.array([types.index(label) for label in labels])
    print(
        f"{args.data}: {len(labels)} regions, "
        + ", ".join(f"{t} {labels.count(t)}" for t in types)
        + f" ({time.perf_counter() - started:.0f} s)",
        file=sys.stderr,
    )
    rng = np.random.default_rng(0)
    print("| K | classifier | accuracy | macro-F1 | s per episode |\n|---|---|---|---|---|")
    for shots in args.shots:
        values = defaultdict(lambda: defaultdict(list))
        for episode in range(args.episodes):
            support, queries = draw(targets, shots, rng)
            for name in args.classifiers:
                tick = time.perf_counter()
                if name == "prototype":
                    predicted = _matcher("both")(
                        embeddings[support], targets[support], embeddings[queries]
                    ).types
                elif name == "logistic":
                    predicted = _logistic_regression(
                        embeddings[support], targets[support], embeddings[queries]
                    ).types
                else:
                    model = CropClassifier(name, steps=args.steps, seed=episode)
                    predicted = (
                        model.fit(crops[support], targets[support])
                        .predict_proba(crops[queries])
                        .argmax(1)
                    )
                truth = targets[queries]
                values[name]["accuracy"].append(float(np.mean(predicted == truth)))
                values[name]["macro_f1"].append(float(f1_score(truth, predicted, average="macro")))
                values[name]["seconds"].append(time.perf_counter() - tick)
        for name in args.classifiers:
            cells = [Estimate.of(values[name][m]) for m in ("accuracy", "macro_f1")]
            text = " | ".join(f"{c.mean:.3f} [{c.low:.3f}, {c.high:.3f}]" for c in cells)
            print(
                f"| {shots} | {name} | {text} | {np.mean(values[name]['seconds']):.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
