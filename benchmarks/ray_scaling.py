"""Images per second of `predict --engine ray` against the number of workers, beside the local
engine, with the overheads that decide how it scales: model load per actor, and serialisation
per image (an outcome's record and PNGs shipped from the actor to the driver).

    OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/ray_scaling.py [--data ../shared/data/mtd]
        [--references 8] [--images 48] [--workers 1 2] [--batch-size 8] [--method anomalydino]

A model is fitted on the first references of the dataset's train/good folder and saved to a
temporary folder; the first test images (sorted) are inspected by the local engine and by a
Ray actor pool of each size on a local cluster started once (`ray.init(num_cpus=max workers)`).
Each engine's time runs from the first item handed over to the last outcome received, so the
Ray figures include starting the actors and loading the model in each. stdout gets a markdown
table and the overheads; the expected scaling is printed from them.
"""

import argparse
import functools
import pickle
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from anomalens.batch.local import LocalEngine
from anomalens.batch.outcomes import Outcome
from anomalens.batch.ray_engine import RayEngine
from anomalens.batch.sources import Item, discover
from anomalens.detector import Detector


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/mtd"))
    parser.add_argument("--references", type=int, default=8)
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--method", default="anomalydino")
    args = parser.parse_args()
    import ray

    references, _ = discover([str(args.data / "train" / "good")])
    items, _ = discover([str(args.data / "test")])
    items = items[: args.images]
    with tempfile.TemporaryDirectory() as folder:
        model = Path(folder) / "model"
        Detector(method=args.method).fit([r.source for r in references[: args.references]]).save(
            model
        )
        load = functools.partial(Detector.load, model)
        start = time.perf_counter()
        detector = load()
        load_seconds = time.perf_counter() - start
        rows = [("local", 1, *timed(LocalEngine(detector, args.batch_size), items))]
        ray.init(num_cpus=max(args.workers), include_dashboard=False, logging_level="warning")
        actor_load = ray.get(ray.remote(timed_load).remote(load))
        for workers in args.workers:
            engine = RayEngine(load, workers=workers, batch_size=args.batch_size)
            rows.append(("ray", workers, *timed(engine, items)))
        outcome = next(LocalEngine(detector).outcomes(items[:1]))
        shipped = ray.get(ray.remote(echo).remote(outcome.columns()))  # warm the path
        start = time.perf_counter()
        for _ in range(20):
            shipped = ray.get(ray.remote(echo).remote(outcome.columns()))
        round_trip = (time.perf_counter() - start) / 20
        assert Outcome.from_columns(**shipped).record == outcome.record
        ray.shutdown()
    local_rate = rows[0][3]
    print(f"{len(items)} images of {args.data.name}, {args.method}, {args.references} references")
    print("\n| engine | workers | s | images/s | vs local |\n| --- | --- | --- | --- | --- |")
    for engine_name, workers, seconds, rate in rows:
        print(
            f"| {engine_name} | {workers} | {seconds:.1f} | {rate:.2f} | {rate / local_rate:.2f} |"
        )
    size = len(pickle.dumps(outcome.columns()))
    per_image = 1 / local_rate
    print(
        f"\nmodel load: {load_seconds:.2f} s in this process, {actor_load:.2f} s in an actor; "
        f"an outcome is {size / 1024:.0f} KiB (record and PNGs), a task round trip carrying one "
        f"{round_trip * 1000:.1f} ms against {per_image * 1000:.0f} ms of inspection per image"
    )
    batch = args.batch_size
    efficiency = per_image / (per_image + round_trip / batch)
    print(
        f"expected: W workers on W free cores inspect about W x {local_rate:.2f} x "
        f"{efficiency:.3f} images/s once started (shipping a batch of {batch} costs at most one "
        f"round trip), plus {actor_load:.1f} s per actor to load the model"
    )
    return 0


def timed(engine: LocalEngine | RayEngine, items: list[Item]) -> tuple[float, float]:
    """(seconds, images per second) for `engine` to return an outcome for every item."""
    start = time.perf_counter()
    count = sum(1 for _ in engine.outcomes(items))
    seconds = time.perf_counter() - start
    print(f"  {type(engine).__name__}: {count} outcomes in {seconds:.1f} s", file=sys.stderr)
    return seconds, count / seconds


def timed_load(load: functools.partial) -> float:
    start = time.perf_counter()
    load()
    return time.perf_counter() - start


def echo(columns: dict) -> dict:
    return columns


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    sys.exit(main())
