"""The fit, predict, info and weights commands on small synthetic folders."""

import contextlib
import io
import json
from pathlib import Path

import pytest
from images import texture, with_defect
from PIL import Image

from anomalens.cli import main
from anomalens.detector import Detector


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    (root / "good").mkdir()
    for seed in range(8):
        Image.fromarray(texture(seed)).save(root / "good" / f"{seed}.png")
    (root / "test" / "scratch").mkdir(parents=True)
    Image.fromarray(texture(50)).save(root / "test" / "ok.png")
    Image.fromarray(with_defect(texture(51))).save(root / "test" / "scratch" / "bad.png")
    model = root / "model"
    assert main(["fit", str(root / "good"), "-o", str(model), "--resolution", "64"]) == 0
    return root, model


def test_predict_writes_results_masks_and_overlays_for_nested_folders(folders):
    root, model = folders
    output = root / "out"
    assert main(["predict", str(model), str(root / "test"), "-o", str(output)]) == 0
    results = json.loads((output / "results.json").read_text())
    by_name = {Path(entry["path"]).name: entry for entry in results["images"]}
    assert by_name["bad.png"]["verdict"] == "NG" and by_name["bad.png"]["boxes"]
    assert by_name["ok.png"]["verdict"] == "OK"
    assert (output / "masks" / "scratch" / "bad.png").is_file()
    assert (output / "overlays" / "scratch" / "bad.png").is_file()
    assert results["model"]["thresholds"]["image"]["max_false_alarm"] == 0.01


def test_images_of_the_same_name_get_outputs_of_their_own(folders, tmp_path):
    _, model = folders
    for folder, image in (("a", texture(60)), ("b", with_defect(texture(61)))):
        (tmp_path / folder).mkdir()
        Image.fromarray(image).save(tmp_path / folder / "000.png")
    Image.fromarray(texture(62)).save(tmp_path / "a" / "000.jpg")
    inputs = [str(tmp_path / "a"), str(tmp_path / "b")]
    assert main(["predict", str(model), *inputs, "-o", str(tmp_path / "out")]) == 0
    entries = json.loads((tmp_path / "out" / "results.json").read_text())["images"]
    assert sorted(entry["mask"] for entry in entries) == [
        "masks/000-2.png",
        "masks/000-3.png",
        "masks/000.png",
    ]
    by_mask = {entry["mask"]: entry for entry in entries}
    assert by_mask["masks/000-3.png"]["path"] == str(tmp_path / "b" / "000.png")
    assert by_mask["masks/000-3.png"]["verdict"] == "NG"


def test_predict_can_write_coco_detections(folders):
    root, model = folders
    output = root / "coco"
    assert (
        main(["predict", str(model), str(root / "test"), "-o", str(output), "--format", "coco"])
        == 0
    )
    coco = json.loads((output / "coco.json").read_text())
    assert len(coco["images"]) == 2 and coco["annotations"]


def test_fit_draws_k_references_by_seed_or_takes_a_list(folders, tmp_path):
    root, _ = folders
    drawn = tmp_path / "drawn"
    good = root / "good"
    args = ["--method", "anomalydino", "--resolution", "64", "--param", "rotation=false"]
    assert main(["fit", str(good), "-o", str(drawn), "--shots", "2", "--seed", "1", *args]) == 0
    listing = tmp_path / "refs.txt"
    listing.write_text("0.png\n# a comment\n3.png\n")
    listed = tmp_path / "listed"
    assert main(["fit", str(good), "-o", str(listed), "--references", str(listing), *args]) == 0
    info = json.loads(_output_of(["info", str(listed), "--json"]))
    assert [Path(name).name for name in info["references"]] == ["0.png", "3.png"]
    assert info["method_params"]["rotation"] is False


def test_an_unreadable_labelled_image_is_reported_and_the_calibrated_model_saved(
    folders, tmp_path, capsys
):
    root, _ = folders
    labelled = tmp_path / "labelled"
    for folder, images in (("good", [texture(70), texture(71)]), ("defective", [texture(72)])):
        (labelled / folder).mkdir(parents=True)
        for index, image in enumerate(images):
            Image.fromarray(image).save(labelled / folder / f"{index}.png")
    Image.fromarray(with_defect(texture(73))).save(labelled / "defective" / "1.png")
    (labelled / "defective" / "2.png").write_bytes(b"\x89PNG broken")
    model = tmp_path / "model"
    argv = ["fit", str(root / "good"), "-o", str(model), "--resolution", "64"]
    assert main([*argv, "--calibrate", str(labelled)]) == 1
    assert f"{labelled / 'defective' / '2.png'}" in capsys.readouterr().err
    assert Detector.load(model).thresholds["image"].method.startswith("F1-optimal")


def test_calibration_without_both_classes_keeps_the_reference_threshold_and_saves(
    folders, tmp_path, capsys
):
    root, _ = folders
    labelled = tmp_path / "labelled"
    (labelled / "good").mkdir(parents=True)
    (labelled / "defective").mkdir()
    Image.fromarray(texture(80)).save(labelled / "good" / "0.png")
    (labelled / "defective" / "0.png").write_bytes(b"unreadable")
    model = tmp_path / "model"
    argv = ["fit", str(root / "good"), "-o", str(model), "--resolution", "64"]
    assert main([*argv, "--calibrate", str(labelled)]) == 1
    assert "not calibrated, the references' threshold stays" in capsys.readouterr().err
    assert Detector.load(model).thresholds["image"].method.startswith("log-normal")


def test_info_says_how_thresholds_were_set(folders, capsys):
    _, model = folders
    assert main(["info", str(model)]) == 0
    printed = capsys.readouterr().out
    assert "threshold   image" in printed and "held-out reference scores" in printed


def test_weights_list_shows_the_embedded_backbones_with_their_hash(capsys):
    assert main(["weights", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    lite0 = next(i for i, line in enumerate(lines) if line.startswith("efficientnet_lite0"))
    assert "available" in lines[lite0]
    assert "sha256" in lines[lite0 + 2]
    assert any(line.startswith("dinov2_vits14 ") and "missing" in line for line in lines)


def test_errors_are_one_clear_line_and_exit_one(tmp_path, capsys):
    assert main(["info", str(tmp_path)]) == 1
    assert "not an anomalens model" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--backbone", "magic"], "unknown backbone 'magic'"),
        (["--param", "magic=1"], "ensemble has no option magic"),
        (["--max-false-alarm", "2"], "max_false_alarm must be in (0, 1)"),
    ],
)
def test_a_bad_setting_is_one_clear_line_and_exit_one(folders, tmp_path, capsys, option, message):
    root, _ = folders
    argv = ["fit", str(root / "good"), "-o", str(tmp_path / "model"), *option]
    assert main(argv) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: ") and message in error and error.count("\n") == 1


def test_an_unknown_method_is_refused_with_the_allowed_ones(folders, tmp_path, capsys):
    root, _ = folders
    with pytest.raises(SystemExit) as stopped:
        main(["fit", str(root / "good"), "-o", str(tmp_path / "model"), "--method", "magic"])
    assert stopped.value.code == 2
    assert "invalid choice: 'magic'" in capsys.readouterr().err


def _output_of(argv: list[str]) -> str:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert main(argv) == 0
    return buffer.getvalue()
