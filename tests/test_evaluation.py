"""The evaluate command end to end on tiny synthetic datasets, and the summary statistics."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from synthetic_data import SIZE, make_folders, make_mvtec, write_mask

from anomalens import Detector
from anomalens.cli import main
from anomalens.data import Sample
from anomalens.data.shots import seeded_order
from anomalens.evaluation import EvaluationSettings, Run, evaluate, finished_report
from anomalens.evaluation.summary import METRICS, THRESHOLD_FREE, TIMINGS, summarize

FAST = [
    *("--method", "anomalydino", "--resolution", "64"),
    *("--param", "rotation=false", "--param", "masking=false"),
]
"""The quickest detector settings, so that each run takes about a second."""
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mtd"


def evaluate_cli(data: Path, out: Path, *options: str) -> int:
    return main(["evaluate", str(data), *FAST, "-o", str(out), *options])


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, Path]:
    """(data, report folder) of one CLI evaluation: 2 shots × seeds 0 and 1, maps saved."""
    base = tmp_path_factory.mktemp("evaluation")
    data = make_mvtec(base / "tile")
    out = base / "report"
    assert evaluate_cli(data, out, "--shots", "2", "--seeds", "0", "1", "--save-maps") == 0
    return data, out


def read_metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def test_metrics_json_follows_the_documented_schema(report):
    data, out = report
    metrics = read_metrics(out)
    assert metrics["schema_version"] == 1
    assert metrics["data"] == str(data.resolve())
    assert (metrics["layout"], metrics["categories"]) == (["mvtec"], ["tile"])
    assert metrics["settings"]["shots"] == [2] and metrics["settings"]["seeds"] == [0, 1]
    assert metrics["detector"]["method_params"]["resolution"] == 64
    assert metrics["settings"]["method_params"] == {"rotation": False, "masking": False}
    assert [(run["shots"], run["seed"]) for run in metrics["runs"]] == [(2, 0), (2, 1)]
    for run in metrics["runs"]:
        assert set(run["metrics"]) == set(METRICS)
        assert all(0.0 <= run["metrics"][name] <= 1.0 for name in THRESHOLD_FREE)
        assert run["test_images"] == 7 and run["skipped"] == []
        assert run["fit_seconds"] > 0 and run["ms_per_image"] > 0
    [summary] = metrics["summary"]
    assert summary["shots"] == 2 and summary["seeds"] == [0, 1]
    assert set(summary["mean"]) == set(METRICS) | set(TIMINGS)
    auroc = [run["metrics"]["image_auroc"] for run in metrics["runs"]]
    assert summary["categories"]["tile"]["image_auroc"]["mean"] == pytest.approx(np.mean(auroc))
    assert summary["mean"]["image_auroc"]["std"] == pytest.approx(np.std(auroc))


def test_references_are_the_seeded_draw_and_are_written_per_run(report):
    data, out = report
    pool = sorted((data / "train" / "good").iterdir())
    for run in read_metrics(out)["runs"]:
        expected = [path.relative_to(data).as_posix() for path in seeded_order(pool, run["seed"])]
        assert run["references"] == expected[:2]
        listed = (out / run["folder"] / "references.txt").read_text().split()
        assert listed == run["references"]


def test_scores_csv_has_one_row_per_run_and_test_image(report):
    _, out = report
    with (out / "scores.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["category", "shots", "seed", "path", "label", "defect_type", "score"]
    assert len(rows) == 2 * 7
    assert {(row["path"], row["label"], row["defect_type"]) for row in rows} >= {
        ("test/good/000.png", "0", "good"),
        ("test/hole/001.png", "1", "hole"),
    }


def test_report_md_tabulates_mean_and_std_per_shots(report):
    _, out = report
    text = (out / "report.md").read_text()
    assert "| shots | image AUROC |" in text
    assert "| 2 | " in text and " ± " in text
    assert "runs/tile/2-shot-seed1" in text


def test_each_run_folder_has_curves_overlays_and_float16_maps_keyed_by_path(report):
    _, out = report
    folder = out / "runs" / "tile" / "2-shot-seed0"
    for name in ("roc.png", "pr.png", "overlays.png"):
        with Image.open(folder / name) as image:
            assert image.format == "PNG" and min(image.size) > 100
    with (out / "scores.csv").open() as handle:
        tested = {row["path"] for row in csv.DictReader(handle) if row["seed"] == "0"}
    with np.load(folder / "maps.npz") as maps:
        assert set(maps.files) == tested and len(tested) == 7
        assert maps["test/hole/000.png"].dtype == np.float16
        assert maps["test/hole/000.png"].shape == (SIZE, SIZE)


def test_reference_list_fixes_the_references_exactly(tmp_path):
    data = make_mvtec(tmp_path / "tile")
    (tmp_path / "refs.txt").write_text("train/good/004.png\ntrain/good/001.png\n")
    out = tmp_path / "report"
    assert evaluate_cli(data, out, "--seeds", "0", "--references", str(tmp_path / "refs.txt")) == 0
    [run] = read_metrics(out)["runs"]
    assert (run["shots"], run["seed"]) == ("list", 0)
    assert run["references"] == ["train/good/004.png", "train/good/001.png"]


def test_a_saved_model_is_evaluated_as_it_is_and_scores_as_its_own_fit(tmp_path, capsys):
    data = make_mvtec(tmp_path / "tile")
    (tmp_path / "refs.txt").write_text("train/good/004.png\ntrain/good/001.png\n")
    fitted = tmp_path / "fitted"
    assert (
        evaluate_cli(data, fitted, "--seeds", "0", "--references", str(tmp_path / "refs.txt")) == 0
    )
    detector = Detector(method="anomalydino", resolution=64, rotation=False, masking=False)
    references = [str(data / "train/good/004.png"), str(data / "train/good/001.png")]
    model = detector.fit(references, names=references).save(tmp_path / "model")
    loaded = tmp_path / "loaded"
    assert main(["evaluate", str(data), "--model", str(model), "-o", str(loaded)]) == 0
    [run], [own] = read_metrics(loaded)["runs"], read_metrics(fitted)["runs"]
    assert run["references"] == own["references"] and run["fit_seconds"] is None
    assert run["metrics"] == own["metrics"]
    assert read_metrics(loaded)["settings"]["model"] == str(model)
    assert (loaded / "scores.csv").read_text() == (fitted / "scores.csv").read_text()
    other = make_mvtec(tmp_path / "other")
    assert main(["evaluate", str(other), "--model", str(model), "-o", str(loaded)]) == 1
    assert "is not in this folder" in capsys.readouterr().err
    assert main(["evaluate", str(data), "--runtime", "torch", "-o", str(loaded)]) == 1
    assert "--runtime and --device need --model" in capsys.readouterr().err


def test_unreadable_test_image_is_skipped_and_reported(tmp_path):
    data = make_mvtec(tmp_path / "tile")
    (data / "test" / "good" / "002.png").write_bytes(b"not a png")
    out = tmp_path / "report"
    assert evaluate_cli(data, out, "--shots", "1", "--seeds", "0") == 0
    [run] = read_metrics(out)["runs"]
    assert run["test_images"] == 6
    assert len(run["skipped"]) == 1 and "002.png: not an image file" in run["skipped"][0]
    assert "test/good/002.png" not in (out / "scores.csv").read_text()
    assert "## Problems" in (out / "report.md").read_text()


def test_unreadable_reference_is_replaced_by_the_next_in_seeded_order(tmp_path):
    data = make_mvtec(tmp_path / "tile")
    order = seeded_order(sorted((data / "train" / "good").iterdir()), 0)
    order[0].write_bytes(b"")
    out = tmp_path / "report"
    assert evaluate_cli(data, out, "--shots", "1", "--seeds", "0") == 0
    [run] = read_metrics(out)["runs"]
    assert run["references"] == [order[1].relative_to(data).as_posix()]
    [problem] = run["skipped"]
    assert problem.startswith(f"{order[0]}: not an image file")
    assert problem.endswith("replaced by the next reference in seeded order")


def test_mask_of_wrong_size_leaves_only_that_image_out_of_pixel_metrics(tmp_path):
    data = make_mvtec(tmp_path / "tile")
    write_mask(data / "ground_truth" / "hole" / "000_mask.png", size=SIZE + 8)
    out = tmp_path / "report"
    assert evaluate_cli(data, out, "--shots", "1", "--seeds", "0") == 0
    [run] = read_metrics(out)["runs"]
    assert run["test_images"] == 7
    assert "mask is 56x56 px but its image is 48x48 px" in run["skipped"][0]
    assert run["metrics"]["pixel_auroc"] is not None


def test_empty_and_unusable_masks_are_noted_and_no_mask_left_means_no_pixel_metrics(tmp_path):
    data = make_mvtec(tmp_path / "tile")
    empty = data / "ground_truth" / "hole" / "001_mask.png"
    Image.fromarray(np.zeros((SIZE, SIZE), np.uint8)).save(empty)
    for mask in (data / "ground_truth").glob("*/*.png"):
        if mask != empty:
            write_mask(mask, size=SIZE + 8)
    out = tmp_path / "report"
    assert evaluate_cli(data, out, "--shots", "1", "--seeds", "0") == 0
    [run] = read_metrics(out)["runs"]
    assert any("001_mask.png: mask marks no defect pixel" in note for note in run["skipped"])
    assert run["skipped"][-1].endswith("no usable defect mask; pixel metrics are not computed")
    assert run["metrics"]["pixel_auroc"] is None and run["metrics"]["image_auroc"] is not None


def test_a_plan_that_leaves_nothing_to_test_fails_before_the_first_run(tmp_path, capsys):
    data = make_folders(tmp_path / "parts", good=6, defective=3)
    out = tmp_path / "report"
    assert evaluate_cli(data, out, "--shots", "1", "full", "--seeds", "0") == 1
    assert "no good test images left" in capsys.readouterr().err
    assert not (out / "runs").exists()


def test_folders_layout_sets_the_references_aside_from_the_good_test_images(tmp_path):
    data = make_folders(tmp_path / "parts", good=6, defective=3)
    runs = evaluate(
        data,
        tmp_path / "report",
        EvaluationSettings(
            method="anomalydino",
            resolution=64,
            shots=[2],
            seeds=[0],
            method_params={"rotation": False, "masking": False},
        ),
        progress=False,
    )
    [run] = runs
    tested = {sample.path for sample, _ in run.scores}
    assert len(tested) == 4 + 3 and not tested & set(run.references)


def test_multi_category_root_evaluates_each_category(tmp_path):
    make_mvtec(tmp_path / "data" / "a")
    make_mvtec(tmp_path / "data" / "b")
    out = tmp_path / "report"
    assert evaluate_cli(tmp_path / "data", out, "--shots", "1", "--seeds", "0") == 0
    metrics = read_metrics(out)
    assert [run["category"] for run in metrics["runs"]] == ["a", "b"]
    assert metrics["runs"][1]["references"][0].startswith("b/train/good/")
    assert "## Per category" in (out / "report.md").read_text()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--shots", "7"], "7 shots asked but it has only 6 images"),
        (["--references", "absent.txt"], "absent.txt: cannot read the reference list"),
    ],
)
def test_bad_request_exits_1_with_a_clear_message(tmp_path, capsys, options, message):
    data = make_mvtec(tmp_path / "tile")
    assert evaluate_cli(data, tmp_path / "report", "--seeds", "0", *options) == 1
    assert message in capsys.readouterr().err


def test_folder_in_no_known_layout_exits_1_naming_it(tmp_path, capsys):
    (tmp_path / "photos").mkdir()
    assert evaluate_cli(tmp_path / "photos", tmp_path / "report") == 1
    assert "photos: no dataset found" in capsys.readouterr().err


def make_run(category: str, seed: int, auroc: float, aupro: float | None) -> Run:
    metrics = dict.fromkeys(METRICS, 0.5) | {"image_auroc": auroc, "aupro": aupro}
    sample = Sample(Path("x.png"), 0, "good")
    return Run(category, 4, seed, [], [(sample, 0.0)], metrics, 1.0, 10.0, [], {})


def test_summary_averages_categories_per_seed_then_takes_statistics_over_seeds():
    runs = [
        make_run("a", 0, 0.8, 0.7),
        make_run("a", 1, 1.0, 0.9),
        make_run("b", 0, 0.6, None),
        make_run("b", 1, 0.6, None),
    ]
    [summary] = summarize(runs)
    assert summary["categories"]["a"]["image_auroc"] == pytest.approx({"mean": 0.9, "std": 0.1})
    assert summary["mean"]["image_auroc"] == pytest.approx({"mean": 0.75, "std": 0.05})
    assert summary["categories"]["a"]["aupro"] == pytest.approx({"mean": 0.8, "std": 0.1})
    assert summary["categories"]["b"]["aupro"] == {"mean": None, "std": None}
    assert summary["mean"]["aupro"] == {"mean": None, "std": None}
    assert summary["mean"]["ms_per_image"] == {"mean": 10.0, "std": 0.0}


@pytest.mark.integration
def test_evaluate_on_magnetic_tiles_one_shot(tmp_path):
    """Runs end to end on real data and beats chance even at one shot and 64 px."""
    out = tmp_path / "report"
    options = ["--resolution", "64", "--shots", "1", "--seeds", "0", "-o", str(out)]
    assert main(["evaluate", str(DATA), *options]) == 0
    [run] = read_metrics(out)["runs"]
    assert run["test_images"] == 542
    assert len(run["skipped"]) == 4  # four uneven tiles whose masks are empty
    assert all("uneven" in note and "marks no defect pixel" in note for note in run["skipped"])
    assert run["metrics"]["image_auroc"] > 0.55 and run["metrics"]["pixel_auroc"] > 0.55


def test_a_finished_report_is_found_only_for_the_settings_it_covers(report):
    data, out = report
    params = {"rotation": False, "masking": False}

    def settings(shots, seeds):
        return EvaluationSettings(
            method="anomalydino", resolution=64, shots=shots, seeds=seeds, method_params=params
        )

    assert finished_report(data, out, settings([2], [0, 1])) is not None
    assert finished_report(data, out, settings([4], [0, 1])) is None
    assert finished_report(data, out, settings([2], [0])) is None
    assert finished_report(data.parent, out, settings([2], [0, 1])) is None
