"""Export a backbone's feature levels as a graph: ONNX (dynamic batch, height and width), int8
by post-training static quantisation, and OpenVINO IR."""

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from anomalens.backbones.base import Backbone
from anomalens.runtime.sessions import INPUT_NAME

OPSET = 17
FORMATS = ("onnx", "openvino")
SUFFIXES = {"onnx": ".onnx", "openvino": ".xml"}
"""Graph file suffix of each format (OpenVINO IR keeps its weights in a .bin beside the .xml)."""


class _Levels(nn.Module):
    """A backbone returning the tuple of `levels` (graphs have positional outputs)."""

    def __init__(self, backbone: Backbone, levels: tuple[str, ...]):
        super().__init__()
        self.backbone, self.levels = backbone, levels

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        maps = self.backbone(images, self.levels)
        return tuple(maps[level] for level in self.levels)


def export_onnx(
    backbone: Backbone, levels: tuple[str, ...], path: Path, example: torch.Tensor
) -> Path:
    """Write `backbone`'s `levels` as an ONNX graph taking a normalised (B, 3, H, W) float32
    batch, H and W multiples of backbone.size_multiple, traced on `example`."""
    axes = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}}
    axes |= {level: {0: "batch", 2: f"{level}_height", 3: f"{level}_width"} for level in levels}
    with torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(
            _Levels(backbone, levels).eval(),
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=list(levels),
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    return path


def quantize_int8(source: Path, path: Path, calibration: Sequence[np.ndarray]) -> Path:
    """Write an int8 copy of ONNX graph `source`: static QDQ quantisation, weights per channel
    (the depthwise convolutions' ranges differ per channel), activation ranges from the
    min/max over `calibration`, normalised (1, 3, H, W) inputs of any size."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches: Iterator[np.ndarray] = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {INPUT_NAME: batch}

    prepared = path.with_name(f"{path.stem}.prepared.onnx")
    quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    try:
        quantize_static(
            str(prepared),
            str(path),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
    finally:
        prepared.unlink(missing_ok=True)
    return path


def to_openvino(source: Path, path: Path) -> Path:
    """Convert ONNX graph `source` to OpenVINO IR `path` (.xml + .bin), weights kept at float32
    (OpenVINO would compress them to float16, which breaks parity with torch)."""
    import openvino

    openvino.save_model(openvino.convert_model(str(source)), str(path), compress_to_fp16=False)
    return path
