"""Why the pixel autoencoder is at chance: measure what its scores follow.

    OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/autoencoder_diagnosis.py \\
        [--data ../shared/data/mtd] [--shots 16] [--test-every 3] [--resolution 128]

Fits the pixel autoencoder (its defaults, and variants of one setting each: SSIM residual, a
four times narrower code, twice the epochs) and the feature autoencoder on the same seeded
references, scores every n-th test image of each folder and prints, per model: image AUROC of
four image scores (top 1% of the map, its maximum, its mean, and the top 1% over the map's
median); how much larger the residual is
inside the defects than around them on defective images (1.0: defects reconstructed as well as
normal texture); the training loss reached; the held-in / held-out gap (test good residual over
the references' own); and, for the inputs themselves, the image AUROC of their mean brightness
and of their pixel standard deviation alone (how far a score that follows texture contrast
gets).
"""

import argparse
from pathlib import Path

import numpy as np

from anomalens.data import discover
from anomalens.data.masks import load_mask
from anomalens.data.shots import seeded_order
from anomalens.evaluation.report import table_header, table_row
from anomalens.io.images import load_image
from anomalens.localization.maps import anomaly_map
from anomalens.methods.autoencoder import AutoencoderMethod
from anomalens.methods.base import Method, top_fraction_mean
from anomalens.methods.feature_autoencoder import FeatureAutoencoderMethod
from anomalens.metrics import image_auroc


def variants(resolution: int) -> dict[str, Method]:
    """The models compared: the pixel autoencoder's defaults, one change each, and the
    feature autoencoder."""
    return {
        "pixel AE (default: L2)": AutoencoderMethod(resolution=resolution),
        "pixel AE, SSIM residual": AutoencoderMethod(resolution=resolution, residual="ssim"),
        "pixel AE, code 4 channels": AutoencoderMethod(resolution=resolution, latent_channels=4),
        "pixel AE, 50 epochs": AutoencoderMethod(resolution=resolution, epochs=50, patience=10),
        "feature AE": FeatureAutoencoderMethod(),
    }


def relative(residual: np.ndarray) -> float:
    """The top 1% of a map over its median: an image score blind to how well the image's
    texture reconstructs overall."""
    return top_fraction_mean(residual) / max(float(np.median(residual)), 1e-12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/mtd"))
    parser.add_argument("--shots", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-every", type=int, default=3)
    parser.add_argument("--resolution", type=int, default=128)
    args = parser.parse_args()
    (dataset,) = discover(args.data)
    references = [load_image(p) for p in seeded_order(dataset.pool, args.seed)[: args.shots]]
    by_type: dict[str, list] = {}
    for sample in dataset.test:
        by_type.setdefault(sample.defect_type, []).append(sample)
    samples = [s for group in by_type.values() for s in group[:: args.test_every]]
    images = [load_image(sample.path) for sample in samples]
    labels = np.array([sample.label for sample in samples])
    masks = [
        load_mask(s.mask_path, image.shape[:2]) if s.mask_path else None
        for s, image in zip(samples, images, strict=True)
    ]
    print(
        f"{args.data.name}: {args.shots} references (seed {args.seed}), {len(samples)} test images"
    )
    grey = [image.mean(axis=2) for image in images]
    brightness = image_auroc(labels, [g.mean() for g in grey])
    contrast = image_auroc(labels, [g.std() for g in grey])
    print(
        f"inputs alone: image AUROC of mean brightness {brightness:.3f}, pixel std {contrast:.3f}"
    )
    headings = [
        "model",
        "AUROC top 1%",
        "AUROC max",
        "AUROC mean",
        "AUROC top 1% / median",
        "defect / around",
        "final loss",
        "test good / refs",
    ]
    print(table_header(headings))
    for name, method in variants(args.resolution).items():
        method.fit(references)
        scored = method.score(images)
        maps = [anomaly_map(s.grid, s.extent, s.image_size, 0.0) for s in scored]
        ratios = []
        for grid, mask in zip(maps, masks, strict=True):
            if mask is not None and mask.any() and (~mask).any():
                ratios.append(grid[mask].mean() / max(grid[~mask].mean(), 1e-12))
        own = np.mean([s.image_score for s in method.score(references)])
        good = np.mean(
            [s.image_score for s, label in zip(scored, labels, strict=True) if label == 0]
        )
        history = getattr(method, "history", None)
        loss = f"{history.losses[history.best_epoch]:.5f}" if history else "–"
        print(
            table_row(
                [
                    name,
                    f"{image_auroc(labels, [s.image_score for s in scored]):.3f}",
                    f"{image_auroc(labels, [m.max() for m in maps]):.3f}",
                    f"{image_auroc(labels, [top_fraction_mean(m, 1.0) for m in maps]):.3f}",
                    f"{image_auroc(labels, [relative(m) for m in maps]):.3f}",
                    f"{np.median(ratios):.2f}",
                    loss,
                    f"{good / own:.2f}",
                ]
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
