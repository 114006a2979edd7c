"""Exported models: graphs equal the torch backbone at any size, an exported folder predicts like
the torch model in every runtime, int8 exports stay detectors, and runtime, thread and device
choices behave as documented."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from images import texture, with_defect
from PIL import Image

from anomalens import Detector
from anomalens.backbones import load_backbone
from anomalens.cli import build_parser, main
from anomalens.errors import ConfigError, ModelFileError
from anomalens.runtime import export, read_manifest, set_defaults
from anomalens.runtime.graphs import export_onnx
from anomalens.runtime.package import choose_runtime, feature_extractors
from anomalens.runtime.sessions import GraphBackbone, OnnxRuntimeGraph, OpenVinoGraph

onnxruntime = pytest.importorskip("onnxruntime", reason="the [onnx] extra is not installed")
openvino = pytest.importorskip("openvino", reason="the [openvino] extra is not installed")

SIZE = 96
"""Reference side: the default ensemble's fine member runs at each image's own size."""
RUNTIMES = ["onnxruntime", "openvino"]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, list[Path]]:
    """Eight good references, and test images: two good, two with a bright square."""
    root = tmp_path_factory.mktemp("images")
    paths: dict[str, list[Path]] = {"references": [], "tests": []}
    for seed in range(8):
        paths["references"].append(_write(root / f"ref{seed}.png", texture(seed, SIZE, SIZE)))
    for seed in (100, 101):
        paths["tests"].append(_write(root / f"good{seed}.png", texture(seed, SIZE, SIZE)))
        defect = with_defect(texture(seed + 100, SIZE, SIZE), top=40, left=40, size=16)
        paths["tests"].append(_write(root / f"defect{seed}.png", defect))
    return paths


@pytest.fixture(scope="module")
def model(images, tmp_path_factory) -> Path:
    """The default detector (the two-member ensemble), coarse member at 64 px, saved."""
    path = tmp_path_factory.mktemp("model") / "model"
    Detector(resolution=64).fit(images["references"]).save(path)
    return path


@pytest.fixture(scope="module")
def exported(model, images, tmp_path_factory) -> dict[str, Path]:
    """The model exported as ONNX, as OpenVINO IR and as int8 ONNX."""
    root = tmp_path_factory.mktemp("exported")
    refs = images["references"]
    return {
        "onnx": export(model, root / "onnx", "onnx", references=refs),
        "openvino": export(model, root / "openvino", "openvino", references=refs),
        "int8": export(model, root / "int8", "onnx", int8=True, references=refs),
    }


@pytest.mark.parametrize("graph_class", [OnnxRuntimeGraph, OpenVinoGraph])
def test_an_exported_graph_equals_the_torch_backbone_at_every_size_and_batch(tmp_path, graph_class):
    backbone, levels = load_backbone("efficientnet_lite0"), ("s8", "s16", "s32_early")
    path = export_onnx(backbone, levels, tmp_path / "graph.onnx", torch.zeros(1, 3, 64, 96))
    graph = graph_class(path, levels, "cpu")
    generator = torch.Generator().manual_seed(0)
    for shape in [(1, 3, 64, 96), (2, 3, 128, 64), (1, 3, 224, 320)]:
        images = torch.randn(shape, generator=generator)
        with torch.inference_mode():
            expected = backbone(images, levels)
        for level, value in zip(levels, graph.run(images.numpy()), strict=True):
            assert value.shape == tuple(expected[level].shape)
            np.testing.assert_allclose(value, expected[level].numpy(), atol=2e-4)


def test_an_export_holds_one_graph_per_backbone_and_level_set_with_the_model(exported):
    manifest = read_manifest(exported["onnx"])
    assert [graph["levels"] for graph in manifest["graphs"]] == [["s16", "s32_early"], ["s8"]]
    assert manifest["precision"] == "fp32"
    assert set(manifest["milliseconds"]) == {"onnxruntime", "openvino", "torch"}
    assert (exported["onnx"] / "detector.json").is_file()
    assert [p.suffix for p in (exported["openvino"] / "graphs").iterdir()].count(".xml") == 2


@pytest.mark.parametrize("export_format", ["onnx", "openvino"])
def test_an_exported_model_predicts_like_the_torch_model_in_every_runtime(
    model, exported, images, export_format
):
    expected = Detector.load(model, runtime="torch").predict(images["tests"])
    assert [result.is_anomalous for result in expected] == [False, True, False, True]
    runtimes = RUNTIMES if export_format == "onnx" else ["openvino"]
    for runtime in runtimes:
        detector = Detector.load(exported[export_format], runtime=runtime)
        backbones = {type(e.model) for e in feature_extractors(detector.method)}
        assert backbones == {GraphBackbone}
        for want, got in zip(expected, detector.predict(images["tests"]), strict=True):
            assert got.score == pytest.approx(want.score, rel=1e-4)
            assert got.is_anomalous == want.is_anomalous
            assert _boxes(got) == _boxes(want)


def test_the_default_runtime_is_the_fastest_measured_at_export(exported, tmp_path):
    manifest = read_manifest(exported["onnx"])
    fastest = min(manifest["milliseconds"], key=manifest["milliseconds"].get)
    assert choose_runtime(manifest, None) == fastest
    manifest["milliseconds"] = {"onnxruntime": 5.0, "openvino": 9.0, "torch": 7.0}
    assert choose_runtime(manifest, None) == "onnxruntime"
    manifest["milliseconds"]["openvino"] = 1.0
    assert choose_runtime(manifest, None) == "openvino"
    assert choose_runtime(manifest, None, "cuda") == "onnxruntime"  # OpenVINO runs on the CPU
    assert choose_runtime(None, None) == "torch"


def test_an_int8_export_is_quantised_and_still_tells_good_from_defective(exported, images):
    import onnx

    manifest = read_manifest(exported["int8"])
    assert manifest["precision"] == "int8"
    for graph in manifest["graphs"]:
        operators = {
            node.op_type for node in onnx.load(exported["int8"] / graph["file"]).graph.node
        }
        assert {"QuantizeLinear", "DequantizeLinear"} <= operators
    for runtime in RUNTIMES:
        scores = [
            r.score
            for r in Detector.load(exported["int8"], runtime=runtime).predict(images["tests"])
        ]
        assert min(scores[1::2]) > 2 * max(scores[::2])  # each defect far above each good image
    with pytest.raises(ConfigError, match="int8 features"):
        Detector.load(exported["int8"], runtime="torch")


def test_runtimes_are_refused_where_they_cannot_run(model, exported):
    with pytest.raises(ConfigError, match="not exported"):
        Detector.load(model, runtime="onnxruntime")
    with pytest.raises(ConfigError, match="cannot read openvino graphs"):
        Detector.load(exported["openvino"], runtime="onnxruntime")
    with pytest.raises(ConfigError, match="unknown runtime"):
        Detector.load(model, runtime="tensorrt")


def test_runtime_sessions_take_the_process_thread_count(exported):
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        detector = Detector.load(exported["onnx"], runtime="onnxruntime")
        graph = next(iter(feature_extractors(detector.method)[0].model.graphs.values()))
        assert graph.session.get_session_options().intra_op_num_threads == 1
        detector = Detector.load(exported["onnx"], runtime="openvino")
        graph = next(iter(feature_extractors(detector.method)[0].model.graphs.values()))
        assert graph.compiled.get_property("INFERENCE_NUM_THREADS") == 1
    finally:
        torch.set_num_threads(threads)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is here")
def test_cuda_without_a_cuda_device_is_a_clear_error(model, exported):
    with pytest.raises(ConfigError, match="no CUDA device"):
        Detector.load(model, runtime="torch", device="cuda")
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(ConfigError, match="no CUDA provider"):
            Detector.load(exported["onnx"], runtime="onnxruntime", device="cuda")
    with pytest.raises(ConfigError, match="CPU only"):
        Detector.load(exported["onnx"], runtime="openvino", device="cuda")


def test_export_never_replaces_a_folder_with_contents(model, images, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(ModelFileError, match="not empty"):
        export(model, tmp_path / "taken", "onnx", references=images["references"])
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine"


def test_export_and_predict_on_the_command_line(model, images, tmp_path, capsys):
    out = tmp_path / "exported"
    assert main(["export", str(model), "-o", str(out), "--format", "openvino"]) == 0
    assert "openvino" in capsys.readouterr().out
    tests = [str(path) for path in images["tests"]]
    for runtime in ("torch", "openvino"):
        argv = ["predict", str(out), *tests, "-o", str(tmp_path / runtime), "--runtime", runtime]
        assert main(argv) == 0
    torch_run, openvino_run = (
        json.loads((tmp_path / name / "results.json").read_text())["images"]
        for name in ("torch", "openvino")
    )
    assert [e["verdict"] for e in openvino_run] == [e["verdict"] for e in torch_run]
    for want, got in zip(torch_run, openvino_run, strict=True):
        assert got["score"] == pytest.approx(want["score"], rel=1e-4)


def _boxes(result) -> list[tuple[int, int, int, int, int]]:
    return [(box.x0, box.y0, box.x1, box.y1, box.area) for box in result.boxes]


def _write(path: Path, image: np.ndarray) -> Path:
    Image.fromarray(image).save(path)
    return path


def test_the_process_default_runtime_is_what_serve_loads_every_model_in(exported, model):
    try:
        set_defaults("openvino")
        detector = Detector.load(exported["onnx"])
        graphs = feature_extractors(detector.method)[0].model.graphs.values()
        assert all(isinstance(graph, OpenVinoGraph) for graph in graphs)
        set_defaults("onnxruntime")
        with pytest.raises(ConfigError, match="not exported"):
            Detector.load(model)
        with pytest.raises(ConfigError, match="unknown device"):
            set_defaults(None, "tpu")
    finally:
        set_defaults()
    args = build_parser().parse_args(["serve", "--runtime", "openvino", "--device", "cpu"])
    assert (args.runtime, args.device) == ("openvino", "cpu")
