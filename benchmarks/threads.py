"""Fit and predict at 1 and 2 threads, on an idle and on a busy machine, per dataset.

Each measurement runs in a fresh process (torch fixes its inter-op threads once per process),
which sets its thread count with `anomalens.threads.set_threads`, fits the detector (default:
the default ensemble) on the first seeded references and predicts a few test images one at a
time. "Busy" means this
script keeps one pure-Python spinning process per usable core running beside the measurement,
as other jobs on a shared machine would. Prints seconds and the ratio 2 threads / 1 thread
(below 1: two threads are faster) and the 1-minute load average after each pair, since
"idle" is only as idle as the machine's other users leave it.

    .venv/bin/python benchmarks/threads.py [--data-root ../shared/data]
        [--method ensemble] [--shots 4] [--images 4] [--threads 1 2] [--limit 300]
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


def measure(data: Path, method: str, shots: int, images: int, threads: int) -> dict[str, float]:
    """Fit seconds and predict ms per image of a detector on one dataset."""
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
    detector = Detector(method=method).fit(references)
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


def run_worker(args: argparse.Namespace, data: Path, threads: int) -> dict[str, float] | None:
    """One measurement in a fresh process; None when it ran past --limit seconds."""
    command = [sys.executable, __file__, "--worker", str(data), "--threads", str(threads)]
    command += ["--method", args.method, "--shots", str(args.shots), "--images", str(args.images)]
    try:
        done = subprocess.run(
            command, check=True, capture_output=True, text=True, timeout=args.limit
        )
    except subprocess.TimeoutExpired:
        return None
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    parser.add_argument("--method", default="ensemble", help="detection method (default: ensemble)")
    parser.add_argument("--shots", type=int, default=4, help="references per fit")
    parser.add_argument("--images", type=int, default=4, help="test images predicted")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--limit", type=float, default=300, help="seconds one measurement may take (fit+predict)"
    )
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        measured = measure(args.worker, args.method, args.shots, args.images, args.threads[0])
        print(json.dumps(measured))
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
            load = [
                multiprocessing.Process(target=spin, args=(stop,), daemon=True)
                for _ in range(cores)
            ]
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
                if row is None:
                    figures = f"> {args.limit:.0f} (stopped) | | | |"
                elif base is None:
                    figures = f"{row['fit_s']:.1f} | {row['predict_ms']:.0f} | | |"  # no baseline
                else:
                    fit_ratio = row["fit_s"] / base["fit_s"]
                    predict_ratio = row["predict_ms"] / base["predict_ms"]
                    figures = (
                        f"{row['fit_s']:.1f} | {row['predict_ms']:.0f} | {fit_ratio:.2f} | "
                        f"{predict_ratio:.2f} |"
                    )
                print(
                    f"| {data.name} | {machine} | {threads} | {figures} {os.getloadavg()[0]:.1f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
