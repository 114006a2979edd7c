"""Save and load detectors as a directory: JSON configuration plus safetensors arrays.

Nothing is pickled, so a model file from someone else cannot run code. Loading checks every
value before using it: the configuration through the constructors it is given to (types,
ranges, finite numbers), the other fields against the document's schema, the arrays against the
method's own declaration (`Method.state_spec`: names, shapes, dtypes, finite values) and
against the SHA-256 saved with them. A `weights` setting of "download" is read as None: loading
looks for weights on this machine and never goes to the network.

Saving writes a staging folder beside the destination and swaps it in by two renames. Only a
folder anomalens can prove it wrote is replaced: an empty one, or one holding nothing but a
detector.json with this format's marker and arrays.safetensors; anything else is refused with a
message, so no other file is ever deleted. A save killed midway leaves a staging folder
(`.NAME.anomalens-new-PID-*`) or, between the renames, the previous model as a backup
(`.NAME.anomalens-old-PID-*`) and no model at NAME; the next load or save of NAME restores the
backup or removes the leftovers of writers no longer running, and logs what it did.
"""

import json
import logging
import os
import re
import secrets
import shutil
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from safetensors.numpy import load_file, save_file

from anomalens import validation
from anomalens.backbones.weights import sha256
from anomalens.calibration import Threshold
from anomalens.defect_types.registry import DefectTypeError, DefectTypes
from anomalens.errors import ConfigError, DeviceError, MissingWeightsError, ModelFileError
from anomalens.io.atomic import sync_to_disk
from anomalens.methods.base import prefixed

if TYPE_CHECKING:
    from anomalens.detector import Detector

FORMAT = "anomalens-model"
"""The marker in detector.json that says anomalens wrote the folder."""
FORMAT_VERSION = 2
"""Version 2 added the marker and the arrays' checksum; version 1 folders are still read."""
READABLE_VERSIONS = (1, 2)
CONFIG_FILE = "detector.json"
ARRAYS_FILE = "arrays.safetensors"
MODEL_FILES = frozenset({CONFIG_FILE, ARRAYS_FILE})
THRESHOLD_FIELDS = frozenset(Threshold.__dataclass_fields__)

log = logging.getLogger(__name__)


def save_detector(detector: "Detector", path: Path) -> Path:
    """Write `detector` to directory `path`, replacing an earlier model there by rename.

    Raises ModelFileError when `path` exists and is neither an empty directory nor a model, or
    when it holds files besides the model's.
    """
    recover(path)
    _check_replaceable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = _leftover(path, "new")
    staging.mkdir()  # with the umask's permissions, like the user's other folders
    try:
        arrays = {
            f"method.{key}": np.ascontiguousarray(v) for key, v in detector.method.state().items()
        }
        arrays |= detector.defect_types.state()
        save_file(arrays, str(staging / ARRAYS_FILE))
        document = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "arrays_sha256": sha256(staging / ARRAYS_FILE),
            "config": detector.config(),
            "thresholds": detector.threshold_dicts(),
            "references": detector.references,
            "reference_outliers": detector.reference_outliers,
            "held_out_scores": detector.held_out_scores,
            "held_out_map_maxima": detector.held_out_map_maxima,
            "calibration_warnings": detector.calibration_warnings,
            "defect_types": detector.defect_types.document(),
        }
        try:
            _check_document(document, FORMAT_VERSION)  # never write what loading would refuse
        except ConfigError as error:
            raise ModelFileError(f"{path}: the detector cannot be saved ({error})") from None
        (staging / CONFIG_FILE).write_text(json.dumps(document, indent=2) + "\n")
        # safetensors creates its file 0600: give it detector.json's mode, which the umask set
        mode = stat.S_IMODE((staging / CONFIG_FILE).stat().st_mode)
        (staging / ARRAYS_FILE).chmod(mode)
        for written in (staging / CONFIG_FILE, staging / ARRAYS_FILE):
            sync_to_disk(written)
        _swap(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def load_detector(path: Path) -> "Detector":
    """Read a detector directory written by `save_detector`, checking every value."""
    from anomalens.detector import Detector

    recover(path)
    config_path, arrays_path = path / CONFIG_FILE, path / ARRAYS_FILE
    if not config_path.is_file() or not arrays_path.is_file():
        raise ModelFileError(
            f"{path}: not an anomalens model (missing {CONFIG_FILE} or {ARRAYS_FILE})"
        )
    try:
        document = json.loads(_readable(config_path).read_text())
    except ValueError as error:
        raise ModelFileError(f"{config_path}: not valid JSON ({error})") from None
    version = document.get("format_version") if isinstance(document, dict) else None
    if version not in READABLE_VERSIONS:
        raise ModelFileError(
            f"{path}: model format version {version}; this anomalens reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}"
        )
    try:
        _check_document(document, version)
    except ConfigError as error:
        raise ModelFileError(f"{path}: invalid model file ({error})") from None
    checksum = sha256(_readable(arrays_path))
    if version >= 2 and checksum != document["arrays_sha256"]:
        raise ModelFileError(
            f"{arrays_path}: its SHA-256 differs from the one saved with the model: the file "
            "was altered or damaged; refit or restore it from a copy"
        )
    try:
        # Fresh copies are aligned like the arrays `fit` made, so BLAS takes the same code path
        # and the loaded detector's scores are bit-identical.
        arrays = {key: np.array(value) for key, value in load_file(str(arrays_path)).items()}
    except Exception as error:  # safetensors' errors for a damaged file
        raise ModelFileError(f"{arrays_path}: unreadable arrays ({error})") from None
    try:
        detector = Detector.from_config(document["config"])
        method_arrays = prefixed(arrays, "method.")
        validation.check_arrays(method_arrays, detector.method.state_spec())
        types = document.get("defect_types", {"types": []})
        type_arrays = {key: v for key, v in arrays.items() if not key.startswith("method.")}
        validation.check_arrays(type_arrays, DefectTypes.state_spec(types))
        detector.method.load_state(method_arrays)
        detector.thresholds = {name: Threshold(**t) for name, t in document["thresholds"].items()}
        detector.references = document["references"]
        detector.reference_outliers = document["reference_outliers"]
        detector.held_out_scores = document.get("held_out_scores", [])  # version 1 may lack them
        detector.held_out_map_maxima = document.get("held_out_map_maxima", [])
        detector.calibration_warnings = document.get("calibration_warnings", {})
        if "defect_types" in document:
            detector.defect_types = DefectTypes.restore(types, type_arrays)
    except (MissingWeightsError, DeviceError):  # the files are fine; this machine lacks a part
        raise
    except (ConfigError, DefectTypeError) as error:
        raise ModelFileError(f"{path}: invalid model file ({error})") from None
    except Exception as error:  # parts that do not fit together: the files were altered
        message = f"{type(error).__name__}: {error}"
        raise ModelFileError(f"{path}: inconsistent model files ({message})") from None
    return detector


def recover(path: Path) -> list[str]:
    """Finish what an interrupted save of `path` left behind, and log and return what was
    done: with no model at `path`, its previous version is restored from the backup; other
    backups and unfinished staging folders are removed. Leftovers of a writer that is still
    running are left alone, and so is a backup whose place holds something other than a model.
    """
    if not path.parent.is_dir():
        return []
    pattern = re.compile(re.escape(f".{path.name}.") + r"anomalens-(new|old)-(\d+)-[0-9a-f]+")
    found = [
        (entry, match[1])
        for entry in path.parent.iterdir()
        if (match := pattern.fullmatch(entry.name)) and not _is_running(int(match[2]))
    ]
    done = []
    backups = sorted((e for e, kind in found if kind == "old"), key=lambda e: e.stat().st_mtime)
    for backup in reversed(backups):  # the newest backup is the last model saved
        if not path.exists() or (path.is_dir() and not any(path.iterdir())):
            os.replace(backup, path)
            done.append(f"{path}: restored the model an interrupted save had moved to {backup}")
        elif _is_model(path):
            shutil.rmtree(backup)
            done.append(f"{path}: removed {backup}, an interrupted save's backup of the model")
        else:
            done.append(f"{path}: kept {backup}, a model backup: its place holds other files")
    for staging in (entry for entry, kind in found if kind == "new"):
        shutil.rmtree(staging)
        done.append(f"{path}: removed {staging}, the files of a save that did not finish")
    for message in done:
        log.warning(message)
    return done


def _check_document(document: Any, version: int) -> None:
    """Raise ConfigError naming the first field of a detector.json that is missing or has a
    value of the wrong type or range (the configuration's own values are checked by the
    constructors it is given to)."""
    required = ["config", "thresholds", "references", "reference_outliers"]
    if version >= 2:
        required += ["format", "arrays_sha256", "held_out_scores", "defect_types"]
    validation.mapping("the model file", document, required)
    if version >= 2:
        validation.choice("format", document["format"], [FORMAT])
        if not re.fullmatch(r"[0-9a-f]{64}", str(document["arrays_sha256"])):
            raise ConfigError(f"arrays_sha256 is not a SHA-256, got {document['arrays_sha256']!r}")
    config = validation.mapping(
        "config",
        document["config"],
        ["method", "method_params", "max_false_alarm", "min_region_area", "smoothing_sigma"],
    )
    validation.mapping("config.method_params", config["method_params"])
    thresholds = validation.mapping("thresholds", document["thresholds"], ["image", "pixel"])
    for name, threshold in thresholds.items():
        what = f"thresholds.{name}"
        validation.mapping(what, threshold, ["value", "method", "samples"])
        unknown = sorted(set(threshold) - THRESHOLD_FIELDS)
        if unknown:
            raise ConfigError(f"{what} has unknown fields {', '.join(unknown)}")
        validation.number(f"{what}.value", threshold["value"])
        validation.text(f"{what}.method", threshold["method"])
        validation.integer(f"{what}.samples", threshold["samples"], minimum=0)
        if threshold.get("max_false_alarm") is not None:
            validation.number(f"{what}.max_false_alarm", threshold["max_false_alarm"], 0, 1)
    validation.texts("references", document["references"])
    validation.texts("reference_outliers", document["reference_outliers"])
    validation.numbers_list("held_out_scores", document.get("held_out_scores", []))
    warnings = validation.mapping("calibration_warnings", document.get("calibration_warnings", {}))
    validation.texts("calibration_warnings", list(warnings.values()))
    if "defect_types" in document:
        types = validation.mapping(
            "defect_types", document["defect_types"], ["embedder", "rule", "types"]
        )
        validation.mapping("defect_types.embedder", types["embedder"])
        if types.get("unknown_threshold") is not None:
            validation.number("defect_types.unknown_threshold", types["unknown_threshold"])
        if not isinstance(types["types"], list):
            raise ConfigError("defect_types.types must be a list")
        for entry in types["types"]:
            validation.mapping("a defect type", entry, ["name", "sources"])
            validation.text("a defect type's name", entry["name"])
            validation.texts(f"defect type {entry['name']!r} sources", entry["sources"])
            validation.flag(f"defect type {entry['name']!r} crops", entry.get("crops", False))
        if types.get("classifier") is not None:
            validation.mapping("defect_types.classifier", types["classifier"], ["types"])


def _readable(file: Path) -> Path:
    """`file`, or a ModelFileError saying truly why it cannot be opened (a permission, not a
    missing file)."""
    try:
        with file.open("rb"):
            return file
    except OSError as error:
        status = file.stat()
        raise ModelFileError(
            f"{file}: cannot be read: {error.strerror} (mode {stat.filemode(status.st_mode)}, "
            f"owner uid {status.st_uid}); ask its owner to make it readable"
        ) from None


def _check_replaceable(path: Path) -> None:
    """Raise ModelFileError unless `path` is absent, an empty directory, or a model directory
    holding nothing but the model's own files."""
    if not path.exists():
        return
    if not path.is_dir() or (any(path.iterdir()) and not _has_marker(path / CONFIG_FILE)):
        raise ModelFileError(
            f"{path}: exists and is not an anomalens model; choose a new or empty directory"
        )
    others = sorted(entry.name for entry in path.iterdir() if entry.name not in MODEL_FILES)
    if others:
        listed = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if others[5:] else "")
        raise ModelFileError(
            f"{path}: holds files anomalens did not write ({listed}); replacing the model "
            "would delete them: move them out of the folder, or save the model elsewhere"
        )


def _has_marker(config_path: Path) -> bool:
    """Whether `config_path` is a detector.json that anomalens wrote."""
    try:
        document = json.loads(config_path.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(document, dict):
        return False
    if document.get("format_version") == 1:  # before the marker: its own fields instead
        return isinstance(document.get("config"), dict) and "thresholds" in document
    return document.get("format") == FORMAT and document.get("format_version") in READABLE_VERSIONS


def _is_model(path: Path) -> bool:
    return (path / CONFIG_FILE).is_file() and (path / ARRAYS_FILE).is_file()


def _leftover(path: Path, kind: str) -> Path:
    """A fresh name beside `path` for this process's staging ("new") or backup ("old")."""
    return path.parent / f".{path.name}.anomalens-{kind}-{os.getpid()}-{secrets.token_hex(4)}"


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _swap(staging: Path, path: Path) -> None:
    """Move `staging` to `path`, the model there (if any) aside first and deleted after."""
    if not path.exists():
        os.replace(staging, path)
    else:
        backup = _leftover(path, "old")
        os.replace(path, backup)
        try:
            os.replace(staging, path)
        except BaseException:
            os.replace(backup, path)
            raise
        shutil.rmtree(backup)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the renames survive a power loss
    finally:
        os.close(directory)
