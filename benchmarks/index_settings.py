"""What the approximate index's settings buy: search time against accuracy, on a real bank.

Builds the default AnomalyDINO bank of 16 (or --shots) MTD references (rotation on) and, for the
default index (inverted lists of compressed codes, candidates re-ranked exactly) as the detector
builds it and at several probe counts, for inverted lists of full vectors (the previous default)
and for an HNSW graph, prints ms per test image, the share of patches whose nearest neighbour is
the exact one (recall) and the mean relative change of the image score (top 1% of patch
distances) against exact search.

    .venv/bin/python benchmarks/index_settings.py [--resolution 320] [--shots 16] [--images 21]
"""

import argparse
import time
from pathlib import Path

import faiss
import numpy as np

from anomalens.data import discover
from anomalens.data.shots import seeded_order
from anomalens.io.images import load_image
from anomalens.memory.knn import (
    REFINE_FACTOR,
    TRAINING_PER_LIST,
    flat_index,
    inverted_file_index,
    list_count,
    probe_count,
)
from anomalens.methods.anomalydino import AnomalyDINO
from anomalens.methods.base import top_fraction_mean

REFINED = [8, 16, 24, 32]
"""Probes (and candidates re-ranked per query) of the default index's rows."""
PLAIN = [(4, 16), (8, 16)]
"""(inverted lists per sqrt(N), probes) of the rows with lists of full vectors."""
HNSW = [(16, 32)]
"""(neighbours per node, search breadth) of the HNSW rows."""


def unit_rows(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array / np.linalg.norm(array, axis=1, keepdims=True), "float32")


def default_index(bank: np.ndarray) -> faiss.Index:
    return inverted_file_index(bank, list_count(len(bank)), faiss.METRIC_INNER_PRODUCT)


def refined_index(bank: np.ndarray, probes: int) -> faiss.Index:
    index = default_index(bank)
    faiss.extract_index_ivf(index).nprobe = probes
    index.k_factor = probes
    return index


def plain_index(bank: np.ndarray, lists: int, probes: int) -> faiss.Index:
    quantizer = flat_index(bank.shape[1], faiss.METRIC_INNER_PRODUCT)
    index = faiss.IndexIVFFlat(quantizer, bank.shape[1], lists, faiss.METRIC_INNER_PRODUCT)
    sample = np.random.default_rng(0).choice(
        len(bank), min(len(bank), TRAINING_PER_LIST * lists), False
    )
    index.train(bank[np.sort(sample)])
    index.add(bank)
    index.nprobe = probes
    index.referenced_objects = [quantizer]
    return index


def hnsw_index(bank: np.ndarray, neighbours: int, breadth: int) -> faiss.Index:
    index = faiss.IndexHNSWFlat(bank.shape[1], neighbours, faiss.METRIC_INNER_PRODUCT)
    index.add(bank)
    index.hnsw.efSearch = breadth
    return index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/mtd"))
    parser.add_argument("--resolution", type=int, default=320)
    parser.add_argument("--shots", type=int, default=16, help="references in the bank")
    parser.add_argument("--images", type=int, default=21, help="test images searched")
    args = parser.parse_args()
    method = AnomalyDINO(resolution=args.resolution)
    (dataset,) = discover(args.data)
    references = [load_image(path) for path in seeded_order(dataset.pool, 0)[: args.shots]]
    bank = unit_rows(method.bank_patches(references, progress=False)[0])
    tests = sorted(sample.path for sample in dataset.test)
    tests = tests[:: max(1, len(tests) // args.images)][: args.images]
    queries = [
        unit_rows(grid.features.reshape(-1, grid.features.shape[-1]))
        for grid in method.patch_grids([load_image(path) for path in tests])
    ]
    exact_index = faiss.IndexFlatIP(bank.shape[1])
    exact_index.add(bank)

    def search(index: faiss.Index) -> tuple[float, list]:
        start = time.perf_counter()
        found = [index.search(query, 1) for query in queries]
        return 1000 * (time.perf_counter() - start) / len(queries), found

    exact_ms, exact = search(exact_index)
    print(f"bank {bank.shape[0]} x {bank.shape[1]}, {len(queries)} images of ~{len(queries[0])}")
    print(f"{'index':<34} {'build s':>7} {'ms/image':>8} {'recall':>6} {'score change':>12}")
    print(f"{'exact':<34} {0:>7.1f} {exact_ms:>8.1f} {1:>6.3f} {0:>12.2%}")
    plain_lists = [(int(per_sqrt * np.sqrt(len(bank))), probes) for per_sqrt, probes in PLAIN]
    default_probes = probe_count(list_count(len(bank)))
    builders = (
        [(f"default: {default_probes} probes, {REFINE_FACTOR} re-ranked", default_index, ())]
        + [(f"codes+refine x {probes} probes", refined_index, (probes,)) for probes in REFINED]
        + [
            (f"plain {lists} lists x {probes} probes", plain_index, (lists, probes))
            for lists, probes in plain_lists
        ]
        + [(f"hnsw M{m} ef{ef}", hnsw_index, (m, ef)) for m, ef in HNSW]
    )
    for name, build, params in builders:
        start = time.perf_counter()
        index = build(bank, *params)
        built = time.perf_counter() - start
        ms, found = search(index)
        recall = np.mean([np.mean(a[1] == b[1]) for a, b in zip(exact, found, strict=True)])
        change = np.mean(
            [
                abs(top_fraction_mean(1 - b[0]) / top_fraction_mean(1 - a[0]) - 1)
                for a, b in zip(exact, found, strict=True)
            ]
        )
        print(f"{name:<34} {built:>7.1f} {ms:>8.1f} {recall:>6.3f} {change:>12.2%}")


if __name__ == "__main__":
    main()
