"""`anomalens defects` and `anomalens evaluate-types` on small synthetic images."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from defect_shapes import KINDS, PLACES
from images import texture
from PIL import Image

from anomalens import Detector
from anomalens.cli import main
from anomalens.data import discover
from anomalens.defect_types.labelled import embed_defects


def write_png(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def examples(folder: Path, kind: str, count: int = 5, seed: int = 0) -> list[str]:
    """`count` PNGs of defect `kind` in `folder`."""
    make = KINDS[kind]
    return [
        str(write_png(folder / f"{kind}{index}.png", make(seed + index, *PLACES[index])))
        for index in range(count)
    ]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    detector = Detector(method="anomalydino", resolution=64, rotation=False).fit(
        [texture(seed) for seed in range(8)]
    )
    return detector.save(folder / "model")


def test_add_list_threshold_and_remove_round_trip(model, tmp_path, capsys):
    assert main(["defects", "add", str(model), "spot", *examples(tmp_path, "spot")]) == 0
    assert main(["defects", "add", str(model), "scratch", *examples(tmp_path, "scratch")]) == 0
    assert main(["defects", "list", str(model)]) == 0
    listing = capsys.readouterr().out.splitlines()[-3:]
    assert listing[:2] == ["spot: 5 examples", "scratch: 5 examples"]
    assert "calibrated on 10 held-out examples" in listing[2]
    assert main(["defects", "threshold", str(model), "0.5"]) == 0
    assert "'unknown' below similarity 0.500 (set by hand)" in capsys.readouterr().out
    assert main(["defects", "remove", str(model), "spot"]) == 0
    assert Detector.load(model).defect_types.names == ["scratch"]


def test_masks_give_the_regions_one_per_image(model, tmp_path, capsys):
    images = examples(tmp_path, "spot", count=2)
    mask = np.zeros((64, 96), np.uint8)
    mask[8:20, 10:22] = 255
    masks = [str(write_png(tmp_path / f"mask{i}.png", mask)) for i in range(2)]
    command = ["defects", "add", str(model), "dent", *images, "--masks"]
    assert main([*command, *masks[:1]]) == 1
    assert "1 masks given for 2 images" in capsys.readouterr().err
    assert main([*command, *masks]) == 0
    assert Detector.load(model).defect_types.sources["dent"] == images


def test_a_bad_example_fails_with_its_name_and_leaves_the_model_alone(model, tmp_path, capsys):
    clean = write_png(tmp_path / "clean.png", texture(900))
    before = Detector.load(model).defect_types.names
    assert main(["defects", "add", str(model), "dent", str(clean)]) == 1
    assert f"{clean}: no defect region found" in capsys.readouterr().err
    assert Detector.load(model).defect_types.names == before


def test_boxes_give_the_examples_as_bounds_or_from_a_boxes_file(model, tmp_path, capsys):
    images = examples(tmp_path, "spot", count=3)
    boxes_file = tmp_path / "one.txt"
    boxes_file.write_text("10 8 21 19 pit\n0 0 5 5 scratch\n")  # inclusive ends, as DeepPCB
    command = ["defects", "add", str(model), "pit", *images, "--boxes"]
    assert main([*command, "10,8,22,20;30,8,40,20", str(boxes_file), "-"]) == 0
    assert "pit: 4 examples" in capsys.readouterr().out
    assert Detector.load(model).defect_types.sources["pit"] == [images[0], *images]
    with pytest.raises(SystemExit):
        main([*command, "10,8,22"])
    assert "expected x0,y0,x1,y1" in capsys.readouterr().err


def test_an_unusable_example_is_reported_and_the_others_are_added(model, tmp_path, capsys):
    clean = str(write_png(tmp_path / "clean.png", texture(901)))
    [good, boxed] = examples(tmp_path, "spot", count=2)
    missing = tmp_path / "missing.txt"
    command = ["defects", "add", str(model), "nick", clean, good, boxed, "--boxes", "-", "-"]
    assert main([*command, str(missing)]) == 0
    captured = capsys.readouterr()
    assert "nick: 1 examples" in captured.out
    assert f"skipped: {clean}: no defect region found" in captured.err
    assert f"skipped: {missing}: cannot read the boxes file" in captured.err
    assert Detector.load(model).defect_types.sources["nick"] == [good]
    assert main(["defects", "add", str(model), "gouge", clean, clean]) == 1
    assert "no usable example of defect type 'gouge'" in capsys.readouterr().err
    assert "gouge" not in Detector.load(model).defect_types.names


def test_predict_labels_boxes_in_results_and_coco(model, tmp_path):
    main(["defects", "add", str(model), "spot", *examples(tmp_path, "spot")])
    main(["defects", "add", str(model), "scratch", *examples(tmp_path, "scratch", seed=50)])
    query = write_png(tmp_path / "queries" / "q.png", KINDS["scratch"](99, *PLACES[6]))
    output = tmp_path / "out"
    main(["predict", str(model), str(query.parent), "-o", str(output), "--format", "coco"])
    (entry,) = json.loads((output / "results.json").read_text())["images"]
    assert [box["defect_type"] for box in entry["boxes"]] == ["scratch"]
    coco = json.loads((output / "coco.json").read_text())
    categories = {c["id"]: c["name"] for c in coco["categories"]}
    assert {"spot", "scratch"} <= set(categories.values())
    assert [categories[a["category_id"]] for a in coco["annotations"]] == ["scratch"]


def test_train_names_types_by_a_classifier_until_untrained(model, tmp_path, capsys):
    untyped = Detector.load(shutil.copytree(model, tmp_path / "model"))
    for name in untyped.defect_types.names:  # the other tests' types
        untyped.remove_defect_type(name)
    trained = untyped.save(tmp_path / "model")
    main(["defects", "add", str(trained), "spot", *examples(tmp_path, "spot")])
    assert main(["defects", "train", str(trained)]) == 1
    assert "needs at least two defect types" in capsys.readouterr().err
    main(["defects", "add", str(trained), "scratch", *examples(tmp_path, "scratch", seed=50)])
    capsys.readouterr()
    assert main(["defects", "train", str(trained), "--steps", "30", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "held-out examples named right: classifier" in out
    assert "types chosen by a trained classifier (plain, 30 steps)" in out
    classifier = Detector.load(trained).defect_types.classifier
    assert (classifier.variant, classifier.steps, classifier.seed) == ("plain", 30, 1)
    assert main(["defects", "untrain", str(trained)]) == 0
    assert Detector.load(trained).defect_types.classifier is None
    assert main(["defects", "untrain", str(trained)]) == 1
    assert "has no trained classifier" in capsys.readouterr().err


def write_category(root: Path) -> Path:
    """An MVTec-AD category with three defect kinds, seven images and masks of each."""
    for index in range(6):
        write_png(root / "train" / "good" / f"{index}.png", texture(index))
        write_png(root / "test" / "good" / f"{index}.png", texture(50 + index))
    for offset, kind in enumerate(KINDS):
        for index, (top, left) in enumerate(PLACES):
            seed = 100 * (offset + 1) + index
            write_png(root / "test" / kind / f"{index}.png", KINDS[kind](seed, top, left))
            mask = np.zeros((64, 96), np.uint8)
            mask[top : top + 16, left : left + 16] = 255
            write_png(root / "ground_truth" / kind / f"{index}_mask.png", mask)
    return root


def test_evaluate_types_reports_both_classifiers_with_intervals(tmp_path, capsys):
    data = write_category(tmp_path / "category")
    output = tmp_path / "report"
    arguments = ["--shots", "2", "--episodes", "6", "--open-set", "--resolution", "64"]
    command = ["evaluate-types", str(data), *arguments, "--method", "anomalydino"]
    command += ["--param", "rotation=false"]
    assert main([*command, "-o", str(output)]) == 0
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["types"] == {"checkerboard": 7, "scratch": 7, "spot": 7}
    closed = {result["name"]: result["metrics"] for result in metrics["closed_set"]}
    assert closed["both"]["accuracy"]["mean"] > 0.9
    assert closed["logistic regression"]["accuracy"]["low"] <= 1.0
    open_set = {result["name"]: result["metrics"] for result in metrics["open_set"]}
    assert open_set["both"]["unknown_auroc"]["mean"] > 0.8
    report = (output / "report.md").read_text()
    assert "# Defect types: 3-way 2-shot, 6 episodes" in report
    assert report in capsys.readouterr().out


def test_images_without_a_region_are_skipped_and_named(model, tmp_path):
    data = write_category(tmp_path / "category")
    (data / "ground_truth" / "spot" / "0_mask.png").unlink()
    write_png(data / "test" / "scratch" / "clean.png", texture(77))
    dataset, detector = discover(data)[0], Detector.load(model)
    by_mask = embed_defects(dataset, detector, "masks", progress=False)
    assert by_mask.labels.count("spot") == 6 and len(by_mask.embeddings) == 20
    assert f"{data / 'test' / 'spot' / '0.png'}: no ground-truth mask" in by_mask.skipped
    enough = by_mask.with_more_than(6)
    assert (
        sorted(set(enough.labels)) == ["checkerboard", "scratch"] and len(enough.embeddings) == 14
    )
    assert enough.skipped[-1] == "type spot: only 6 regions"
    by_detector = embed_defects(dataset, detector, "detector", progress=False)
    assert any("clean.png: no defect region found" in problem for problem in by_detector.skipped)
    assert by_detector.labels.count("spot") == 7


def test_evaluate_types_refuses_a_folder_without_a_category(tmp_path, capsys):
    assert main(["evaluate-types", str(tmp_path), "-o", str(tmp_path / "out")]) == 1
    assert "no dataset found" in capsys.readouterr().err
