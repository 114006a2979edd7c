"""Deployment: export a model's backbones to ONNX / OpenVINO (optionally int8) and run a model
with its backbones in ONNX Runtime, OpenVINO or torch, on the CPU or a CUDA device."""

from anomalens.runtime.package import (
    MANIFEST,
    RUNTIMES,
    available_runtimes,
    export,
    load,
    read_manifest,
    set_defaults,
)
from anomalens.runtime.sessions import DEVICES, thread_count

__all__ = [
    "DEVICES",
    "MANIFEST",
    "RUNTIMES",
    "available_runtimes",
    "export",
    "load",
    "read_manifest",
    "set_defaults",
    "thread_count",
]
