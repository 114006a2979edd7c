"""Fit and predict at 1 and 2 threads, on an idle and on a busy machine, per dataset.

Each measurement runs in a fresh process (torch fixes its inter-op threads once per process),
which sets its thread count with `anomalens.threads.set_threads`, fits the default detector on
the first seeded references and predicts a few test images one at a time. "Busy" means this
script keeps one pure-Python spinning process per usable core running beside the measurement,
as other jobs on a shared machine would. Prints seconds and the ratio 2 threads / 1 thread
(below 1: two threads are faster) and the 1-minute load average after each pair, since
"idle" is only as idle as the machine's other users leave it.

    .venv/bin/python benchmarks/threads.py [--data-root ../shared/data]
        [--shots 4] [--images 4] [--threads 1 2]
"""

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import time
from multiprocessing.synchronize import Event
from pathlib import Path


def measure(data: Path, shots: int, images: int, threads: int) -> dict[str, float]:
    """Fit seconds and predict ms per image of the default detector on one dataset."""
    from anomalens import Detector
    from anomalens.data import discover
    from anomalens.data.shots import seeded_order
    from anomalens.io.images import load_image
    from anomalens.threads import set_threads

    set_threads(threads)
    (dataset,) = discover(data)
    references = [load_image(path) for path in seeded_order(dataset.pool, 0)[:shots]]
    step = max(len(dataset.test) // images, 1)
    tests = [load_image(sample.path) for sample in dataset.test[::step][:images]]
    started = time.perf_counter()
    detector = Detector().fit(references)
    fitted = time.perf_counter()
    for image in tests:
        detector.predict([image])
    done = time.perf_counter()
    return {"fit_s": fitted - started, "predict_ms": 1000 * (done - fitted) / len(tests)}


def spin(stop: Event) -> None:
    """A competing CPU load: count until told to stop."""
    count = 0
    while not stop.is_set():
        for _ in range(100_000):
            count += 1


def run_worker(args: argparse.Namespace, data: Path, threads: int) -> dict[str, float]:
    command = [sys.executable, __file__, "--worker", str(data), "--threads", str(threads)]
    command += ["--shots", str(args.shots), "--images", str(args.images)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    parser.add_argument("--shots", type=int, default=4, help="references per fit")
    parser.add_argument("--images", type=int, default=4, help="test images predicted")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(args.worker, args.shots, args.images, args.threads[0])))
        return
    cores = len(os.sched_getaffinity(0))
    first, *others = args.threads
    print(f"{cores} usable cores; load average {os.getloadavg()[0]:.2f} at the start (1 min)")
    print(
        "| dataset | machine | threads | fit s | predict ms/image | fit ratio | predict ratio "
        "| load avg |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for data in sorted(path for path in args.data_root.iterdir() if path.is_dir()):
        for machine in ("idle", "busy"):
            stop = multiprocessing.Event()
            load = [multiprocessing.Process(target=spin, args=(stop,)) for _ in range(cores)]
            for process in load if machine == "busy" else []:
                process.start()
            try:
                timings = {threads: run_worker(args, data, threads) for threads in args.threads}
            finally:
                stop.set()
                for process in load if machine == "busy" else []:
                    process.join()
            base = timings[first]
            for threads in [first, *others]:
                row = timings[threads]
                fit_ratio = row["fit_s"] / base["fit_s"]
                predict_ratio = row["predict_ms"] / base["predict_ms"]
                print(
                    f"| {data.name} | {machine} | {threads} | {row['fit_s']:.1f} | "
                    f"{row['predict_ms']:.0f} | {fit_ratio:.2f} | {predict_ratio:.2f} | "
                    f"{os.getloadavg()[0]:.1f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
