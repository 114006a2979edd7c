"""Save and load detectors as a directory: JSON configuration plus safetensors arrays.

Nothing is pickled, so a model file from someone else cannot run code. The directory is
written next to its destination and renamed into place; an old model there is restored if the
swap fails, and a path that holds anything but a model is never replaced.
"""

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from safetensors.numpy import load_file, save_file

from anomalens.calibration import Threshold
from anomalens.defect_types.registry import DefectTypes
from anomalens.errors import AnomalensError, ModelFileError
from anomalens.io.atomic import sync_to_disk
from anomalens.methods.base import prefixed

if TYPE_CHECKING:
    from anomalens.detector import Detector

FORMAT_VERSION = 1
CONFIG_FILE = "detector.json"
ARRAYS_FILE = "arrays.safetensors"


def save_detector(detector: "Detector", path: Path) -> Path:
    """Write `detector` to directory `path`, replacing an earlier model there by rename.

    Raises ModelFileError when `path` exists and is neither an empty directory nor a model.
    """
    if path.exists() and not _replaceable(path):
        raise ModelFileError(
            f"{path}: exists and is not an anomalens model; choose a new or empty directory"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    staging.chmod(0o755)  # mkdtemp makes it private; models are meant to be shared
    try:
        document = {
            "format_version": FORMAT_VERSION,
            "config": detector.config(),
            "thresholds": detector.threshold_dicts(),
            "references": detector.references,
            "reference_outliers": detector.reference_outliers,
            "held_out_scores": detector.held_out_scores,
            "held_out_map_maxima": detector.held_out_map_maxima,
            "defect_types": detector.defect_types.document(),
        }
        (staging / CONFIG_FILE).write_text(json.dumps(document, indent=2) + "\n")
        arrays = {
            f"method.{key}": np.ascontiguousarray(v) for key, v in detector.method.state().items()
        }
        arrays |= {f"types.{name}": v for name, v in detector.defect_types.state().items()}
        save_file(arrays, str(staging / ARRAYS_FILE))
        for written in (staging / CONFIG_FILE, staging / ARRAYS_FILE):
            sync_to_disk(written)
        _replace_directory(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def load_detector(path: Path) -> "Detector":
    """Read a detector directory written by `save_detector`."""
    from anomalens.detector import Detector

    config_path, arrays_path = path / CONFIG_FILE, path / ARRAYS_FILE
    if not config_path.is_file() or not arrays_path.is_file():
        raise ModelFileError(
            f"{path}: not an anomalens model (missing {CONFIG_FILE} or {ARRAYS_FILE})"
        )
    try:
        document = json.loads(config_path.read_text())
        # Fresh copies are aligned like the arrays `fit` made, so BLAS takes the same code path
        # and the loaded detector's scores are bit-identical.
        arrays = {key: np.array(value) for key, value in load_file(str(arrays_path)).items()}
    except Exception as error:  # OSError, JSON and safetensors errors alike
        raise ModelFileError(f"{path}: unreadable model files ({error})") from None
    version = document.get("format_version") if isinstance(document, dict) else None
    if version != FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: model format version {version}; this anomalens reads version {FORMAT_VERSION}"
        )
    try:
        detector = Detector.from_config(document["config"])
        detector.method.load_state(prefixed(arrays, "method."))
        detector.thresholds = {name: Threshold(**t) for name, t in document["thresholds"].items()}
        detector.references = document["references"]
        detector.reference_outliers = document["reference_outliers"]
        detector.held_out_scores = document.get("held_out_scores", [])  # older models lack them
        detector.held_out_map_maxima = document.get("held_out_map_maxima", [])
        if "defect_types" in document:
            detector.defect_types = DefectTypes.restore(
                document["defect_types"], prefixed(arrays, "types.")
            )
    except AnomalensError:  # missing or wrong backbone weights: the model files are fine
        raise
    except Exception as error:  # a missing key, a wrong type or shape: the files were altered
        message = f"{type(error).__name__}: {error}"
        raise ModelFileError(f"{path}: inconsistent model files ({message})") from None
    return detector


def _replaceable(path: Path) -> bool:
    """Whether `path` is an empty directory or a model directory, which saving may replace."""
    return path.is_dir() and ((path / CONFIG_FILE).is_file() or not any(path.iterdir()))


def _replace_directory(staging: Path, path: Path) -> None:
    if not path.exists():
        os.replace(staging, path)
        return
    backup = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old."))
    os.replace(path, backup / "model")
    try:
        os.replace(staging, path)
    except OSError:
        os.replace(backup / "model", path)
        backup.rmdir()
        raise
    shutil.rmtree(backup, ignore_errors=True)
