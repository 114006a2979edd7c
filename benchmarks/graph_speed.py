"""The default ensemble's two backbone graphs alone, in torch, ONNX Runtime and OpenVINO, float32
and int8, side by side in one process on the same inputs.

Exports EfficientNet-Lite0's coarse graph (s16 + s32_early) and fine graph (s8), quantises each
to int8 calibrated on a few references of a dataset (as `anomalens export --int8` does), and
prints ms per forward pass at a 320 x 416 input (a coarse member's MTD tile) and a 640 x 640
input (a fine member's DeepPCB crop), the int8 speed-up in each runtime, and the largest
absolute difference of each fp32 graph's features from torch's.

    OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/graph_speed.py [--threads 1] \
        [--data ../shared/data/mtd] [--repeats 5]
"""

import argparse
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
import torch

from anomalens.backbones import load_backbone
from anomalens.data import discover
from anomalens.data.shots import seeded_order
from anomalens.features import NATIVE, FeatureExtractor
from anomalens.io.images import load_image
from anomalens.runtime.graphs import export_onnx, quantize_int8
from anomalens.runtime.sessions import OnnxRuntimeGraph, OpenVinoGraph

GRAPHS = {"coarse s16+s32_early": (("s16", "s32_early"), 320, (1, 3, 320, 416))}
GRAPHS["fine s8"] = (("s8",), NATIVE, (1, 3, 640, 640))


def milliseconds(function, images: np.ndarray, repeats: int) -> float:
    """Fastest of `repeats` calls after one warm-up, in ms."""
    function(images)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function(images)
        times.append(time.perf_counter() - started)
    return 1000 * min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/mtd"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calibration", type=int, default=4, help="references calibrating int8")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    backbone = load_backbone("efficientnet_lite0")
    (dataset,) = discover(args.data)
    references = [load_image(p) for p in seeded_order(dataset.pool, 0)[: args.calibration]]
    print(f"threads {args.threads}; int8 calibrated on {len(references)} {dataset.name} references")
    print(
        "| graph | input | torch | ORT fp32 | OV fp32 | ORT int8 | OV int8 "
        "| int8 speed-up ORT / OV |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as folder:
        for name, (levels, resolution, shape) in GRAPHS.items():
            extractor = FeatureExtractor("efficientnet_lite0", resolution, levels)
            calibration = [extractor.preprocess(image)[0][None].numpy() for image in references]
            fp32 = export_onnx(backbone, levels, Path(folder) / "g.onnx", torch.zeros(shape))
            int8 = quantize_int8(fp32, Path(folder) / "g.int8.onnx", calibration)
            images = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
            with torch.inference_mode():
                expected = backbone(torch.from_numpy(images), levels)
                ms = {
                    "torch": milliseconds(
                        lambda x, levels=levels: backbone(torch.from_numpy(x), levels),
                        images,
                        args.repeats,
                    )
                }
            for runtime, graph_class in (("ORT", OnnxRuntimeGraph), ("OV", OpenVinoGraph)):
                for precision, path in (("fp32", fp32), ("int8", int8)):
                    graph = graph_class(path, levels, "cpu")
                    ms[f"{runtime} {precision}"] = milliseconds(graph.run, images, args.repeats)
                    if precision == "fp32":
                        differences = [
                            float(np.abs(out - expected[level].numpy()).max())
                            for level, out in zip(levels, graph.run(images), strict=True)
                        ]
                        print(
                            f"{name}: {runtime} fp32 features within "
                            f"{max(differences):.1e} of torch"
                        )
            speedups = [ms[f"{r} fp32"] / ms[f"{r} int8"] for r in ("ORT", "OV")]
            cells = " | ".join(
                f"{ms[key]:.1f}" for key in ("torch", "ORT fp32", "OV fp32", "ORT int8", "OV int8")
            )
            print(
                f"| {name} | {shape[2]}x{shape[3]} | {cells} | "
                f"{speedups[0]:.2f}x / {speedups[1]:.2f}x |"
            )


if __name__ == "__main__":
    main()
