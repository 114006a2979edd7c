"""What the banks' repeated rows and the exact re-search of the top patches cost and buy, per
member of saved ensemble models, against exact search of the same bank.

For each model (a saved default detector, e.g. a `deploy_speed.py --keep` folder) and each of
its members: the bank's rows as saved and as `NearestNeighbours.fit` now keeps them (repeated
rows of one reference dropped), then on --images test images of DATA (evenly spaced over the
sorted test set) the ms per image of the saved index, of the refitted one, and of the refitted
one with the top patches re-searched exactly (`exact_top`, as many as the member's image score
reads), and the largest relative change of the image score (mean of those top patches) of each
against exact search of the saved bank. One thread.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/search_exactness.py MODEL:DATA [MODEL:DATA ...]
        [--images 16]
"""

import argparse
import time
from pathlib import Path

import faiss
import numpy as np

from anomalens.detector import Detector
from anomalens.evaluation.report import table_header, table_row
from anomalens.io.images import load_image
from anomalens.memory.knn import NearestNeighbours, flat_index
from anomalens.methods.anomalydino import AnomalyDINO
from anomalens.methods.base import top_count
from anomalens.threads import set_threads

COLUMNS = [
    "model",
    "member",
    "rows saved",
    "rows kept",
    "saved index ms",
    "refitted ms",
    "+ exact top ms",
    "saved index change",
    "refitted change",
    "+ exact top change",
]


def timed(search, queries: np.ndarray) -> tuple[np.ndarray, float]:
    """Nearest distances (Q,) of `search(queries)` and its milliseconds."""
    start = time.perf_counter()
    distances = search(queries)[0][:, 0]
    return distances, 1000 * (time.perf_counter() - start)


def member_row(name: str, index: int, member: AnomalyDINO, images: list[np.ndarray]) -> list[str]:
    """The table row of one member: bank rows, ms per image and largest score changes."""
    saved = member.neighbours
    refitted = NearestNeighbours(saved.metric).fit(saved.bank, saved.owners)
    exact = flat_index(saved.bank.shape[1], faiss.METRIC_INNER_PRODUCT)
    exact.add(np.ascontiguousarray(saved.bank))
    times, changes = np.zeros(3), np.zeros(3)
    for image in images:
        grid = member.patch_grids([image])[0]
        queries = np.ascontiguousarray(grid.features.reshape(-1, grid.features.shape[-1]))
        count = top_count(len(queries), member.top_fraction, member.min_top_patches)
        truth = np.sort(1.0 - exact.search(queries, 1)[0][:, 0])[-count:].mean()
        searches = (
            saved.distances,
            refitted.distances,
            lambda q, count=count: refitted.distances(q, exact_top=count),
        )
        for column, search in enumerate(searches):
            distances, ms = timed(search, queries)
            times[column] += ms / len(images)
            score = np.sort(distances)[-count:].mean()
            changes[column] = max(changes[column], abs(score / truth - 1))
    return [
        name,
        str(index),
        f"{len(saved.bank):,}",
        f"{len(refitted.bank):,}",
        *[f"{value:.0f}" for value in times],
        *[f"{value:.2%}" for value in changes],
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs", nargs="+", help="MODEL:DATA, a saved ensemble and its dataset")
    parser.add_argument("--images", type=int, default=16)
    args = parser.parse_args()
    set_threads(1)
    faiss.omp_set_num_threads(1)
    print(table_header(COLUMNS))
    for pair in args.pairs:
        model, data = (Path(part) for part in pair.split(":"))
        detector = Detector.load(model)
        tests = sorted(path for path in (data / "test").rglob("*") if path.is_file())
        step = max(1, len(tests) // args.images)
        images = [load_image(path) for path in tests[::step][: args.images]]
        for index, member in enumerate(detector.method.members):
            print(table_row(member_row(data.name, index, member, images)), flush=True)


if __name__ == "__main__":
    main()
