"""The contract every trained method keeps (methods.trained): held-out scores from networks
that never saw the image, a fixed seed gives the same model, progress bars, saved models score
exactly as before, configurations survive JSON."""

import json

import numpy as np
import pytest
from images import texture, with_defect

from anomalens import Detector
from anomalens.methods import create_method, trained

TINY = {
    "feature_autoencoder": {"resolution": 64, "steps": 20, "hidden": 32},
    "fastflow": {"resolution": 64, "steps": 20, "flow_steps": 2},
    "stfpm": {"resolution": 64, "steps": 5},
    "efficientad": {"resolution": 64, "steps": 5, "width": 8, "latent": 8},
    "fanogan": {"resolution": 16, "gan_steps": 3, "encoder_steps": 3, "width": 8},
}
"""Settings that train in about a second: enough to check the contract, not to detect."""


@pytest.mark.parametrize("name", TINY)
def test_each_held_out_score_comes_from_a_network_that_never_saw_that_image(name, monkeypatch):
    seen = []
    original = trained.subset

    def recording_subset(inputs, indices):
        seen.append(list(indices))
        return original(inputs, indices)

    monkeypatch.setattr(trained, "subset", recording_subset)
    method = create_method(name, **TINY[name])
    images = [texture(seed) for seed in range(5)]
    held_out = method.fit_with_holdout(images)
    assert [1, 3] in seen and [0, 2, 4] in seen  # fold 0 trains on the odd images, and so on
    assert len(method.networks) == 2 and len(held_out) == 5
    monkeypatch.setattr(trained, "subset", original)
    for index in (0, 1):  # image 0 was held out of network 0, image 1 of network 1
        own = method._scores([method.networks[index]], method.inputs([images[index]]))
        assert np.allclose(own[0][0], held_out[index].grid, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", TINY)
def test_the_seed_makes_training_reproducible(name):
    images, probe = [texture(seed) for seed in range(3)], [with_defect(texture(9))]
    grids = []
    for seed in (0, 0, 1):
        method = create_method(name, **TINY[name], seed=seed)
        method.fit(images)
        grids.append(method.score(probe)[0].grid)
    assert np.array_equal(grids[0], grids[1])
    assert not np.array_equal(grids[0], grids[2])


@pytest.mark.parametrize("name", TINY)
def test_training_shows_a_progress_bar(name, capsys):
    create_method(name, **TINY[name]).fit([texture(0)], progress=True)
    assert f"{name} 1" in capsys.readouterr().err


@pytest.mark.parametrize("name", TINY)
def test_a_saved_detector_scores_exactly_as_before(name, tmp_path):
    detector = Detector(method=name, **TINY[name])
    detector.fit([texture(seed) for seed in range(8)])
    probe = [texture(30), with_defect(texture(31))]
    before = detector.predict(probe)
    after = Detector.load(detector.save(tmp_path / "model")).predict(probe)
    assert min(detector.held_out_scores) > 0  # the log-normal thresholds need positive scores
    for old, new in zip(before, after, strict=True):
        assert old.score == new.score and np.array_equal(old.anomaly_map, new.anomaly_map)
        assert new.anomaly_map.shape == probe[0].shape[:2]


@pytest.mark.parametrize("name", TINY)
def test_the_configuration_round_trips_through_json(name):
    detector = Detector(method=name, seed=3, **TINY[name])
    config = json.loads(json.dumps(detector.config()))
    assert Detector.from_config(config).config() == detector.config()


@pytest.mark.parametrize("name", TINY)
def test_an_unfitted_method_says_so(name):
    with pytest.raises(RuntimeError, match="not fitted"):
        create_method(name, **TINY[name]).score([texture(0)])
