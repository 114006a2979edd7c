"""Saved models: no user file is ever deleted, an interrupted save is recovered, every value is
checked on load, nothing is downloaded while loading."""

import json
import logging
import math
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from images import texture
from safetensors.numpy import load_file, save_file

from anomalens import Detector
from anomalens.backbones.weights import sha256
from anomalens.cli import main
from anomalens.errors import MissingWeightsError, ModelFileError

REFERENCES = [texture(seed) for seed in range(4)]


@pytest.fixture(scope="module")
def detector():
    return Detector(method="anomalydino", resolution=64, rotation=False).fit(REFERENCES)


@pytest.fixture
def model(detector, tmp_path):
    return detector.save(tmp_path / "model")


def edit_document(model: Path, change) -> None:
    document = json.loads((model / "detector.json").read_text())
    change(document)
    (model / "detector.json").write_text(json.dumps(document))


def edit_arrays(model: Path, change) -> None:
    """Change the arrays and save the checksum that matches, as a deliberate edit would."""
    arrays = {
        key: np.array(value) for key, value in load_file(model / "arrays.safetensors").items()
    }
    change(arrays)
    save_file(arrays, model / "arrays.safetensors")
    checksum = sha256(model / "arrays.safetensors")
    edit_document(model, lambda document: document.update(arrays_sha256=checksum))


def largest_float_array(arrays: dict[str, np.ndarray]) -> str:
    return max(
        (key for key, v in arrays.items() if v.dtype.kind == "f"), key=lambda k: arrays[k].size
    )


# Files never deleted


def test_a_folder_with_a_foreign_detector_json_and_other_files_is_not_replaced(detector, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "detector.json").write_text('{"format_version": 1, "config": {}, "thresholds": {}}')
    (folder / "data.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ModelFileError, match=r"data\.csv"):
        detector.save(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["data.csv", "detector.json"]


def test_files_added_to_a_model_folder_are_never_deleted(detector, model):
    (model / "NOTES.txt").write_text("camera 3, lens cleaned")
    with pytest.raises(ModelFileError, match=r"NOTES\.txt"):
        detector.save(model)
    assert (model / "NOTES.txt").read_text() == "camera 3, lens cleaned"
    assert Detector.load(model).references == detector.references


def test_a_model_folder_is_replaced_whole_and_leaves_nothing_beside_it(detector, model):
    detector.save(model)
    assert sorted(p.name for p in model.parent.iterdir()) == ["model"]
    assert sorted(p.name for p in model.iterdir()) == ["arrays.safetensors", "detector.json"]


def test_both_model_files_get_one_permission_that_follows_the_umask(detector, tmp_path):
    previous = os.umask(0o027)
    try:
        path = detector.save(tmp_path / "model")
    finally:
        os.umask(previous)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in path.iterdir()}
    assert modes == {"arrays.safetensors": 0o640, "detector.json": 0o640}
    assert stat.S_IMODE(path.stat().st_mode) == 0o750


def test_an_unreadable_model_file_is_reported_as_unreadable_not_missing(model, monkeypatch):
    real_open = Path.open

    def denied(self, *args, **kwargs):
        if self.name == "arrays.safetensors":
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", denied)
    with pytest.raises(ModelFileError, match=r"arrays\.safetensors: cannot be read: Permission"):
        Detector.load(model)


KILL_AT = {"between the renames": "replace", "while writing the arrays": "save_file"}
CRASHING_SAVE = """
import os, signal, sys
from anomalens import Detector, persistence

detector = Detector.load(sys.argv[1])
detector.references = ["saved again"]
real = os.replace if sys.argv[2] == "replace" else persistence.save_file

def killed_after(*args, **kwargs):  # the first rename moves the old model aside
    real(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)

if sys.argv[2] == "replace":
    os.replace = killed_after
else:
    persistence.save_file = killed_after
detector.save(sys.argv[1])
"""


@pytest.mark.parametrize("moment", sorted(KILL_AT))
def test_a_save_killed_midway_is_recovered_by_the_next_load(model, moment, tmp_path, caplog):
    script = tmp_path / "crash.py"
    script.write_text(CRASHING_SAVE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    killed = subprocess.run(
        [sys.executable, str(script), str(model), KILL_AT[moment]], env=env, capture_output=True
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    assert list(model.parent.glob(".model.*"))  # what the kill left: staging, backup or both
    assert model.exists() == (moment != "between the renames")
    with caplog.at_level(logging.WARNING, logger="anomalens.persistence"):
        loaded = Detector.load(model)
    assert loaded.references == [f"<array {i}>" for i in range(4)]  # the model before the save
    assert sorted(p.name for p in model.parent.iterdir()) == ["crash.py", "model"]
    assert str(model) in caplog.text and ("restored" in caplog.text or "removed" in caplog.text)


def test_the_leftovers_of_a_save_still_running_are_left_alone(model):
    staging = model.parent / f".model.anomalens-new-{os.getpid()}-0000abcd"
    staging.mkdir()
    Detector.load(model)
    assert staging.exists()


# Models and settings validated on load


def nan(document):
    document["thresholds"]["image"]["value"] = math.nan


TAMPERED = {
    "resolution 100000": lambda d: d["config"]["method_params"].update(resolution=100000),
    "resolution as text": lambda d: d["config"]["method_params"].update(resolution="64"),
    "smoothing 1e9": lambda d: d["config"].update(smoothing_sigma=1e9),
    "no pixel threshold": lambda d: d["thresholds"].pop("pixel"),
    "NaN threshold": nan,
    "threshold of text": lambda d: d["thresholds"]["image"].update(value="high"),
    "references 5": lambda d: d.update(references=5),
    "outliers of numbers": lambda d: d.update(reference_outliers=[1, 2]),
    "infinite held-out score": lambda d: d["held_out_scores"].append(math.inf),
    "no marker": lambda d: d.pop("format"),
    "top_fraction 5": lambda d: d["config"]["method_params"].update(top_fraction=5),
    "batch_size 0": lambda d: d["config"]["method_params"].update(batch_size=0),
    "unknown threshold field": lambda d: d["thresholds"]["image"].update(colour="red"),
    "defect types of text": lambda d: d["defect_types"].update(types="scratch"),
}


@pytest.mark.parametrize("tamper", sorted(TAMPERED))
def test_a_tampered_field_is_refused_on_load_naming_the_model(model, tamper):
    edit_document(model, TAMPERED[tamper])
    with pytest.raises(ModelFileError, match=str(model)):
        Detector.load(model)


def test_info_reports_a_tampered_model_instead_of_crashing(model, capsys):
    edit_document(model, TAMPERED["references 5"])
    assert main(["info", str(model)]) == 1
    assert "references must be a list" in capsys.readouterr().err


def test_bit_flipped_arrays_are_caught_by_their_checksum(model):
    data = bytearray((model / "arrays.safetensors").read_bytes())
    data[-100] ^= 0x10
    (model / "arrays.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="SHA-256 differs"):
        Detector.load(model)


ARRAY_EDITS = {
    "rows cut": lambda a, k: a.update({k: a[k][: len(a[k]) // 2]}),
    "another dtype": lambda a, k: a.update({k: a[k].astype(np.float64)}),
    "a NaN": lambda a, k: a[k].reshape(-1).__setitem__(0, np.nan),
    "one array more": lambda a, k: a.update({"method.extra": np.zeros(3, np.float32)}),
    "one array less": lambda a, k: a.pop(k),
}


@pytest.mark.parametrize("edit", sorted(ARRAY_EDITS))
def test_arrays_that_do_not_match_the_methods_declaration_are_refused(model, edit):
    edit_arrays(model, lambda arrays: ARRAY_EDITS[edit](arrays, largest_float_array(arrays)))
    with pytest.raises(ModelFileError, match=r"invalid model file \(.*array"):
        Detector.load(model)


def test_loading_never_asks_for_a_download(model, monkeypatch):
    edit_document(model, lambda d: d["config"]["method_params"].update(weights="download"))
    downloads = []
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: downloads.append(a))
    with pytest.raises(MissingWeightsError, match="download"):  # a path, not an instruction
        Detector.load(model)
    assert downloads == []


def test_models_of_format_version_1_still_load(detector, model):
    def version_1(document):
        del document["format"], document["arrays_sha256"]
        document["format_version"] = 1

    edit_document(model, version_1)
    assert Detector.load(model).thresholds == detector.thresholds
    detector.save(model)  # and a version 1 folder may be replaced
    assert json.loads((model / "detector.json").read_text())["format_version"] == 2
