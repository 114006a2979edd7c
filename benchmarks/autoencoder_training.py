"""Time the autoencoder's training on the MTD normal images at its default settings.

Usage: .venv/bin/python benchmarks/autoencoder_training.py [DATA] [--holdout]

DATA is an MVTec-AD style category (default ../shared/data/mtd); its train/good images are used.
--holdout times `fit_with_holdout` (what a detector runs: two-fold held-out scores, then the
final fit) instead of a single `fit`. The budget is 5 minutes for 200 images on 2 CPU cores.
"""

import argparse
import os
import time
from pathlib import Path

import torch

from anomalens.io.images import is_image_file, load_image
from anomalens.methods.autoencoder.method import AutoencoderMethod


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default="../shared/data/mtd", type=Path)
    parser.add_argument("--holdout", action="store_true", help="time fit_with_holdout")
    args = parser.parse_args()
    paths = sorted(p for p in (args.data / "train" / "good").iterdir() if is_image_file(p))
    images = [load_image(path) for path in paths]
    method = AutoencoderMethod()
    start, cpu_start = time.perf_counter(), time.process_time()
    if args.holdout:
        method.fit_with_holdout(images, progress=True)
    else:
        method.fit(images, progress=True)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    history = method.history
    print(f"settings: {method.config()}")
    print(
        f"machine: {os.cpu_count()} cores, torch threads: {torch.get_num_threads()}, "
        f"load average: {os.getloadavg()[0]:.1f} (other processes slow the timing down)"
    )
    print(
        f"{'fit_with_holdout' if args.holdout else 'fit'} on {len(images)} images: "
        f"{seconds:.1f} s wall, {cpu_seconds:.1f} s CPU; final fit {len(history.losses)} epochs, "
        f"final loss {history.losses[-1]:.5f}, kept epoch {history.best_epoch + 1} "
        f"(loss {history.losses[history.best_epoch]:.5f})"
    )


if __name__ == "__main__":
    main()
