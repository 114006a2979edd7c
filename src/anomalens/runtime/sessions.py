"""Backbone stand-ins that run an exported graph (ONNX Runtime, OpenVINO) or the torch backbone
on another device, called by `FeatureExtractor` exactly like the torch `Backbone` they replace."""

import copy
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
import torch

from anomalens.backbones.base import Backbone
from anomalens.errors import ConfigError, DeviceError

DEVICES = ("cpu", "cuda")
INPUT_NAME = "images"
"""Name of the exported graphs' (B, 3, H, W) input; their outputs are named after the levels."""


def thread_count() -> int:
    """Threads each runtime session uses: the process's one setting (torch's), so that runtimes
    never oversubscribe the cores beside torch and faiss."""
    return torch.get_num_threads()


class Graph(ABC):
    """An exported graph of some feature levels, loaded in one runtime."""

    @abstractmethod
    def run(self, images: np.ndarray) -> list[np.ndarray]:
        """The graph's outputs, one per level, for a normalised float32 (B, 3, H, W) batch."""


class GraphBackbone:
    """Exported graphs standing in for a torch backbone: the backbone's attributes (name,
    normalisation, strides, default levels, size multiple), each level set's graph.

    Args:
        backbone: the torch backbone the graphs were exported from (for its attributes).
        graphs: levels -> the graph that returns those levels, in that order.
    """

    def __init__(self, backbone: Backbone, graphs: dict[tuple[str, ...], Graph]):
        self.name = backbone.name
        self.mean, self.std = backbone.mean, backbone.std
        self.strides = backbone.strides
        self.default_levels = backbone.default_levels
        self.size_multiple = backbone.size_multiple
        self.graphs = graphs

    def check_levels(self, levels: tuple[str, ...]) -> None:
        """A ConfigError when no graph returns `levels`."""
        if tuple(levels) not in self.graphs:
            exported = [list(key) for key in self.graphs]
            raise ConfigError(
                f"the exported model has no {self.name} graph for levels {list(levels)} "
                f"(it has {exported}); export the model again"
            )

    def __call__(self, images: torch.Tensor, levels: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """{level: (B, C, H / stride, W / stride)} for normalised `images` (B, 3, H, W)."""
        self.check_levels(levels)
        batch = np.ascontiguousarray(images.numpy(), dtype=np.float32)
        outputs = self.graphs[tuple(levels)].run(batch)
        return {level: torch.from_numpy(out) for level, out in zip(levels, outputs, strict=True)}


class OnnxRuntimeGraph(Graph):
    """An ONNX graph run by ONNX Runtime, on the CPU or through its CUDA provider."""

    def __init__(self, path: Path, levels: tuple[str, ...], device: str):
        import onnxruntime

        providers = ["CPUExecutionProvider"]
        if device == "cuda":
            if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
                raise DeviceError(
                    "--device cuda: this onnxruntime has no CUDA provider "
                    "(install onnxruntime-gpu), or use --runtime torch"
                )
            providers.insert(0, "CUDAExecutionProvider")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = thread_count()
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(path), options, providers=providers)
        self.levels = list(levels)

    def run(self, images: np.ndarray) -> list[np.ndarray]:
        return self.session.run(self.levels, {INPUT_NAME: images})


class OpenVinoGraph(Graph):
    """An OpenVINO IR (or ONNX) graph compiled for the CPU at float32 precision (an int8 graph
    keeps its quantised layers), latency-oriented, with dynamic batch, height and width."""

    def __init__(self, path: Path, levels: tuple[str, ...], device: str):
        import openvino

        if device != "cpu":
            raise DeviceError(
                "--device cuda: the OpenVINO runtime runs here on the CPU only; "
                "use --runtime onnxruntime or torch"
            )
        core = openvino.Core()
        config = {
            "INFERENCE_NUM_THREADS": thread_count(),
            "INFERENCE_PRECISION_HINT": "f32",
            "PERFORMANCE_HINT": "LATENCY",
        }
        self.compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.outputs = [self.compiled.output(level) for level in levels]

    def run(self, images: np.ndarray) -> list[np.ndarray]:
        results = self.request.infer({INPUT_NAME: images})
        return [np.array(results[output]) for output in self.outputs]


class DeviceBackbone:
    """A torch backbone on another device: batches go there, feature maps come back."""

    def __init__(self, backbone: Backbone, device: str):
        if device == "cuda" and not torch.cuda.is_available():
            raise DeviceError("--device cuda: torch sees no CUDA device here")
        self.backbone = copy.deepcopy(backbone).to(device)  # the cached CPU one stays
        self.device = device
        self.name, self.mean, self.std = backbone.name, backbone.mean, backbone.std
        self.strides, self.default_levels = backbone.strides, backbone.default_levels
        self.size_multiple = backbone.size_multiple
        self.check_levels = backbone.check_levels

    def __call__(self, images: torch.Tensor, levels: tuple[str, ...]) -> dict[str, torch.Tensor]:
        maps = self.backbone(images.to(self.device), levels)
        return {level: value.cpu() for level, value in maps.items()}
