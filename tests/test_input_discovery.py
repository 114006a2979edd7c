"""Finding the images to inspect: every path passed over is reported with why, and the
results and the report cope with any file name."""

import json
import os
from pathlib import Path

import pytest
from images import texture
from PIL import Image

from anomalens.cli import main
from anomalens.cli.options import (
    BROKEN_LINK,
    HIDDEN,
    LINK_LOOP,
    NOT_A_FILE,
    NOT_AN_IMAGE,
    UNREADABLE,
    image_files,
)

NON_UTF8 = os.fsdecode(b"caf\xe9.png")


def picture(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(texture(seed)).save(path)
    return path


@pytest.fixture
def odd_folder(tmp_path) -> Path:
    """A folder with two images and one of each kind of path that is not one."""
    folder = tmp_path / "inputs"
    picture(folder / "a.png")
    frames = [Image.fromarray(texture(s)) for s in (1, 2)]
    (folder / "sub").mkdir()
    frames[0].save(folder / "sub" / "moving.gif", save_all=True, append_images=frames[1:])
    picture(folder / ".hidden.png")
    picture(folder / ".cache" / "inside.png")
    (folder / "photo.heic").write_bytes(b"ftypheic")
    (folder / "README").write_text("no suffix")
    (folder / "gone.png").symlink_to(tmp_path / "missing.png")
    (folder / "self.png").symlink_to("self.png")
    (folder / "up").symlink_to(folder)
    (folder / "the-sub").symlink_to(folder / "sub")  # sorts after sub: searched there already
    os.mkfifo(folder / "pipe.png")
    (folder / "x.png").mkdir()
    return folder


def test_every_skipped_path_is_listed_with_its_reason(odd_folder):
    found = image_files([odd_folder])
    assert [name for _, name in found] == ["a", "sub/moving"]
    reasons = {skipped.path.name: skipped.reason for skipped in found.skipped}
    assert reasons == {
        ".hidden.png": HIDDEN,
        ".cache": HIDDEN,  # a hidden folder is skipped like a hidden file, and said once
        "photo.heic": NOT_AN_IMAGE,
        "README": NOT_AN_IMAGE,
        "gone.png": BROKEN_LINK,
        "self.png": LINK_LOOP,
        "up": LINK_LOOP,
        "the-sub": LINK_LOOP,
        "pipe.png": NOT_A_FILE,
    }


def test_the_summary_has_one_line_per_reason(odd_folder):
    lines = image_files([odd_folder]).summary()
    assert len(lines) == 5
    assert f"skipped 2: {NOT_AN_IMAGE}: " in "\n".join(lines)


def test_an_unreadable_folder_is_reported_not_raised(tmp_path, monkeypatch):
    folder = tmp_path / "inputs"
    picture(folder / "a.png")
    (folder / "locked").mkdir()
    scandir = os.scandir

    def refuse_locked(path):  # chmod 0 does not stop root, who runs some CI
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refuse_locked)
    found = image_files([folder])
    assert [name for _, name in found] == ["a"]
    assert found.skipped[0].path == folder / "locked"
    assert found.skipped[0].reason == f"{UNREADABLE}: Permission denied"


def test_a_hidden_file_given_by_name_is_read(tmp_path):
    path = picture(tmp_path / ".given.png")
    assert [name for _, name in image_files([path])] == [".given"]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    good = tmp_path_factory.mktemp("good")
    for seed in range(3):
        picture(good / f"{seed}.png", seed)
    model = good.parent / "model"
    options = ["--method", "anomalydino", "--resolution", "64", "--param", "rotation=false"]
    assert main(["fit", str(good), "-o", str(model), *options]) == 0
    return model


def test_predict_lists_the_skipped_paths_in_the_results(model, odd_folder, tmp_path, capsys):
    output = tmp_path / "out"
    assert main(["predict", str(model), str(odd_folder), "-o", str(output)]) == 0
    err = capsys.readouterr().err
    assert f"skipped 1: {BROKEN_LINK}: {odd_folder / 'gone.png'}" in err
    results = json.loads((output / "results.json").read_text())
    assert len(results["images"]) == 2
    assert {"path": str(odd_folder / "pipe.png"), "reason": NOT_A_FILE} in results["skipped"]
    assert len(results["skipped"]) == 9


def test_error_lines_start_their_own_line_beside_the_progress_bar(model, tmp_path, capsys):
    inputs = tmp_path / "inputs"
    picture(inputs / "a.png")
    (inputs / "broken.png").write_bytes(b"garbage")
    picture(inputs / "c.png")
    assert main(["predict", str(model), str(inputs), "-o", str(tmp_path / "out")]) == 1
    lines = [line for line in capsys.readouterr().err.split("\n") if "broken.png" in line]
    assert lines and all(line.split("\r")[-1].startswith("error: ") for line in lines)


def test_the_report_shows_a_file_name_that_is_not_utf8(model, tmp_path):
    inputs = tmp_path / "inputs"
    picture(inputs / NON_UTF8)
    output = tmp_path / "out"
    assert main(["predict", str(model), str(inputs), "-o", str(output)]) == 0
    assert main(["report", str(output)]) == 0
    page = (output / "report.html").read_text(encoding="utf-8")
    assert "caf\ufffd.png" in page and "overlay unreadable" not in page
