"""`anomalens predict`'s output folder: results streamed and never lost, reruns resumed, earlier
predictions replaced whole, folders that are not predictions left alone, per-file errors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from images import texture, with_defect
from PIL import Image

from anomalens.batch import folder as folder_module
from anomalens.batch.local import LocalEngine
from anomalens.cli import main
from anomalens.detector import Detector

SETTINGS = {"method": "anomalydino", "resolution": 64, "rotation": False}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    model = root / "model"
    Detector(**SETTINGS).fit([texture(seed) for seed in range(6)]).save(model)
    other = root / "other-model"
    Detector(**SETTINGS).fit([texture(seed) for seed in range(10, 14)]).save(other)
    images = root / "images"
    (images / "sub").mkdir(parents=True)
    for index in range(5):
        Image.fromarray(texture(20 + index)).save(images / f"{index}.png")
    Image.fromarray(with_defect(texture(30))).save(images / "sub" / "bad.png")
    return root, model, other, images


def predict(*argv: object) -> int:
    return main(["predict", *map(str, argv)])


def results(output: Path) -> dict:
    return json.loads((output / "results.json").read_text())


def log_lines(output: Path) -> list[dict]:
    return [json.loads(line) for line in (output / "results.jsonl").read_text().splitlines()]


def test_results_are_logged_per_image_and_results_json_is_rebuilt_from_the_log(setup, tmp_path):
    _, model, _, images = setup
    output = tmp_path / "out"
    assert predict(model, images, "-o", output) == 0
    lines = log_lines(output)
    assert len(lines) == 6 and all("coco" in line for line in lines)
    document = results(output)
    assert document["skipped"] == [] and document["errors"] == []
    assert sorted(e["path"] for e in document["images"]) == sorted(line["path"] for line in lines)
    for entry in document["images"]:
        assert (output / entry["mask"]).is_file() and (output / entry["overlay"]).is_file()
    (output / "results.json").unlink()
    assert predict(model, images, "-o", output, "--format", "coco") == 0  # nothing left to do
    assert results(output)["images"] == document["images"]
    assert len(log_lines(output)) == 6  # no image was inspected twice
    coco = json.loads((output / "coco.json").read_text())
    assert len(coco["images"]) == 6 and coco["annotations"]


def test_a_killed_run_loses_no_logged_result_and_the_rerun_resumes(setup, tmp_path):
    _, model, _, _ = setup
    many = tmp_path / "many"
    many.mkdir()
    for index in range(40):
        Image.fromarray(texture(100 + index)).save(many / f"{index:02d}.png")
    output = tmp_path / "out"
    entry = "import sys; from anomalens.cli import main; sys.exit(main(sys.argv[1:]))"
    argv = [sys.executable, "-c", entry, "predict", str(model), str(many)]
    command = [*argv, "-o", str(output), "--batch-size", "1"]
    process = subprocess.Popen(command, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    log = output / "results.jsonl"
    deadline = time.monotonic() + 120
    while not (log.exists() and log.read_text().count("\n") >= 3):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    text = log.read_text()
    logged = [json.loads(line) for line in text[: text.rfind("\n")].splitlines()]
    assert 3 <= len(logged) < 40 and not (output / "results.json").exists()
    for record in logged:  # a logged record always has its files
        assert (output / record["mask"]).is_file() and (output / record["overlay"]).is_file()
    assert predict(model, many, "-o", output) == 0
    entries = results(output)["images"]
    assert len(entries) == 40 and len({entry["path"] for entry in entries}) == 40
    assert log_lines(output)[: len(logged)] == logged  # earlier results kept, not redone
    assert len(log_lines(output)) <= 40 + 1  # at most the record cut short is redone


def test_a_log_line_cut_short_is_dropped_and_its_image_done_again(setup, tmp_path):
    _, model, _, images = setup
    output = tmp_path / "out"
    assert predict(model, images, "-o", output) == 0
    lines = (output / "results.jsonl").read_text().splitlines(keepends=True)
    (output / "results.jsonl").write_text("".join(lines[:4]) + lines[4][:20])
    (output / "results.json").unlink()
    assert predict(model, images, "-o", output) == 0
    assert len(results(output)["images"]) == 6 and len(log_lines(output)) == 6


def test_a_name_too_long_for_the_file_system_gets_a_short_hashed_output_name(setup, tmp_path):
    _, model, _, _ = setup
    folder = tmp_path / "long"
    folder.mkdir()
    long_name = "é" * 120 + ".png"  # 240 bytes + suffix: the temporary name would exceed 255
    Image.fromarray(texture(40)).save(folder / long_name)
    Image.fromarray(texture(41)).save(folder / "short.png")
    output = tmp_path / "out"
    assert predict(model, folder, "-o", output) == 0
    by_path = {Path(e["path"]).name: e for e in results(output)["images"]}
    mask = Path(by_path[long_name]["mask"])
    assert len(mask.name.encode()) <= 210 and (output / mask).is_file()
    assert by_path["short.png"]["mask"] == "masks/short.png"


def test_an_unreadable_folder_is_one_clear_line(setup, tmp_path, monkeypatch, capsys):
    _, model, _, images = setup
    real = os.scandir

    def denied(folder):
        if Path(folder) == images:
            raise PermissionError(13, "Permission denied", str(folder))
        return real(folder)

    monkeypatch.setattr(os, "scandir", denied)
    assert predict(model, images, "-o", tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert "Permission denied" in err and "Traceback" not in err and str(images) in err


def test_an_output_folder_that_cannot_be_made_is_one_clear_line(setup, tmp_path, capsys):
    _, model, _, images = setup
    (tmp_path / "file").write_text("not a folder")
    assert predict(model, images, "-o", tmp_path / "file" / "out") == 1
    assert "cannot write the output folder" in capsys.readouterr().err


def test_an_output_file_that_cannot_be_written_is_that_images_error(
    setup, tmp_path, monkeypatch, capsys
):
    _, model, _, images = setup
    real = folder_module.write_bytes

    def failing(path: Path, data: bytes) -> Path:
        if path.name == "bad.png":
            raise OSError(28, "No space left on device")
        return real(path, data)

    monkeypatch.setattr(folder_module, "write_bytes", failing)
    output = tmp_path / "out"
    assert predict(model, images, "-o", output) == 1
    document = results(output)
    assert len(document["images"]) == 5
    [error] = document["errors"]
    assert error["path"].endswith("bad.png") and "No space left on device" in error["error"]
    assert "No space left on device" in capsys.readouterr().err


def test_a_folder_that_is_not_a_prediction_is_refused_and_left_alone(setup, tmp_path, capsys):
    _, model, _, images = setup
    output = tmp_path / "data"
    output.mkdir()
    (output / "data.csv").write_text("a,b\n")
    assert predict(model, images, "-o", output) == 1
    assert "holds no prediction" in capsys.readouterr().err
    assert [p.name for p in output.iterdir()] == ["data.csv"]
    prediction = tmp_path / "prediction"
    assert predict(model, images, "-o", prediction) == 0
    (prediction / "NOTES.txt").write_text("mine")
    assert predict(model, images, "-o", prediction) == 1
    assert "NOTES.txt" in capsys.readouterr().err and (prediction / "NOTES.txt").exists()


def test_the_model_folder_is_never_an_output_folder(setup, tmp_path, capsys):
    root, model, _, images = setup
    for output in (model, model / "out", root):
        assert predict(model, images, "-o", output) == 1
        assert "must not be, hold or lie inside" in capsys.readouterr().err
    assert sorted(p.name for p in model.iterdir()) == ["arrays.safetensors", "detector.json"]


def test_another_models_prediction_is_replaced_whole_once_the_new_one_is_complete(
    setup, tmp_path, monkeypatch
):
    _, model, other, images = setup
    output = tmp_path / "out"
    assert predict(model, images, "-o", output) == 0
    first = results(output)
    only = tmp_path / "only"
    only.mkdir()
    Image.fromarray(texture(50)).save(only / "new.png")
    real = LocalEngine.outcomes

    def interrupted(self, items):
        yield from real(self, items)
        raise KeyboardInterrupt

    monkeypatch.setattr(LocalEngine, "outcomes", interrupted)
    assert predict(other, only, "-o", output) == 130
    assert results(output) == first  # the old prediction is whole until the new one is done
    monkeypatch.undo()
    assert predict(other, only, "-o", output) == 0
    document = results(output)
    assert [Path(e["path"]).name for e in document["images"]] == ["new.png"]
    assert document["model"]["path"] == str(other)
    masks = sorted(p.relative_to(output).as_posix() for p in (output / "masks").rglob("*.png"))
    assert masks == ["masks/new.png"]  # no stale outputs of the earlier prediction
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_an_interrupted_swap_is_restored_on_the_next_run(setup, tmp_path, capsys):
    _, model, _, images = setup
    output = tmp_path / "out"
    assert predict(model, images, "-o", output) == 0
    output.rename(tmp_path / ".out.replaced")  # killed between the swap's two renames
    assert predict(model, images, "-o", output) == 0
    assert "restored" in capsys.readouterr().err
    assert len(results(output)["images"]) == 6 and not (tmp_path / ".out.replaced").exists()


def test_lists_of_files_and_file_uris_give_the_folders_results(setup, tmp_path):
    _, model, _, images = setup
    assert predict(model, images, "-o", tmp_path / "folder") == 0
    listing = tmp_path / "inputs.txt"
    listing.write_text(f"# the images\n{images / '0.png'}\nfile://{images / 'sub'}\n")
    assert predict(model, listing, f"file://{images / '1.png'}", "-o", tmp_path / "list") == 0
    expected = {Path(e["path"]).name: e["score"] for e in results(tmp_path / "folder")["images"]}
    got = {Path(e["path"]).name: e["score"] for e in results(tmp_path / "list")["images"]}
    assert got == {name: expected[name] for name in ("0.png", "1.png", "bad.png")}
    paths = {e["path"] for e in results(tmp_path / "list")["images"]}
    assert f"file://{images / 'sub' / 'bad.png'}" in paths


def test_an_output_folder_inside_an_input_folder_is_not_read_as_input(setup, tmp_path):
    _, model, _, _ = setup
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(texture(60)).save(folder / "a.png")
    assert predict(model, folder, "-o", folder / "out") == 0
    assert predict(model, folder, "-o", folder / "out") == 0
    document = results(folder / "out")
    assert [Path(e["path"]).name for e in document["images"]] == ["a.png"]
    assert {entry["reason"] for entry in document["skipped"]} == {"inside the output folder"}


def test_the_zero_shot_batch_mode_needs_no_model(tmp_path, capsys):
    folder = tmp_path / "batch"
    folder.mkdir()
    for index in range(8):
        image = texture(70 + index)
        Image.fromarray(with_defect(image) if index == 5 else image).save(folder / f"{index}.png")
    output = tmp_path / "out"
    argv = ["--zero-shot", folder, "-o", output, "--resolution", "192", "--param", "rotation=false"]
    assert predict(*argv) == 0
    document = results(output)
    verdicts = {Path(e["path"]).name: e["verdict"] for e in document["images"]}
    assert verdicts == {f"{i}.png": "NG" if i == 5 else "OK" for i in range(8)}
    assert document["model"]["zero_shot"] == {"refit": 0}
    assert document["model"]["thresholds"]["image"]["method"].startswith("robust")
    assert "8/8" in capsys.readouterr().err  # the bar counts images inspected
    assert predict(*argv) == 0 and len(log_lines(output)) == 8  # resumed: nothing redone


def test_zero_shot_options_are_refused_with_a_model(setup, tmp_path, capsys):
    _, model, _, images = setup
    assert predict(model, images, "-o", tmp_path / "out", "--method", "padim") == 1
    assert "--zero-shot" in capsys.readouterr().err
    assert predict("--zero-shot", images, "-o", tmp_path / "out", "--engine", "ray") == 1
    assert "--engine local" in capsys.readouterr().err
