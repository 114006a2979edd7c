"""Size, load time, fit time and peak memory of a model with many references, and what a smaller
bank would cost in image score.

Fits the default detector on K seeded references of one dataset, saves it, and prints fit
seconds, peak resident memory, model size on disk, load seconds, whether the loaded model's
image scores are bit-identical to the fitted one's, and for each member with an approximate
index the relative change of the image score against exact search of the same bank and the
seconds to restore its index.

    OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/model_size.py \
        [--data ../shared/data/mtd] [--shots 200] [--images 8]
"""

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from anomalens import Detector
from anomalens.data import discover
from anomalens.data.shots import seeded_order
from anomalens.io.images import load_image
from anomalens.memory.knn import NearestNeighbours


def peak_gib() -> float:
    """Peak resident memory of this process so far, GiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def exact_change(member, images: list[np.ndarray]) -> float:
    """Largest relative change of `member`'s image score, its own index (and `exact_top`, where
    the member sets it) against exact search of its bank."""
    own = [scores.image_score for scores in member.score(images)]
    index = member.neighbours
    exact = NearestNeighbours(index.metric, approximate=False)
    member.neighbours = exact.restore(index.saved_bank, index.owners)
    try:
        exact = [scores.image_score for scores in member.score(images)]
    finally:
        member.neighbours = index
    return float(np.max(np.abs(np.array(own) / np.array(exact) - 1)))


def restore_seconds(index: NearestNeighbours) -> float:
    """Seconds to restore `index` from its saved lists."""
    started = time.perf_counter()
    NearestNeighbours(index.metric).restore(index.saved_bank, index.owners, lists=index.lists)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/mtd"))
    parser.add_argument("--shots", type=int, default=200)
    parser.add_argument("--images", type=int, default=8, help="test images scored")
    args = parser.parse_args()
    (dataset,) = discover(args.data)
    references = seeded_order(dataset.pool, 0)[: args.shots]
    step = max(len(dataset.test) // args.images, 1)
    images = [load_image(sample.path) for sample in dataset.test[::step][: args.images]]
    started = time.perf_counter()
    detector = Detector().fit(references)
    print(f"{dataset.name}: {len(references)} references")
    print(f"fit            {time.perf_counter() - started:.1f} s, peak {peak_gib():.2f} GiB")
    expected = [result.score for result in detector.predict(images)]
    with tempfile.TemporaryDirectory() as folder:
        detector.save(Path(folder) / "model")
        size = sum(f.stat().st_size for f in (Path(folder) / "model").iterdir())
        print(f"model          {size / 2**20:.1f} MiB on disk")
        started = time.perf_counter()
        loaded = Detector.load(Path(folder) / "model")
        print(f"load           {time.perf_counter() - started:.2f} s")
    identical = [result.score for result in loaded.predict(images)] == expected
    print(f"after load     image scores bit-identical: {identical}")
    del loaded
    for number, member in enumerate(getattr(detector.method, "members", [detector.method])):
        rows = len(member.neighbours.bank)
        if not member.neighbours.is_approximate:
            print(f"member {number}       {rows} rows, exact search")
            continue
        change = exact_change(member, images)
        print(
            f"member {number}       {rows} rows; image score vs exact search: max {change:.3%}; "
            f"index restored from its lists in {restore_seconds(member.neighbours):.2f} s"
        )
    print(f"peak           {peak_gib():.2f} GiB")


if __name__ == "__main__":
    main()
