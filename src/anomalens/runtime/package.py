"""Exported models: a saved detector with its backbones' graphs and a manifest beside it, and
loading one (or any model) in a chosen runtime and device.

An exported folder holds what `Detector.save` writes (configuration, bank, thresholds, defect
types), `graphs/` (one graph per backbone and level set its methods use, dynamic in batch,
height and width, so that one graph serves every resolution and a "native" member's images of
any size) and `runtime.json`: the graphs, their format and precision, and the milliseconds per
image each runtime took at export, from which the default runtime is chosen.
"""

import importlib.util
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from anomalens.backbones import Backbone, substituted_backbones
from anomalens.errors import ConfigError, ModelFileError
from anomalens.io.atomic import write_json
from anomalens.io.images import as_rgb_array
from anomalens.runtime import graphs as graph_files
from anomalens.runtime.sessions import (
    DEVICES,
    DeviceBackbone,
    Graph,
    GraphBackbone,
    OnnxRuntimeGraph,
    OpenVinoGraph,
)

if TYPE_CHECKING:
    from anomalens.detector import Detector

MANIFEST = "runtime.json"
MANIFEST_VERSION = 1
RUNTIMES = ("onnxruntime", "openvino", "torch")
READERS = {"onnx": ("onnxruntime", "openvino"), "openvino": ("openvino",)}
"""Runtimes that read each export format (OpenVINO reads ONNX graphs as well as its own IR)."""
CALIBRATION_IMAGES = 32
"""At most this many references calibrate the int8 ranges (each at every resolution)."""
TIMING_REPEATS = 3
"""Timed predictions of one reference per runtime at export (the fastest counts)."""
_GRAPHS = {"onnxruntime": OnnxRuntimeGraph, "openvino": OpenVinoGraph}
_defaults: dict[str, str | None] = {"runtime": None, "device": "cpu"}


def set_defaults(runtime: str | None = None, device: str = "cpu") -> None:
    """The runtime and device `Detector.load` uses when it is given none (`serve` sets them
    for every model it loads)."""
    check_choice(runtime, device)
    _defaults.update(runtime=runtime, device=device)


def check_choice(runtime: str | None, device: str | None) -> None:
    """A ConfigError naming the choices for an unknown runtime or device."""
    if runtime is not None and runtime not in RUNTIMES:
        raise ConfigError(f"unknown runtime {runtime!r}; choose from {list(RUNTIMES)}")
    if device is not None and device not in DEVICES:
        raise ConfigError(f"unknown device {device!r}; choose from {list(DEVICES)}")


def read_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest of exported model `path`, or None for a model that was not exported."""
    manifest = path / MANIFEST
    if not manifest.is_file():
        return None
    try:
        document = json.loads(manifest.read_text())
        if document["format_version"] != MANIFEST_VERSION:
            raise ModelFileError(
                f"{manifest}: runtime format version {document['format_version']}; this "
                f"anomalens reads version {MANIFEST_VERSION}"
            )
        for graph in document["graphs"]:
            if not (path / graph["file"]).is_file():
                raise ModelFileError(f"{path}: the exported graph {graph['file']} is missing")
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ModelFileError(f"{manifest}: unreadable runtime manifest ({error})") from None
    return document


def available_runtimes(manifest: dict[str, Any] | None) -> list[str]:
    """Runtimes that can run the model: those installed that read its graphs, and torch unless
    its bank was built from int8 features."""
    if manifest is None:
        return ["torch"]
    found = [name for name in READERS[manifest["format"]] if _installed(name)]
    return found if manifest["precision"] == "int8" else [*found, "torch"]


def choose_runtime(
    manifest: dict[str, Any] | None, runtime: str | None, device: str = "cpu"
) -> str:
    """`runtime` when the model can run in it (a ConfigError says why not), else the fastest
    available one as measured at export (on a CUDA `device`, of those that can use one), else
    torch."""
    available = available_runtimes(manifest)
    if runtime is None:
        if device == "cuda":
            available = [name for name in available if name != "openvino"] or available
        timings = (manifest or {}).get("milliseconds", {})
        return min(available, key=lambda name: timings.get(name, float("inf")))
    check_choice(runtime, None)
    if runtime in available:
        return runtime
    if manifest is None:
        raise ConfigError(
            f"--runtime {runtime}: this model was not exported; run `anomalens export` first"
        )
    if manifest["precision"] == "int8" and runtime == "torch":
        raise ConfigError(
            "--runtime torch: this int8 export's bank was built from int8 features; run it "
            f"with {' or '.join(READERS[manifest['format']])}, or load the fp32 model in torch"
        )
    raise ConfigError(
        f"--runtime {runtime}: not installed or cannot read {manifest['format']} graphs "
        f"(pip install 'anomalens[{manifest['format']}]'); available: {available}"
    )


@contextmanager
def runtime_backbones(
    path: Path | None,
    manifest: dict[str, Any] | None,
    runtime: str,
    device: str,
) -> Iterator[None]:
    """Within this block, feature extractors run their backbones in `runtime` on `device`: the
    graphs of exported model `path` (as its `manifest` lists them), or torch."""
    check_choice(runtime, device)
    if runtime == "torch":
        if device == "cpu":
            yield
            return
        with substituted_backbones(lambda backbone, _: DeviceBackbone(backbone, device)):
            yield
        return
    assert path is not None and manifest is not None
    loaded: dict[tuple[str, str | None], GraphBackbone] = {}

    def substitute(backbone: Backbone, weights: str | None) -> GraphBackbone:
        key = (backbone.name, weights)
        if key not in loaded:
            graphs: dict[tuple[str, ...], Graph] = {}
            for entry in manifest["graphs"]:
                if (entry["backbone"], entry["weights"]) == key:
                    levels = tuple(entry["levels"])
                    graphs[levels] = _GRAPHS[runtime](path / entry["file"], levels, device)
            loaded[key] = GraphBackbone(backbone, graphs)
        return loaded[key]

    with substituted_backbones(substitute):
        yield


def load(path: Path, runtime: str | None = None, device: str | None = None) -> "Detector":
    """The detector saved or exported at `path`, its backbones in `runtime` (None: the process
    default, else the fastest measured) on `device` (None: the process default, "cpu")."""
    from anomalens.persistence import load_detector

    check_choice(runtime, device)
    manifest = read_manifest(path)
    device = device or _defaults["device"] or "cpu"
    chosen = choose_runtime(manifest, runtime or _defaults["runtime"], device)
    with runtime_backbones(path, manifest, chosen, device):
        detector = load_detector(path)
    return detector


def export(
    model: Path,
    path: Path,
    format: str,
    int8: bool = False,
    references: Sequence[Path] = (),
) -> Path:
    """Export the model at `model` to folder `path` (new or empty).

    Every backbone and level set the model's feature extractors use becomes one graph; with
    `int8` each is quantised, calibrated on `references` at every resolution that uses it, and
    the model is fitted again on `references` through the int8 graphs, so that the bank and the
    thresholds hold what int8 features score (a threshold set by `fit --calibrate` is then
    replaced by one from the references). The fastest of the runtimes that read the graphs
    (torch too, for fp32) is measured on the first reference.
    """
    from anomalens.persistence import load_detector, save_detector

    if format not in graph_files.FORMATS:
        raise ConfigError(f"unknown format {format!r}; choose from {list(graph_files.FORMATS)}")
    if not references:
        raise ConfigError("export needs reference images: to calibrate and to time the runtimes")
    if path.exists() and not (path.is_dir() and not any(path.iterdir())):
        raise ModelFileError(f"{path}: exists and is not empty; choose a new or empty directory")
    detector = load_detector(model)
    arrays = [as_rgb_array(reference, str(reference)) for reference in references]
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        folder = staging / "model"
        (staging / "graphs").mkdir()
        calibration = arrays[:CALIBRATION_IMAGES]
        entries = _export_graphs(detector, staging / "graphs", format, int8, calibration)
        manifest = {
            "format_version": MANIFEST_VERSION,
            "format": format,
            "precision": "int8" if int8 else "fp32",
            "graphs": entries,
        }
        if int8:
            runtime = READERS[format][0]
            with runtime_backbones(staging, manifest, runtime, "cpu"):
                refitted = type(detector).from_config(detector.config())
                refitted.fit(arrays, names=[str(reference) for reference in references])
            refitted.defect_types = detector.defect_types
            detector = refitted
        save_detector(detector, folder)
        shutil.move(staging / "graphs", folder / "graphs")
        manifest["milliseconds"] = {
            name: _milliseconds(folder, manifest, name, arrays[0])
            for name in available_runtimes(manifest)
        }
        write_json(folder / MANIFEST, manifest)
        if path.exists():
            path.rmdir()
        os.replace(folder, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def _export_graphs(
    detector: Any, folder: Path, format: str, int8: bool, references: Sequence[np.ndarray]
) -> list[dict[str, Any]]:
    """Write one graph per (backbone, weights, levels) of the detector's extractors; their
    manifest entries (file relative to the model folder)."""
    groups: dict[tuple[str, str | None, tuple[str, ...]], list[Any]] = {}
    for extractor in feature_extractors(detector.method):
        key = (extractor.backbone_name, extractor.weights, extractor.levels)
        groups.setdefault(key, []).append(extractor)
    entries = []
    for number, ((backbone, weights, levels), extractors) in enumerate(groups.items()):
        inputs = [e.preprocess(image)[0][None] for image in references for e in extractors]
        graph = folder / f"backbone{number}.onnx"
        graph_files.export_onnx(extractors[0].model, levels, graph, inputs[0])
        if int8:
            quantized = folder / f"backbone{number}.int8.onnx"
            graph_files.quantize_int8(graph, quantized, [x.numpy() for x in inputs])
            graph.unlink()
            graph = quantized
        if format == "openvino":
            converted = graph_files.to_openvino(graph, graph.with_suffix(".xml"))
            graph.unlink()
            graph = converted
        entries.append(
            {
                "backbone": backbone,
                "weights": weights,
                "levels": list(levels),
                "file": f"graphs/{graph.name}",
            }
        )
    return entries


def feature_extractors(root: object) -> list[Any]:
    """Every `FeatureExtractor` a method holds, its members' and parts' included."""
    from anomalens.features import FeatureExtractor

    found: list[Any] = []
    seen: set[int] = set()

    def visit(value: object) -> None:
        if id(value) in seen:
            return
        seen.add(id(value))
        if isinstance(value, FeatureExtractor):
            found.append(value)
        elif isinstance(value, list | tuple):
            for item in value:
                visit(item)
        elif type(value).__module__.startswith("anomalens.") and hasattr(value, "__dict__"):
            for item in vars(value).values():
                visit(item)

    visit(root)
    return found


def _milliseconds(folder: Path, manifest: dict[str, Any], runtime: str, image: np.ndarray) -> float:
    """Fastest of TIMING_REPEATS predictions of `image` with the model in `runtime`."""
    from anomalens.persistence import load_detector

    with runtime_backbones(folder, manifest, runtime, "cpu"):
        detector = load_detector(folder)
    detector.predict([image])  # warm-up: graph compilation, first allocations
    times = []
    for _ in range(TIMING_REPEATS):
        start = time.perf_counter()
        detector.predict([image])
        times.append(time.perf_counter() - start)
    return round(1000 * min(times), 2)


def _installed(runtime: str) -> bool:
    return importlib.util.find_spec(runtime) is not None
