"""Side by side, per dataset: the default detector in torch, ONNX Runtime, OpenVINO and int8, and
anomalib's PatchCore (../shared/peer) on the same references and test images.

For every dataset under the data root: K seeded references; the peer's runner picks the test
images (evenly spaced over the sorted test set) and its PatchCore (EfficientNet-Lite2, 256 px,
1 thread) is run on them first. The default detector is fitted in torch and exported (ONNX fp32,
ONNX int8), then each runtime predicts those images one at a time in a fresh process per
runtime and thread count (so that its peak memory is its own), printing ms per image split into
decode, preprocessing, backbone, search and post-processing (the rest: scores, ensemble, map,
mask, boxes), the whole prediction over the bare backbone forward, images/s, image AUROC and
peak memory; then our images/s at 1 thread in the fastest runtime over the peer's, and both
AUROCs. Each image is predicted once untimed first (each MTD tile has its own size; see
benchmarks/speed.py). Timings are noisy on a shared machine: read the ratios.

    nice .venv/bin/python benchmarks/deploy_speed.py [--data-root ../shared/data] \
        [--shots 16] [--images 24] [--peer /path/to/peer] [--threads 1 2] [--keep DIR]

With --keep, each dataset's references list, fitted model and exports stay in DIR/<dataset>
(model, onnx, int8), for `anomalens evaluate DATA --model DIR/<dataset>/int8` to measure their
accuracy on the whole test set.
"""

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RUNTIMES = {
    "torch": ("model", "torch"),
    "onnxruntime": ("onnx", "onnxruntime"),
    "openvino": ("onnx", "openvino"),
    "int8 onnxruntime": ("int8", "onnxruntime"),
    "int8 openvino": ("int8", "openvino"),
}
"""Row name -> (exported folder, runtime)."""
STAGES = ("decode", "preprocess", "backbone", "search", "post")


def peak_gib() -> float:
    """Peak resident memory of this process, GiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def fit_worker(work: Path, references: list[str]) -> dict:
    """Fit the default detector, save it and export it as ONNX fp32 and int8."""
    from anomalens import Detector
    from anomalens.runtime import export

    paths = [Path(reference) for reference in references]
    times = [time.perf_counter()]
    Detector().fit(references).save(work / "model")
    times.append(time.perf_counter())
    export(work / "model", work / "onnx", "onnx", references=paths)
    times.append(time.perf_counter())
    export(work / "model", work / "int8", "onnx", int8=True, references=paths)
    times.append(time.perf_counter())
    fit, onnx, int8 = np.diff(times)
    return {"fit_s": fit, "export_s": onnx, "int8_export_s": int8, "peak_gib": peak_gib()}


class Stopwatch:
    """Accumulated seconds per stage, by wrapping the callables that run each stage."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(STAGES, 0.0)
        self.on = False

    def wrap(self, stage: str, function):
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                if self.on:
                    self.seconds[stage] += time.perf_counter() - started

        return timed


def predict_worker(model: Path, runtime: str, threads: int, tests: list[str]) -> dict:
    """Load the model in `runtime` on `threads` threads; time each stage over `tests`."""
    from anomalens import Detector
    from anomalens.io.images import load_image
    from anomalens.runtime.package import feature_extractors
    from anomalens.threads import set_threads

    set_threads(threads)  # what a Detector keeps; torch's own setting it would reset to 1

    detector = Detector.load(model, runtime=runtime)
    watch = Stopwatch()
    for extractor in feature_extractors(detector.method):
        extractor.preprocess = watch.wrap("preprocess", extractor.preprocess)
        extractor._forward = watch.wrap("backbone", extractor._forward)
    for member in getattr(detector.method, "members", [detector.method]):
        member.neighbours.distances = watch.wrap("search", member.neighbours.distances)
    results, total = [], 0.0
    for path in tests:
        started = time.perf_counter()
        image = load_image(path)
        decode = time.perf_counter() - started
        detector.predict([image])  # untimed warm-up for this size
        watch.on = True
        started = time.perf_counter()
        results.append(detector.predict([image])[0])
        total += time.perf_counter() - started
        watch.on = False
        watch.seconds["decode"] += decode
    count = len(tests)
    ms = {stage: 1000 * value / count for stage, value in watch.seconds.items()}
    ms["post"] = 1000 * total / count - ms["preprocess"] - ms["backbone"] - ms["search"]
    ms["predict"] = 1000 * total / count
    return {
        "ms": ms,
        "scores": [result.score for result in results],
        "verdicts": [result.is_anomalous for result in results],
        "boxes": [[(b.x0, b.y0, b.x1, b.y1) for b in result.boxes] for result in results],
        "peak_gib": peak_gib(),
    }


def worker(argv: list[str]) -> None:
    """Run one worker from the command line; print its JSON result."""
    mode, *rest = argv
    if mode == "fit":
        work, listing = rest
        result = fit_worker(Path(work), Path(listing).read_text().split("\n"))
    else:
        model, runtime, threads, listing = rest
        tests = Path(listing).read_text().split("\n")
        result = predict_worker(Path(model), runtime, int(threads), tests)
    print("RESULT " + json.dumps(result))


def run_worker(*args: str) -> dict:
    """A worker's result, run in a fresh interpreter."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    command = [sys.executable, __file__, "--worker", *args]
    output = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    lines = [line for line in output.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        raise RuntimeError(f"worker {args[:2]} failed:\n{output.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def run_peer(peer: Path, dataset_root: Path, references: Path, images: int, out: Path) -> dict:
    """anomalib PatchCore at 1 thread on the references, and the test images it picked."""
    command = [
        str(peer / "venv" / "bin" / "python"),
        str(peer / "run_anomalib.py"),
        "--data",
        str(dataset_root),
        "--model",
        "patchcore",
        "--shots",
        "1",
        "--ref-list",
        str(references),
        "--max-test",
        str(images),
        "--threads",
        "1",
        "--out",
        str(out),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)
    subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    found = np.load(out)
    return {
        "paths": [str(path) for path in found["paths"]],
        "labels": found["labels"].astype(int).tolist(),
        "scores": found["scores"].astype(float).tolist(),
        "predict_ms": float(np.mean(found["predict_ms"])),
        "decode_ms": float(np.mean(found["load_ms"])),
        "fit_s": float(found["fit_s"]),
    }


def auroc(labels: list[int], scores: list[float]) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores)) if len(set(labels)) == 2 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    parser.add_argument("--shots", type=int, default=16)
    parser.add_argument("--images", type=int, default=24, help="test images per dataset")
    parser.add_argument("--peer", type=Path, help="a set-up copy of ../shared/peer (venv inside)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    parser.add_argument("--runtimes", nargs="+", default=list(RUNTIMES), choices=list(RUNTIMES))
    parser.add_argument("--keep", type=Path, help="keep each dataset's models in KEEP/<dataset>")
    parser.add_argument("--worker", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return
    from anomalens.data import discover
    from anomalens.data.shots import seeded_order

    print(f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f} at the start")
    for dataset in discover(args.data_root):
        kept = args.keep / dataset.name if args.keep else None
        if kept:
            kept.mkdir(parents=True)  # a new folder: exports refuse a non-empty one
        with contextlib.nullcontext(kept) if kept else tempfile.TemporaryDirectory() as folder:
            work = Path(folder)
            references = [str(p) for p in seeded_order(dataset.pool, 0)[: args.shots]]
            (work / "references.txt").write_text("\n".join(references))
            peer = None
            if args.peer:
                root = dataset.root
                peer = run_peer(
                    args.peer, root, work / "references.txt", args.images, work / "p.npz"
                )
                tests, labels = peer["paths"], peer["labels"]
            else:
                samples = sorted(dataset.test, key=lambda sample: str(sample.path))
                picked = np.linspace(0, len(samples) - 1, args.images).round().astype(int)
                chosen = [samples[i] for i in sorted(set(picked.tolist()))]
                tests = [str(sample.path) for sample in chosen]
                labels = [sample.label for sample in chosen]
            (work / "tests.txt").write_text("\n".join(tests))
            fit = run_worker("fit", str(work), str(work / "references.txt"))
            print(
                f"\n{dataset.name}: {len(references)} references, {len(tests)} test images; "
                f"fit {fit['fit_s']:.1f} s (peak {fit['peak_gib']:.2f} GiB), ONNX export "
                f"{fit['export_s']:.1f} s, int8 export (calibrate + refit) "
                f"{fit['int8_export_s']:.1f} s"
            )
            print(
                "| runtime | threads | decode | preprocess | backbone | search | post | predict "
                "ms | images/s | predict/backbone | image AUROC | peak GiB |"
            )
            print("| --- " * 12 + "|")
            rows, outputs = {}, {}
            for threads in args.threads:
                for name in args.runtimes:
                    folder_name, runtime = RUNTIMES[name]
                    result = run_worker(
                        "predict",
                        str(work / folder_name),
                        runtime,
                        str(threads),
                        str(work / "tests.txt"),
                    )
                    ms, outputs[(name, threads)] = result["ms"], result
                    rows[(name, threads)] = (ms, auroc(labels, result["scores"]))
                    print(
                        f"| {name} | {threads} | "
                        + " | ".join(f"{ms[stage]:.1f}" for stage in STAGES)
                        + f" | {ms['predict']:.1f} | {1000 / ms['predict']:.2f} | "
                        f"{ms['predict'] / ms['backbone']:.2f} | {rows[(name, threads)][1]:.3f} | "
                        f"{result['peak_gib']:.2f} |"
                    )
            for (name, threads), result in outputs.items():
                reference = outputs.get(("torch", threads))
                if reference is None or name == "torch" or name.startswith("int8"):
                    continue
                change = np.abs(np.array(result["scores"]) / np.array(reference["scores"]) - 1)
                print(
                    f"parity {name} vs torch, {threads} thread(s): image scores within "
                    f"{change.max():.1e} relative, verdicts identical "
                    f"{result['verdicts'] == reference['verdicts']}, boxes identical "
                    f"{result['boxes'] == reference['boxes']}"
                )
            if peer is not None:
                peer_auroc = auroc(peer["labels"], peer["scores"])
                print(
                    f"| anomalib PatchCore (Lite2, 256 px) | 1 | {peer['decode_ms']:.1f} | | | | | "
                    f"{peer['predict_ms']:.1f} | {1000 / peer['predict_ms']:.2f} | | "
                    f"{peer_auroc:.3f} | |"
                )
                for name in (name for name in args.runtimes if (name, 1) in rows):
                    ms, ours = rows[(name, 1)]
                    print(
                        f"{dataset.name}, 1 thread, {name}: images/s "
                        f"{peer['predict_ms'] / ms['predict']:.2f}x the peer's; "
                        f"image AUROC {ours:.3f} against {peer_auroc:.3f}"
                    )


if __name__ == "__main__":
    main()
