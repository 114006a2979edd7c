"""Feature maps shared between the runs of one evaluation."""

import numpy as np
import pytest

from anomalens.evaluation.protocol import standalone_seconds
from anomalens.features import FeatureCache, FeatureExtractor, shared_feature_cache


@pytest.fixture(scope="module")
def extractor():
    return FeatureExtractor("efficientnet_lite0", resolution=64)


def counting(extractor, monkeypatch) -> list[int]:
    """Record the batch size of every backbone forward pass."""
    calls: list[int] = []
    forward = extractor.model.forward

    def counted(batch, levels):
        calls.append(len(batch))
        return forward(batch, levels)

    monkeypatch.setattr(extractor.model, "forward", counted)
    return calls


def test_without_a_cache_every_call_runs_the_backbone(extractor, monkeypatch):
    calls = counting(extractor, monkeypatch)
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    extractor.extract([image])
    extractor.extract([image])
    assert calls == [1, 1]


def test_inside_a_cache_the_same_pixels_pass_the_backbone_once(extractor, monkeypatch):
    calls = counting(extractor, monkeypatch)
    first, second = np.random.default_rng(1).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    with shared_feature_cache() as cache:
        before = extractor.extract([first])[0]
        again = extractor.extract([first.copy(), second])
    assert calls == [1, 1]
    assert again[0] is before
    assert cache.saved_seconds > 0
    assert len(cache.entries) == 2


def test_other_settings_do_not_share_cached_maps(extractor):
    image = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    finer = FeatureExtractor("efficientnet_lite0", resolution=96)
    with shared_feature_cache() as cache:
        coarse_maps = extractor.extract([image])[0]
        fine_maps = finer.extract([image])[0]
    assert cache.saved_seconds == 0
    assert coarse_maps.levels["s16"].shape != fine_maps.levels["s16"].shape


def test_run_timings_add_back_the_backbone_time_that_cache_hits_saved():
    cache = FeatureCache()

    def hit():
        cache.saved_seconds += 5.0
        return "result"

    result, seconds = standalone_seconds(cache, hit)
    assert result == "result"
    assert 5.0 <= seconds < 6.0
