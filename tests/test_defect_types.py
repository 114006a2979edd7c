"""Naming defects from a few examples: labels, "unknown", persistence and bad input."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from defect_shapes import PLACES, checkerboard, scratch, spot
from images import texture
from PIL import Image

from anomalens import Detector
from anomalens.defect_types import UNKNOWN, DefectTypeError, DefectTypes
from anomalens.defect_types.embedding import region_embedding, region_level
from anomalens.errors import ImageError


@pytest.fixture(scope="module")
def untyped() -> Detector:
    return Detector(method="anomalydino", resolution=64, rotation=False).fit(
        [texture(seed) for seed in range(8)]
    )


@pytest.fixture(scope="module")
def detector(untyped, tmp_path_factory) -> Detector:
    detector = copy(untyped, tmp_path_factory.mktemp("untyped"))
    detector.add_defect_type("spot", [spot(200 + i, *p) for i, p in enumerate(PLACES[:5])])
    detector.add_defect_type("scratch", [scratch(300 + i, *p) for i, p in enumerate(PLACES[:5])])
    return detector


def copy(detector: Detector, folder) -> Detector:
    """An independent copy of `detector`, through save and load."""
    return Detector.load(detector.save(folder / "model"))


def box_labels(detector: Detector, image: np.ndarray) -> list[str | None]:
    return [box.defect_type for box in detector.predict([image])[0].boxes]


@pytest.mark.parametrize("make, name", [(spot, "spot"), (scratch, "scratch")])
def test_new_defects_are_labelled_with_their_type(detector, make, name):
    for index, place in enumerate(PLACES[5:]):
        (result,) = detector.predict([make(400 + index, *place)])
        assert [box.defect_type for box in result.boxes] == [name]
        assert detector.defect_types.threshold <= result.boxes[0].similarity <= 1


def test_a_defect_unlike_every_type_is_unknown(detector):
    for index, place in enumerate(PLACES[5:]):
        assert box_labels(detector, checkerboard(500 + index, *place)) == [UNKNOWN]


def test_the_unknown_threshold_can_be_set_by_hand(detector):
    image = checkerboard(500, *PLACES[5])
    detector.defect_types.unknown_threshold = -1.0
    try:
        assert box_labels(detector, image) in (["spot"], ["scratch"])
    finally:
        detector.defect_types.unknown_threshold = None
    assert box_labels(detector, image) == [UNKNOWN]


def test_without_types_boxes_carry_no_label(untyped):
    (box,) = untyped.predict([spot(400, *PLACES[5])])[0].boxes
    assert box.defect_type is None and box.similarity is None


def test_types_survive_save_and_load(detector, tmp_path):
    loaded = copy(detector, tmp_path)
    assert loaded.defect_types.names == ["spot", "scratch"]
    assert loaded.defect_types.sources["spot"] == [f"<array {i}>" for i in range(5)]
    for name in detector.defect_types.names:
        np.testing.assert_array_equal(
            loaded.defect_types.examples[name], detector.defect_types.examples[name]
        )
    image = scratch(401, *PLACES[6])
    before, after = detector.predict([image])[0].boxes, loaded.predict([image])[0].boxes
    assert [(b.defect_type, b.similarity) for b in after] == [
        (b.defect_type, b.similarity) for b in before
    ]


def test_a_removed_type_is_no_longer_given(detector, tmp_path):
    without_spots = copy(detector, tmp_path).remove_defect_type("spot")
    assert without_spots.defect_types.names == ["scratch"]
    assert box_labels(without_spots, spot(400, *PLACES[5])) != ["spot"]


def test_adding_to_a_type_extends_its_examples(detector, tmp_path):
    extended = copy(detector, tmp_path).add_defect_type("spot", [spot(600, *PLACES[6])])
    assert len(extended.defect_types.examples["spot"]) == 6
    assert len(detector.defect_types.examples["spot"]) == 5


def test_a_mask_or_a_box_gives_the_region_instead_of_the_detector(untyped, tmp_path):
    image = spot(700, *PLACES[0])
    top, left = PLACES[0]
    mask = np.zeros(image.shape[:2], bool)
    mask[top : top + 12, left : left + 12] = True
    box = (left, top, left + 12, top + 12)
    by_mask = copy(untyped, tmp_path / "mask").add_defect_type("spot", [image], masks=[mask])
    by_box = copy(untyped, tmp_path / "box").add_defect_type("spot", [image], boxes=[box])
    by_detector = copy(untyped, tmp_path / "detector").add_defect_type("spot", [image])
    embeddings = [d.defect_types.examples["spot"][0] for d in (by_mask, by_box, by_detector)]
    np.testing.assert_allclose(embeddings[0], embeddings[1], atol=1e-6)
    assert not np.allclose(embeddings[0], embeddings[2], atol=1e-3)


# Bad input


def test_a_type_needs_an_example(detector):
    with pytest.raises(DefectTypeError, match="at least one example"):
        detector.add_defect_type("dent", [])


def test_an_example_without_a_detectable_region_is_named(detector, tmp_path):
    path = tmp_path / "clean.png"
    Image.fromarray(texture(800)).save(path)
    with pytest.raises(ImageError, match=r"clean\.png: no defect region found"):
        detector.add_defect_type("dent", [path])


def test_an_example_given_as_pixels_is_named_by_the_name_passed_with_it(detector):
    with pytest.raises(ImageError, match=r"upload\.png: no defect region found"):
        detector.add_defect_type("dent", [texture(801)], names=["upload.png"])


def test_a_mask_of_the_wrong_size_is_named(detector, tmp_path):
    mask = tmp_path / "small_mask.png"
    Image.fromarray(np.full((32, 32), 255, np.uint8)).save(mask)
    with pytest.raises(
        ImageError, match=r"small_mask\.png: mask is 32x32 px but its image is 96x64"
    ):
        detector.add_defect_type("dent", [spot(801, *PLACES[0])], masks=[mask])


def test_an_empty_mask_is_refused(detector):
    with pytest.raises(ImageError, match="mask marks no defect pixel"):
        detector.add_defect_type("dent", [spot(802, *PLACES[0])], masks=[np.zeros((64, 96))])


def test_a_box_outside_the_image_is_refused(detector):
    with pytest.raises(ImageError, match=r"box \(200, 0, 220, 10\) holds no pixel"):
        detector.add_defect_type("dent", [spot(803, *PLACES[0])], boxes=[(200, 0, 220, 10)])


def test_masks_must_match_the_images_one_to_one(detector):
    with pytest.raises(ValueError, match="2 masks given for 1 example images"):
        detector.add_defect_type("dent", [spot(804, *PLACES[0])], masks=[None, None])


def test_unknown_cannot_name_a_type():
    with pytest.raises(DefectTypeError, match="cannot name a defect type"):
        DefectTypes().add(UNKNOWN, np.eye(2, dtype=np.float32), ["a", "b"])


def test_removing_a_missing_type_says_which_exist(detector):
    with pytest.raises(
        DefectTypeError, match=r"no defect type 'dent'; registered: \['spot', 'scratch'\]"
    ):
        detector.remove_defect_type("dent")


# Matching and calibration on hand-made embeddings


def unit(*values: float) -> np.ndarray:
    vector = np.array(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def clustered_types(rule: str = "prototype") -> DefectTypes:
    """Types "a" near the x axis and "b" near the y axis, three examples each."""
    types = DefectTypes(rule=rule)
    types.add("a", np.stack([unit(1, 0.1, 0), unit(1, -0.1, 0), unit(1, 0, 0.1)]), list("123"))
    types.add("b", np.stack([unit(0.1, 1, 0), unit(-0.1, 1, 0), unit(0, 1, 0.1)]), list("456"))
    return types


@pytest.mark.parametrize("rule", ["prototype", "example", "both"])
def test_each_rule_picks_the_closer_type(rule):
    (name_a, _), (name_b, _), (name_c, similarity) = clustered_types(rule).match(
        np.stack([unit(1, 0.05, 0), unit(0.05, 1, 0), unit(0, 0, 1)])
    )
    assert (name_a, name_b, name_c) == ("a", "b", UNKNOWN)
    assert similarity < clustered_types(rule).threshold


def test_the_nearest_example_rule_takes_the_best_example():
    types = clustered_types("example")
    query = unit(1, -0.1, 0)[None]
    assert types.similarities(query)[0, 0] == pytest.approx(1.0)


def test_the_calibrated_threshold_sits_below_the_held_out_similarities():
    types = clustered_types()
    held_out = types.held_out_similarities()
    assert len(held_out) == 6
    assert types.calibrated_threshold() < held_out.min()


def test_single_examples_give_no_threshold_and_always_a_type():
    types = DefectTypes()
    types.add("a", unit(1, 0, 0)[None], ["1"])
    types.add("b", unit(0, 1, 0)[None], ["2"])
    assert types.threshold is None
    assert types.match(unit(0, 0.1, 1)[None])[0][0] == "b"


# Region embeddings


def test_regions_are_embedded_at_stride_16_or_the_nearest_level():
    strides = {"s4": 4, "s8": 8, "s16": 16, "s32": 32}
    assert region_level(SimpleNamespace(default_levels=("s8",), strides=strides)) == "s16"
    vit = SimpleNamespace(default_levels=("last",), strides={"block6": 14, "last": 14})
    assert region_level(vit) == "last"


def test_a_region_embeds_as_the_features_of_the_patches_it_covers():
    features = torch.zeros(2, 4, 4)
    features[0, 1, 2] = 1.0  # patch at row 1, column 2: pixels 8..15 x 16..23
    features[1] = 1.0
    region = np.zeros((32, 32), bool)
    region[9:14, 17:22] = True
    embedding = region_embedding(features, (32.0, 32.0), np.ones((32, 32)), region)
    np.testing.assert_allclose(embedding, unit(1, 1), atol=1e-6)


def test_anomaly_scores_weight_the_patches():
    features = torch.zeros(2, 1, 2)
    features[0, 0, 0], features[1, 0, 1] = 1.0, 1.0
    scores = np.zeros((8, 16))
    scores[:, :8], scores[:, 8:] = 3.0, 1.0
    embedding = region_embedding(features, (8.0, 16.0), scores, np.ones((8, 16), bool))
    np.testing.assert_allclose(embedding, unit(3, 1), atol=1e-6)


def test_pixels_beyond_the_covered_extent_count_toward_the_edge_patch():
    features = torch.zeros(2, 2, 2)
    features[0, 1, 1], features[1, 0, 0] = 1.0, 1.0
    region = np.zeros((20, 20), bool)
    region[18:, 18:] = True  # outside the 16 x 16 pixels the features cover
    embedding = region_embedding(features, (16.0, 16.0), np.ones((20, 20)), region)
    np.testing.assert_allclose(embedding, unit(1, 0), atol=1e-6)
