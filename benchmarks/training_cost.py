"""CPU cost of fitting each trained method at its defaults, projected to 200 references.

    OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/training_cost.py [--data ../shared/data/mtd]

Training runs a fixed number of steps on batches drawn with replacement, so its cost does not
depend on the number of references; only the inputs (backbone features, resized images) grow
with them. For each method this measures, in CPU seconds of this process (one thread, so the
figures hold on a machine shared with other jobs), the inputs of 8 references per image and a
shortened training (a tenth of the steps) per step, and prints the projected fit of 200
references: 200 × input + folds × steps × step.
"""

import argparse
import time
from pathlib import Path

import torch

from anomalens.data import discover
from anomalens.data.shots import seeded_order
from anomalens.evaluation.report import table_header, table_row
from anomalens.io.images import load_image
from anomalens.methods import create_method
from anomalens.methods.trained import TrainedMethod

METHODS = ["feature_autoencoder", "fastflow", "stfpm", "efficientad", "fanogan"]
STEP_OPTIONS = {
    "feature_autoencoder": ("steps",),
    "fastflow": ("steps",),
    "stfpm": ("steps",),
    "efficientad": ("steps",),
    "fanogan": ("gan_steps", "encoder_steps"),
}
"""The options that count each method's training steps."""
REFERENCES = 200


def measure(name: str, images: list) -> tuple[float, int, float, int]:
    """CPU seconds of `name`'s inputs per image and per training step (a tenth of its default
    steps), its default steps in all and its fold count."""
    default: TrainedMethod = create_method(name)  # type: ignore[assignment]
    config = default.config()
    steps = {option: config[option] for option in STEP_OPTIONS[name]}
    short: TrainedMethod = create_method(  # type: ignore[assignment]
        name, **{option: max(count // 10, 1) for option, count in steps.items()}
    )
    start = time.process_time()
    inputs = short.inputs(images)
    per_image = (time.process_time() - start) / len(images)
    start = time.process_time()
    short.train_network(inputs, False, name)
    per_step = (time.process_time() - start) / sum(max(n // 10, 1) for n in steps.values())
    return per_image, sum(steps.values()), per_step, default.folds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/mtd"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    (dataset,) = discover(args.data)
    images = [load_image(path) for path in seeded_order(dataset.pool, 0)[:8]]
    print(f"{args.data.name}, 8 references, one thread; CPU seconds")
    headings = ["method", "input s / image", "steps", "step s", "projected fit of 200 s"]
    print(table_header(headings))
    for name in METHODS:
        per_image, steps, per_step, folds = measure(name, images)
        projected = REFERENCES * per_image + folds * steps * per_step
        row = [name, f"{per_image:.3f}", str(steps), f"{per_step:.3f}", f"{projected:.0f}"]
        print(table_row(row), flush=True)


if __name__ == "__main__":
    main()
