"""Load test of a running `anomalens serve`: concurrent clients inspecting images on loopback.

Usage:
    .venv/bin/anomalens serve --models /tmp/load-models &
    .venv/bin/python benchmarks/load_service.py [DATA] [--url http://127.0.0.1:8000]

DATA is an MVTec-AD style category (default ../shared/data/mtd). The model --model is created
from --shots of its train/good images when the server does not have it yet. Then --clients
threads each post one test image at a time (cycling through DATA/test) to the model's inspect
endpoint for --seconds, and the script prints requests/s, p50/p95 latency and the errors (which
must be 0). Only loopback URLs are accepted.
"""

import argparse
import os
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np

from anomalens.cli.serve import is_loopback
from anomalens.io.images import is_image_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default="../shared/data/mtd", type=Path)
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the running server")
    parser.add_argument("--model", default="load-test", help="model to inspect with")
    parser.add_argument("--shots", type=int, default=8, help="good images to fit a new model on")
    parser.add_argument("--resolution", type=int, default=320, help="resolution of a new model")
    parser.add_argument("--clients", type=int, default=20, help="concurrent clients")
    parser.add_argument("--seconds", type=float, default=60, help="how long the clients run")
    parser.add_argument("--no-pictures", action="store_true", help="ask for JSON only")
    args = parser.parse_args()
    if not is_loopback(urlparse(args.url).hostname or ""):
        parser.error(f"{args.url}: only loopback servers may be load-tested")
    good = _images(args.data / "train" / "good")[: args.shots]
    tests = _images(args.data / "test")
    with httpx.Client(base_url=args.url, timeout=600) as client:
        _ensure_model(client, args.model, good, args.resolution)
    latencies, errors, elapsed = _run_clients(args, [path.read_bytes() for path in tests])
    _report(args, latencies, errors, elapsed)


def _images(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if is_image_file(path))


def _ensure_model(client: httpx.Client, model: str, good: list[Path], resolution: int) -> None:
    if client.get(f"/api/models/{model}").status_code == 200:
        return
    files = [("files", (path.name, path.read_bytes())) for path in good]
    response = client.post(
        "/api/models", data={"name": model, "resolution": str(resolution)}, files=files
    )
    response.raise_for_status()
    job = response.json()
    started = time.perf_counter()
    while job["state"] not in ("done", "failed"):
        time.sleep(0.5)
        job = client.get(f"/api/jobs/{job['id']}").json()
    if job["state"] == "failed":
        raise SystemExit(f"fitting {model} failed: {job['error']}")
    print(f"fitted {model} on {len(good)} images in {time.perf_counter() - started:.1f} s")


def _run_clients(
    args: argparse.Namespace, images: list[bytes]
) -> tuple[list[float], list[str], float]:
    """Run the clients until --seconds have passed; return every latency, every error and the
    seconds they ran."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop_at = time.perf_counter() + args.seconds
    path = f"/api/models/{args.model}/inspect?pictures={str(not args.no_pictures).lower()}"

    def client_loop(offset: int) -> None:
        with httpx.Client(base_url=args.url, timeout=120) as client:
            index = offset
            while time.perf_counter() < stop_at:
                data = images[index % len(images)]
                index += args.clients
                start = time.perf_counter()
                try:
                    response = client.post(path, files=[("files", (f"{index}.jpg", data))])
                    problem = None if response.status_code == 200 else response.text[:200]
                except httpx.HTTPError as error:
                    problem = f"{type(error).__name__}: {error}"
                with lock:
                    latencies.append(time.perf_counter() - start)
                    if problem:
                        errors.append(problem)

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(args.clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors, time.perf_counter() - started


def _report(
    args: argparse.Namespace, latencies: list[float], errors: list[str], elapsed: float
) -> None:
    milliseconds = np.array(latencies) * 1000
    p50, p95 = np.percentile(milliseconds, [50, 95])
    print(
        f"{args.clients} clients, {elapsed:.1f} s, pictures {not args.no_pictures}, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}"
    )
    print(f"requests: {len(latencies)}, {len(latencies) / elapsed:.2f} requests/s")
    print(f"latency: p50 {p50:.0f} ms, p95 {p95:.0f} ms")
    print(f"errors: {len(errors)}")
    for problem in sorted(set(errors))[:5]:
        print(f"  {problem}")


if __name__ == "__main__":
    main()
