"""The supervised classifier: crops around boxes, the targeted augmentation, and naming
detected defects by a classifier trained on the examples' crops (`defects train`)."""

import numpy as np
import pytest
import torch
from defect_shapes import PLACES, checkerboard, scratch, spot
from images import texture

from anomalens import Detector
from anomalens.defect_types import UNKNOWN, DefectTypeError, DefectTypes
from anomalens.defect_types.supervised import CROP, CropClassifier, augment, crop, normalised


def test_a_crop_is_a_normalised_square_around_the_box_with_context():
    image = np.zeros((100, 200, 3), np.uint8)
    image[40:60, 90:110] = 255  # the 20 px defect
    pixels = crop(image, (90, 40, 110, 60))
    assert pixels.shape == (3, CROP, CROP) and pixels.min() == -1 and pixels.max() == 1
    bright = (pixels[0] > 0).float().mean().item()
    assert bright == pytest.approx((1 / 1.5) ** 2, abs=0.05)  # the box fills 1/1.5 of each side


def test_a_crop_past_the_image_edge_repeats_the_edge():
    image = np.full((30, 30, 3), 200, np.uint8)
    assert torch.allclose(crop(image, (25, 25, 40, 40)), crop(image, (25, 25, 40, 40))[:, :1, :1])


def test_augmentation_keeps_shape_and_range_and_changes_each_crop():
    crops = torch.rand(4, 3, CROP, CROP) * 2 - 1
    out = augment(crops, np.random.default_rng(0))
    assert out.shape == crops.shape and out.min() >= -1 and out.max() <= 1
    assert all(not torch.allclose(a, b) for a, b in zip(out, crops, strict=True))


def test_an_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="variant must be one of"):
        CropClassifier("mixup")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Detector:
    """A detector naming spots and scratches by a classifier trained on 5 examples of each."""
    detector = Detector(method="anomalydino", resolution=64, rotation=False).fit(
        [texture(seed) for seed in range(8)]
    )
    detector.add_defect_type("spot", [spot(200 + i, *p) for i, p in enumerate(PLACES[:5])])
    detector.add_defect_type("scratch", [scratch(300 + i, *p) for i, p in enumerate(PLACES[:5])])
    detector.defect_types.train(CropClassifier(steps=60))
    return detector


def labels(detector: Detector, images: list[np.ndarray]) -> list[tuple[str | None, float | None]]:
    return [(b.defect_type, b.similarity) for r in detector.predict(images) for b in r.boxes]


def test_examples_keep_their_crops_for_training(trained):
    types = trained.defect_types
    assert {name: crops.shape for name, crops in types.crops.items()} == {
        "spot": (5, CROP, CROP, 3),
        "scratch": (5, CROP, CROP, 3),
    }


@pytest.mark.parametrize("make, name", [(spot, "spot"), (scratch, "scratch")])
def test_the_trained_classifier_names_new_defects(trained, make, name):
    images = [make(400 + index, *place) for index, place in enumerate(PLACES[5:])]
    assert [kind for kind, _ in labels(trained, images)] == [name, name]


def test_a_defect_unlike_every_type_stays_unknown(trained):
    images = [checkerboard(500 + index, *place) for index, place in enumerate(PLACES[5:])]
    assert [kind for kind, _ in labels(trained, images)] == [UNKNOWN, UNKNOWN]


class Always:
    """A stand-in classifier that gives every crop the same type."""

    def __init__(self, index: int):
        self.index = index

    def predict_proba(self, crops: torch.Tensor) -> np.ndarray:
        return np.eye(2)[[self.index] * len(crops)]


def test_the_classifier_chooses_the_type_and_the_similarity_decides_unknown():
    types = DefectTypes(unknown_threshold=0.5)
    types.add("a", np.array([[1.0, 0.0]]), ["1"], np.zeros((1, CROP, CROP, 3), np.uint8))
    types.add("b", np.array([[0.0, 1.0]]), ["2"], np.zeros((1, CROP, CROP, 3), np.uint8))
    types.classifier = Always(1)
    queries, crops = np.array([[1.0, 0.0], [-1.0, 0.0]]), np.zeros((2, CROP, CROP, 3), np.uint8)
    assert types.match(queries, crops) == [("b", 0.0), (UNKNOWN, 0.0)]
    with pytest.raises(DefectTypeError, match="from their crops"):
        types.match(queries)


def test_the_classifier_survives_save_and_load(trained, tmp_path):
    loaded = Detector.load(trained.save(tmp_path / "model"))
    assert loaded.defect_types.classifier == trained.defect_types.classifier  # its settings
    crops = normalised(np.concatenate(list(trained.defect_types.crops.values())))
    np.testing.assert_array_equal(
        loaded.defect_types.classifier.predict_proba(crops),
        trained.defect_types.classifier.predict_proba(crops),
    )
    images = [scratch(401, *PLACES[6]), spot(402, *PLACES[5])]
    assert labels(loaded, images) == labels(trained, images)


def test_adding_or_removing_a_type_drops_the_classifier(trained, tmp_path):
    for change in (
        lambda d: d.add_defect_type("spot", [spot(600, *PLACES[6])]),
        lambda d: d.remove_defect_type("spot"),
    ):
        detector = Detector.load(trained.save(tmp_path / "model"))
        assert detector.defect_types.classifier is not None
        assert change(detector).defect_types.classifier is None


def test_training_needs_two_types_that_keep_their_crops():
    types = DefectTypes()
    types.add("a", np.array([[1.0, 0.0]]), ["1"], np.zeros((1, CROP, CROP, 3), np.uint8))
    with pytest.raises(DefectTypeError, match="at least two defect types"):
        types.train(CropClassifier())
    types.add("b", np.array([[0.0, 1.0]]), ["2"])  # as models saved before crops were kept
    with pytest.raises(DefectTypeError, match="'b' keep no example crops"):
        types.train(CropClassifier())


def test_held_out_accuracy_names_each_half_of_the_examples_trained_on_the_other(trained):
    checked = trained.defect_types.held_out_accuracy(CropClassifier(steps=30))
    assert checked is not None
    assert all(0.0 <= accuracy <= 1.0 for accuracy in checked)
    assert checked[1] == 1.0  # spots and scratches are far apart for the similarity rule


def test_held_out_accuracy_needs_two_examples_of_every_type():
    types = DefectTypes()
    for name, row in (("a", [1.0, 0.0]), ("b", [0.0, 1.0])):
        types.add(name, np.array([row]), ["1"], np.zeros((1, CROP, CROP, 3), np.uint8))
    assert types.held_out_accuracy(CropClassifier()) is None
