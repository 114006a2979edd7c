"""The ensemble method: per-member normalisation, combination, persistence and configuration."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from images import texture, with_defect

from anomalens import Detector
from anomalens.errors import ConfigError
from anomalens.methods.ensemble import Ensemble

FAST = {"resolution": 64, "rotation": False, "masking": False}
"""AnomalyDINO options that keep a member quick on the small test images."""


def held_out_and_member_logs(
    combine: str, normalization: str = "z"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log held-out image scores and map maxima of an AnomalyDINO + PaDiM ensemble on good
    textures, and the log held-out image scores of fresh copies of its members (members, n)."""
    members = [FAST, {"method": "padim", "resolution": 64}]
    ensemble = Ensemble(members=members, combine=combine, normalization=normalization)
    images = [texture(seed) for seed in range(8)]
    held_out = ensemble.fit_with_holdout(images)
    members = [
        [s.image_score for s in type(member)(**member.config()).fit_with_holdout(images)]
        for member in ensemble.members
    ]
    combined = np.log([[s.image_score for s in held_out], [s.grid.max() for s in held_out]])
    return combined[0], combined[1], np.log(members)


def standardised(logs: np.ndarray) -> np.ndarray:
    return (logs - logs.mean(axis=1, keepdims=True)) / logs.std(axis=1, ddof=1, keepdims=True)


def test_members_of_very_different_scales_weigh_alike_and_good_images_score_near_one():
    combined, map_maxima, members = held_out_and_member_logs("mean")
    assert members[1].mean() > members[0].mean() + np.log(100)  # Mahalanobis against cosine
    np.testing.assert_allclose(combined, standardised(members).mean(axis=0), atol=1e-9)
    assert abs(combined.mean()) < 1e-9 and combined.std() < 1  # geometric mean 1
    assert abs(map_maxima.mean()) < 0.1
    correlations = [np.corrcoef(combined, logs)[0, 1] for logs in members]
    assert abs(correlations[0] - correlations[1]) < 0.01, correlations  # neither dominates


def test_max_takes_the_largest_standardised_member_score():
    combined, _, members = held_out_and_member_logs("max")
    np.testing.assert_allclose(combined, standardised(members).max(axis=0), atol=1e-9)


def test_ratios_divide_each_member_by_its_held_out_geometric_mean():
    combined, _, members = held_out_and_member_logs("max", "ratio")
    centred = members - members.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(combined, centred.max(axis=0), atol=1e-9)
    assert not np.allclose(combined, standardised(members).max(axis=0))


@pytest.mark.parametrize(
    ("map_combine", "expected"),
    [
        ("geomean", lambda a, b: np.sqrt(a * b)),
        ("max", np.maximum),
        ("mean", lambda a, b: (a + b) / 2),
        (None, lambda a, b: (a + b) / 2),  # as `combine` ("mean" here), as saved models did
    ],
)
def test_grids_of_different_sizes_are_combined_on_the_finest(map_combine, expected):
    coarse, fine = FAST, {**FAST, "levels": ["s8", "s16"]}
    ensemble = Ensemble(members=[coarse, fine], combine="mean", map_combine=map_combine)
    ensemble.fit([texture(seed) for seed in range(3)])
    image = with_defect(texture(10))
    combined = ensemble.score([image])[0]
    parts = [member.score([image])[0] for member in ensemble.members]
    assert parts[0].grid.shape == (4, 6) and parts[1].grid.shape == (8, 12)
    assert combined.grid.shape == (8, 12) and combined.extent == parts[1].extent
    upsampled = F.interpolate(
        torch.from_numpy(parts[0].grid)[None, None], size=(8, 12), mode="bilinear"
    )[0, 0].numpy()
    normalised = upsampled / ensemble.map_scale[0], parts[1].grid / ensemble.map_scale[1]
    np.testing.assert_allclose(combined.grid, expected(*normalised), rtol=1e-5)
    assert combined.image_score == pytest.approx(
        np.exp(np.mean(np.log([p.image_score for p in parts]) - ensemble.image_log_mean))
    )  # the image score follows `combine` whatever the map does


def test_a_model_saved_before_map_combine_and_hysteresis_keeps_its_maps_and_masks(tmp_path):
    detector = Detector(method="ensemble", members=[FAST, {**FAST, "levels": ["s8"]}])
    detector.fit([texture(seed) for seed in range(3)])
    assert (detector.method.map_combine, detector.hysteresis) == ("geomean", 0.8)
    folder = detector.save(tmp_path / "model")
    document = json.loads((folder / "detector.json").read_text())
    del document["config"]["method_params"]["map_combine"], document["config"]["hysteresis"]
    (folder / "detector.json").write_text(json.dumps(document))
    loaded = Detector.load(folder)
    assert loaded.method.map_combine is None  # combined as "max", as before
    assert loaded.hysteresis == 1.0  # the plain threshold, as before


def test_ensemble_finds_a_synthetic_defect():
    members = [FAST, {**FAST, "backbone": "efficientnet_lite2"}]
    detector = Detector(method="ensemble", members=members)
    detector.fit([texture(seed) for seed in range(8)])
    goods = detector.predict([texture(seed) for seed in range(50, 54)])
    defective = detector.predict([with_defect(texture(60))])[0]
    assert defective.is_anomalous
    assert defective.score > 1.5 * max(result.score for result in goods)
    row, col = np.unravel_index(np.argmax(defective.anomaly_map), defective.anomaly_map.shape)
    assert 24 <= row < 38 and 40 <= col < 54  # with_defect's square


def test_save_and_load_give_identical_results(tmp_path):
    members = [FAST, {"method": "patchcore", "resolution": 64}]
    detector = Detector(method="ensemble", members=members, combine="max", seed=2)
    detector.fit([texture(0)])  # one reference: statistics from its quadrants
    assert np.all(detector.method.image_log_std > 0) and np.all(detector.method.map_scale > 0)
    loaded = Detector.load(detector.save(tmp_path / "model"))
    assert loaded.config() == detector.config()
    assert loaded.threshold_dicts() == detector.threshold_dicts()
    images = [texture(5), with_defect(texture(6))]
    for before, after in zip(detector.predict(images), loaded.predict(images), strict=True):
        assert before.score == after.score
        assert np.array_equal(before.anomaly_map, after.anomaly_map)


def test_config_rebuilds_the_ensemble_and_passes_the_seed():
    ensemble = Ensemble(
        members=[{"method": "patchcore", "resolution": 64, "seed": 9}, FAST], combine="max", seed=3
    )
    config = json.loads(json.dumps(ensemble.config()))
    assert config["members"][1]["levels"] == ["s16", "s32_early"]  # the member's full config
    assert type(ensemble)(**config).config() == ensemble.config()
    assert ensemble.members[0].seed == 3
    default = Ensemble().config()["members"]
    assert [(m["resolution"], m["levels"]) for m in default] == [
        (320, ["s16", "s32_early"]),
        ("native", ["s8"]),
    ]


def test_a_backbone_given_to_the_ensemble_goes_to_every_member():
    ensemble = Ensemble(members=[FAST, FAST], backbone="efficientnet_lite2")
    assert [m.config()["backbone"] for m in ensemble.members] == ["efficientnet_lite2"] * 2


def test_a_resolution_given_to_the_ensemble_leaves_native_members_native():
    ensemble = Ensemble(resolution=128)
    assert [m.config()["resolution"] for m in ensemble.members] == [128, "native"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"members": [{"resolution": 64, "bogus": 1}]}, "no option bogus"),
        ({"members": [{"method": "nope"}]}, "unknown method"),
        ({"members": []}, "non-empty list"),
        ({"members": {"backbone": "efficientnet_lite0"}}, "non-empty list"),
        ({"members": ["anomalydino"]}, "dict of method options"),
        ({"combine": "median"}, "combine must be"),
        ({"map_combine": "median"}, "map_combine must be"),
        ({"normalization": "rank"}, "normalization must be"),
        ({"levels": ["s8"]}, "no option levels"),
    ],
)
def test_bad_options_give_config_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        Detector(method="ensemble", **options)
