"""The Detector end to end on synthetic images: find, box, decide, save, load, flag."""

import stat
from dataclasses import replace

import numpy as np
import pytest
from images import texture, with_defect

from anomalens import Detector, features
from anomalens.errors import ConfigError, MissingWeightsError, ModelFileError
from anomalens.methods import METHODS

REFERENCES = [texture(seed) for seed in range(8)]
GOOD, DEFECTIVE = texture(100), with_defect(texture(101))


IMAGE_LEVEL = {"gaussian"}
"""Methods that score whole images and draw no map (ensemble members beside a patch method)."""


@pytest.fixture(scope="module", params=sorted(METHODS))
def fitted(request):
    params = {
        "autoencoder": {"epochs": 30},
        "discriminator": {"resolution": 96},
        "feature_autoencoder": {"steps": 150, "hidden": 64, "bottleneck": 16},
        "fastflow": {"resolution": 128, "steps": 150, "flow_steps": 4},
        "stfpm": {"steps": 150},
        "efficientad": {"steps": 150},
        "fanogan": {"resolution": 32, "width": 8, "gan_steps": 200, "encoder_steps": 400},
    }
    settings = {"resolution": 64, **params.get(request.param, {})}  # a head needs 96 px of patches
    return Detector(method=request.param, **settings).fit(REFERENCES)


def test_a_defect_scores_above_a_good_image(fitted):
    good, defective = fitted.predict([GOOD, DEFECTIVE])
    assert defective.score > good.score


def test_results_carry_a_map_and_mask_at_image_size(fitted):
    (result,) = fitted.predict([DEFECTIVE])
    assert result.anomaly_map.shape == DEFECTIVE.shape[:2]
    assert result.anomaly_map.dtype == np.float32
    assert result.mask.shape == DEFECTIVE.shape[:2] and result.mask.dtype == bool


def test_the_strongest_box_surrounds_the_defect(fitted):
    (result,) = fitted.predict([DEFECTIVE])
    assert result.verdict == "NG"
    if fitted.method.name in IMAGE_LEVEL:
        assert not result.boxes  # a whole-image score draws no map
        return
    box = result.boxes[0]
    assert box.x0 <= 47 <= box.x1 and box.y0 <= 31 <= box.y1
    assert box.area >= fitted.min_region_area


def test_thresholds_come_from_the_references_alone(fitted):
    assert set(fitted.thresholds) == {"image", "pixel"}
    assert fitted.thresholds["image"].samples == len(REFERENCES)
    assert fitted.predict([GOOD])[0].verdict == "OK"


def test_a_loaded_detector_gives_bit_identical_results(fitted, tmp_path):
    fitted.save(tmp_path / "model")
    loaded = Detector.load(tmp_path / "model")
    before, after = fitted.predict([DEFECTIVE])[0], loaded.predict([DEFECTIVE])[0]
    assert after.score == before.score
    np.testing.assert_array_equal(after.anomaly_map, before.anomaly_map)
    assert loaded.thresholds == fitted.thresholds
    assert loaded.held_out_scores == fitted.held_out_scores
    assert loaded.held_out_map_maxima == fitted.held_out_map_maxima


def test_retargeting_moves_the_image_threshold_as_a_fit_at_that_target_would():
    fitted = Detector(method="anomalydino", resolution=64).fit(REFERENCES)
    strict = Detector(method="anomalydino", resolution=64, max_false_alarm=0.001).fit(REFERENCES)
    before = fitted.threshold_dicts()
    fitted.retarget(0.001)
    assert fitted.threshold_dicts() == strict.threshold_dicts()
    assert fitted.thresholds["image"].value > before["image"]["value"]
    assert fitted.thresholds["pixel"].value == before["pixel"]["value"]  # box_false_alarm's
    assert fitted.max_false_alarm == 0.001
    with pytest.raises(ConfigError, match="must be in"):
        fitted.retarget(1.5)
    fitted.held_out_map_maxima = []  # as an older model loads
    with pytest.raises(ConfigError, match="fit it again"):
        fitted.retarget(0.05)


@pytest.mark.parametrize("method", ["anomalydino", "patchcore"])
def test_a_loaded_approximate_index_gives_bit_identical_results(method, tmp_path):
    fitted = Detector(method=method, resolution=64, approximate=True).fit(REFERENCES)
    fitted.save(tmp_path / "model")
    loaded = Detector.load(tmp_path / "model")
    assert loaded.method.neighbours.is_approximate
    np.testing.assert_array_equal(
        loaded.method.neighbours.codebook, fitted.method.neighbours.codebook
    )
    before, after = fitted.predict([DEFECTIVE])[0], loaded.predict([DEFECTIVE])[0]
    assert after.score == before.score
    np.testing.assert_array_equal(after.anomaly_map, before.anomaly_map)


def test_saving_replaces_an_existing_model_whole(tmp_path):
    first = Detector(method="anomalydino", resolution=64, rotation=False).fit(REFERENCES[:4])
    second = Detector(method="anomalydino", resolution=64, rotation=False).fit(REFERENCES[4:])
    first.save(tmp_path / "model")
    second.save(tmp_path / "model")
    assert Detector.load(tmp_path / "model").references == second.references
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_saving_never_replaces_a_folder_that_is_not_a_model(tmp_path):
    images = tmp_path / "good"
    images.mkdir()
    (images / "001.png").write_bytes(b"a photo")
    detector = Detector(method="anomalydino", resolution=64, rotation=False).fit(REFERENCES[:4])
    with pytest.raises(ModelFileError, match="is not an anomalens model"):
        detector.save(images)
    assert [p.name for p in images.iterdir()] == ["001.png"]
    detector.save(tmp_path / "empty")  # a new or empty folder is fine
    assert stat.S_IMODE((tmp_path / "empty").stat().st_mode) & 0o055 == 0o055


@pytest.mark.parametrize(
    "damage",
    [
        lambda model: (model / "arrays.safetensors").write_bytes(b"\x08"),
        lambda model: (model / "detector.json").write_text('{"format_version": 1}'),
        lambda model: (model / "detector.json").write_text("[1, 2]"),
    ],
    ids=["truncated arrays", "missing configuration", "not an object"],
)
def test_altered_model_files_give_an_error_naming_the_model(damage, tmp_path):
    Detector(method="anomalydino", resolution=64, rotation=False).fit(REFERENCES[:4]).save(
        tmp_path / "model"
    )
    damage(tmp_path / "model")
    with pytest.raises(ModelFileError, match=str(tmp_path / "model")):
        Detector.load(tmp_path / "model")


def test_missing_backbone_weights_are_reported_as_such_not_as_a_damaged_model(
    tmp_path, monkeypatch
):
    Detector(method="anomalydino", resolution=64, rotation=False).fit(REFERENCES[:4]).save(
        tmp_path / "model"
    )

    def no_weights(name, weights=None):
        raise MissingWeightsError(f"weights for backbone {name!r} not found")

    monkeypatch.setattr(features, "load_backbone", no_weights)
    with pytest.raises(MissingWeightsError, match="efficientnet_lite0"):
        Detector.load(tmp_path / "model")


def test_defective_references_are_flagged_and_can_be_excluded():
    references = REFERENCES + [texture(seed) for seed in range(8, 14)]
    references += [with_defect(texture(50)), with_defect(texture(51), top=8, left=8)]
    names = [f"ref{i}.png" for i in range(len(references))]
    detector = Detector(method="anomalydino", resolution=64, rotation=False)
    detector.fit(references, names=names, exclude_outliers=True)
    assert detector.reference_outliers == ["ref14.png", "ref15.png"]
    assert len(detector.references) == len(detector.held_out_scores) == 14


def test_one_reference_is_enough(tmp_path):
    detector = Detector(resolution=64).fit([REFERENCES[0]])
    good, defective = detector.predict([GOOD, DEFECTIVE])
    assert defective.score > good.score


def test_labelled_images_set_the_f1_optimal_threshold():
    detector = Detector(method="anomalydino", resolution=64, rotation=False).fit(REFERENCES)
    images = [texture(200), texture(201), with_defect(texture(202)), with_defect(texture(203))]
    detector.calibrate(images, [False, False, True, True])
    assert detector.thresholds["image"].method.startswith("F1-optimal")
    verdicts = [result.verdict for result in detector.predict(images)]
    assert verdicts == ["OK", "OK", "NG", "NG"]


def test_predict_before_fit_is_refused():
    with pytest.raises(RuntimeError, match="not fitted"):
        Detector(resolution=64).predict([GOOD])


def test_an_unknown_method_names_the_choices():
    with pytest.raises(ValueError, match="anomalydino"):
        Detector(method="magic")


@pytest.mark.parametrize(("method", "resolution"), [("anomalydino", 320), ("autoencoder", 128)])
def test_unset_backbone_and_resolution_take_the_methods_own_defaults(method, resolution):
    assert Detector(method=method).method.config()["resolution"] == resolution
    assert Detector(method=method, resolution=64).method.config()["resolution"] == 64


def test_a_backbone_given_to_a_method_without_one_is_refused():
    with pytest.raises(ConfigError, match="autoencoder method has no backbone"):
        Detector(method="autoencoder", backbone="efficientnet_lite0")


def test_the_default_detector_flags_a_synthetic_defect_and_passes_a_good_image():
    detector = Detector().fit(REFERENCES)
    assert detector.method.name == "ensemble"
    good, defective = detector.predict([GOOD, DEFECTIVE])
    assert defective.verdict == "NG" and good.verdict == "OK"
    assert defective.score > 1.5 * good.score


def test_regions_grow_from_the_pixel_threshold_down_to_the_hysteresis_floor():
    detector = Detector(method="anomalydino", resolution=64, hysteresis=1.0).fit(REFERENCES)
    (result,) = detector.predict([DEFECTIVE])
    threshold = float(np.percentile(result.anomaly_map, 97))  # a few pixels of the defect
    detector.thresholds["pixel"] = replace(detector.thresholds["pixel"], value=threshold)
    (narrow,) = detector.predict([DEFECTIVE])
    detector.hysteresis = 0.8
    (wide,) = detector.predict([DEFECTIVE])
    assert np.array_equal(narrow.mask, narrow.anomaly_map >= threshold)
    assert 0 < narrow.mask.sum() < wide.mask.sum() < wide.mask.size
    assert not (narrow.mask & ~wide.mask).any()
    assert wide.anomaly_map[wide.mask].min() >= 0.8 * threshold
    assert [b.area for b in wide.boxes] == [int(wide.mask.sum())]  # one region, one box
