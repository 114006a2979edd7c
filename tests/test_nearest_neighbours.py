"""Nearest-neighbour distances: exact search is brute force, the approximate index stays close."""

import numpy as np
import pytest

from anomalens.memory import knn
from anomalens.memory.knn import (
    EXACT_SEARCH_LIMIT,
    PROBES,
    NearestNeighbours,
    distinct_rows,
    probe_count,
)


def clustered(count: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    """Points around 50 centres, like patch features of one product."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(50, dim))
    return (centres[rng.integers(0, 50, count)] + 0.3 * rng.normal(size=(count, dim))).astype(
        np.float32
    )


def brute_force(bank: np.ndarray, queries: np.ndarray, metric: str) -> np.ndarray:
    if metric == "cosine":
        bank = bank / np.linalg.norm(bank, axis=1, keepdims=True)
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        return (1.0 - queries @ bank.T).min(axis=1)
    return np.sqrt(((queries[:, None] - bank[None]) ** 2).sum(-1)).min(axis=1)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_exact_search_equals_brute_force(metric):
    bank, queries = clustered(500), clustered(40, seed=1)
    distances, indices = NearestNeighbours(metric).fit(bank).distances(queries)
    np.testing.assert_allclose(distances[:, 0], brute_force(bank, queries, metric), atol=1e-4)
    assert indices.shape == (40, 1)


def test_large_banks_get_an_approximate_index_close_to_exact():
    bank, queries = clustered(EXACT_SEARCH_LIMIT + 1000), clustered(200, seed=1)
    approximate = NearestNeighbours("cosine").fit(bank)
    exact = NearestNeighbours("cosine", approximate=False).fit(bank)
    assert approximate.is_approximate and not exact.is_approximate
    found, rows = approximate.distances(queries)
    truth = exact.distances(queries)[0][:, 0]
    assert np.all(found[:, 0] >= truth - 1e-5)  # an index can miss the nearest row, never beat it
    assert np.mean(found[:, 0] / truth - 1) < 0.02  # on average within 2% of the nearest
    unit = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    to_found_rows = 1 - np.sum(unit[rows[:, 0]] * queries, axis=1) / np.linalg.norm(queries, axis=1)
    np.testing.assert_allclose(found[:, 0], to_found_rows, atol=1e-5)  # exact, not compressed


def test_fewer_lists_are_visited_in_smaller_banks_up_to_a_limit():
    visited = [probe_count(lists) for lists in (1, 30, 114, 400, 1046, 5000)]
    assert visited == sorted(visited) and visited[0] == 1
    assert visited[2] < PROBES == visited[-2] == visited[-1]


def test_a_tiny_bank_can_be_forced_approximate():
    bank = clustered(9)
    distances, _ = NearestNeighbours("cosine", approximate=True).fit(bank).distances(bank)
    np.testing.assert_allclose(distances[:, 0], 0.0, atol=1e-5)


@pytest.mark.parametrize("approximate", [False, True])
def test_excluding_an_owner_never_returns_its_rows(approximate):
    bank = clustered(2000)
    owners = np.repeat(np.arange(4), 500)
    neighbours = NearestNeighbours("cosine", approximate).fit(bank, owners)
    distances, indices = neighbours.distances_excluding(bank[:500], owner=0)
    assert np.all(owners[indices[:, 0]] != 0)
    assert np.all(distances[:, 0] > 1e-6)  # its own rows (distance 0) were excluded
    others = brute_force(bank[500:], bank[:500], "cosine")
    assert np.all(distances[:, 0] >= others - 1e-5)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_an_image_unlike_the_others_is_still_matched_to_their_rows(metric):
    # Owner 0 fills every list its queries probe, so the filtered index finds nothing there.
    rng = np.random.default_rng(0)
    apart, rest = rng.normal(size=16) * 10, clustered(3000, seed=2)
    own = (apart + 0.1 * rng.normal(size=(3000, 16))).astype(np.float32)
    bank, owners = np.concatenate([own, rest]), np.repeat([0, 1], 3000)
    neighbours = NearestNeighbours(metric, approximate=True).fit(bank, owners)
    distances, indices = neighbours.distances_excluding(own[:50], owner=0)
    assert np.all(owners[indices[:, 0]] == 1)
    np.testing.assert_allclose(distances[:, 0], brute_force(rest, own[:50], metric), rtol=1e-4)


@pytest.mark.parametrize("approximate", [False, True])
def test_the_k_nearest_rows_of_other_images_come_nearest_first(approximate):
    bank, owners = clustered(3000), np.repeat(np.arange(3), 1000)
    neighbours = NearestNeighbours("l2", approximate).fit(bank, owners)
    distances, indices = neighbours.distances_excluding(bank[:20], owner=0, k=3)
    assert distances.shape == indices.shape == (20, 3)
    assert np.all(owners[indices] != 0) and np.all(np.diff(distances, axis=1) >= 0)
    truth = np.sort(np.linalg.norm(bank[:20, None] - bank[None, 1000:], axis=-1), axis=1)[:, :3]
    if approximate:
        assert np.all(distances >= truth - 1e-4)  # never nearer than the true neighbours
    else:
        np.testing.assert_allclose(distances, truth, rtol=1e-4)


@pytest.mark.parametrize("approximate", [False, True])
def test_asking_for_more_neighbours_than_rows_gives_every_row_and_no_padding(approximate):
    bank, owners = clustered(9), np.array([0] * 5 + [1] * 4)
    neighbours = NearestNeighbours("l2", approximate).fit(bank, owners)
    assert np.array_equal(np.sort(neighbours.distances(bank[:2], k=20)[1], axis=1), [range(9)] * 2)
    _, rows = neighbours.distances_excluding(bank[:2], owner=0, k=20)
    assert np.array_equal(np.sort(rows, axis=1), [range(5, 9)] * 2)


def test_excluding_the_only_owner_is_an_error():
    neighbours = NearestNeighbours().fit(clustered(10))
    with pytest.raises(ValueError, match="no patches of other images"):
        neighbours.distances_excluding(clustered(3), owner=0)


def test_restoring_with_saved_training_rebuilds_the_same_index_without_training():
    bank, queries = clustered(EXACT_SEARCH_LIMIT + 1000), clustered(200, seed=1)
    fitted = NearestNeighbours("cosine").fit(bank)
    saved = (fitted.bank, fitted.owners, fitted.centroids, fitted.codebook)
    restored = NearestNeighbours("cosine").restore(*saved)
    older_file = NearestNeighbours("cosine").restore(*saved[:3])  # codes retrained, same sample
    for other in (restored, older_file):
        for a, b in zip(fitted.distances(queries), other.distances(queries), strict=True):
            np.testing.assert_array_equal(a, b)
    trained_elsewhere = NearestNeighbours("cosine").fit(clustered(len(bank), seed=2))
    given = NearestNeighbours("cosine").restore(
        fitted.bank, fitted.owners, trained_elsewhere.centroids, trained_elsewhere.codebook
    )
    np.testing.assert_array_equal(given.centroids, trained_elsewhere.centroids)  # not retrained
    np.testing.assert_array_equal(given.codebook, trained_elsewhere.codebook)


def test_exact_search_has_no_training_and_mismatched_training_is_refused():
    exact = NearestNeighbours("cosine").fit(clustered(100))
    assert exact.centroids.shape == (0, 16)
    assert exact.codebook.shape == (0,)
    bank = clustered(EXACT_SEARCH_LIMIT + 1000)
    with pytest.raises(ValueError, match="do not fit a bank of 16"):
        NearestNeighbours("cosine").restore(bank, np.zeros(len(bank)), np.zeros((10, 8)))
    centroids = NearestNeighbours("cosine").fit(bank).centroids
    with pytest.raises(ValueError, match="does not fit a bank of 16"):
        NearestNeighbours("cosine").restore(bank, np.zeros(len(bank)), centroids, np.zeros(8))


def test_saved_lists_restore_the_fitted_index_bit_for_bit():
    bank, queries = clustered(EXACT_SEARCH_LIMIT + 1000), clustered(200, seed=1)
    owners = np.repeat(np.arange(3), 1000)
    fitted = NearestNeighbours("cosine").fit(bank, owners)
    lists = fitted.lists
    assert lists.dtype == np.uint8 and lists.size
    restored = NearestNeighbours("cosine").restore(fitted.bank.copy(), owners, lists=lists)
    for a, b in zip(fitted.distances(queries, 3), restored.distances(queries, 3), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(
        fitted.distances_excluding(queries, 1),
        restored.distances_excluding(queries, 1),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(restored.codebook, fitted.codebook)
    assert NearestNeighbours("cosine").fit(clustered(100)).lists.size == 0  # exact: no lists


def test_lists_of_another_bank_or_damaged_lists_are_refused():
    bank = clustered(EXACT_SEARCH_LIMIT + 1000)
    lists = NearestNeighbours("cosine").fit(bank).lists
    with pytest.raises(ValueError, match="do not index this bank"):
        NearestNeighbours("cosine").restore(bank[:-1], np.zeros(len(bank) - 1), lists=lists)
    with pytest.raises(ValueError, match="do not index this bank"):
        NearestNeighbours("l2").restore(bank, np.zeros(len(bank)), lists=lists)
    with pytest.raises(ValueError, match="unreadable inverted lists"):
        NearestNeighbours("cosine").restore(bank, np.zeros(len(bank)), lists=lists[:100])


@pytest.mark.parametrize("approximate", [False, True])
def test_the_bank_is_held_once_by_the_index_and_read_only(approximate):
    bank = clustered(EXACT_SEARCH_LIMIT + 1000)
    neighbours = NearestNeighbours("l2", approximate).fit(bank)
    assert not neighbours.bank.flags.owndata and not neighbours.bank.flags.writeable
    np.testing.assert_array_equal(neighbours.bank, bank)
    kept = neighbours.bank
    neighbours.fit(clustered(100))  # refitting frees nothing the old view still reads
    np.testing.assert_array_equal(kept, bank)


def scattered(count: int, dim: int = 64, seed: int = 0) -> np.ndarray:
    """Points without clusters, where an inverted-file index often misses the nearest row."""
    return np.random.default_rng(seed).normal(size=(count, dim)).astype(np.float32)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_the_queries_farthest_from_the_bank_get_exact_distances(metric):
    bank, queries, top = scattered(EXACT_SEARCH_LIMIT + 3000), scattered(300, seed=1), 10
    index = NearestNeighbours(metric).fit(bank)
    truth = np.sort(brute_force(bank, queries, metric))[-top:]
    plain = index.distances(queries)[0][:, 0]
    assert not np.allclose(np.sort(plain)[-top:], truth, atol=1e-4)  # the index alone misses
    found, rows = index.distances(queries, exact_top=top)
    np.testing.assert_allclose(np.sort(found[:, 0])[-top:], truth, atol=1e-4)
    assert np.all(found[:, 0] <= plain + 1e-6)  # re-searching only ever finds nearer rows
    assert np.all(rows >= 0)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_held_out_queries_farthest_from_the_other_images_get_exact_distances(metric):
    bank, queries, top = scattered(EXACT_SEARCH_LIMIT + 3000), scattered(300, seed=1), 10
    owners = np.arange(len(bank)) % 4
    index = NearestNeighbours(metric).fit(bank, owners)
    others = bank[owners != 2]
    truth = np.sort(brute_force(others, queries, metric))[-top:]
    found, rows = index.distances_excluding(queries, owner=2, exact_top=top)
    np.testing.assert_allclose(np.sort(found[:, 0])[-top:], truth, atol=1e-4)
    assert not np.any(index.owners[rows] == 2)


def test_more_probes_and_candidates_find_the_exact_nearest_row_more_often_and_are_restored():
    bank, queries = scattered(EXACT_SEARCH_LIMIT + 6000), scattered(300, seed=1)
    truth = brute_force(bank, queries, "cosine")
    default = NearestNeighbours("cosine").fit(bank)
    wider = NearestNeighbours("cosine", probes=96, refine=96).fit(bank)
    hits = [np.mean(np.abs(i.distances(queries)[0][:, 0] - truth) < 1e-5) for i in (default, wider)]
    assert hits[0] < hits[1]
    restored = NearestNeighbours("cosine", probes=96, refine=96)
    restored.restore(wider.saved_bank, wider.owners, lists=wider.lists)
    np.testing.assert_array_equal(restored.distances(queries)[0], wider.distances(queries)[0])


def test_exact_top_can_be_restricted_to_the_queries_that_count():
    bank, queries, top = scattered(EXACT_SEARCH_LIMIT + 3000), scattered(300, seed=1), 10
    among = np.arange(len(queries)) % 3 == 0  # e.g. an image's foreground patches
    index = NearestNeighbours("cosine").fit(bank)
    truth = np.sort(brute_force(bank, queries[among], "cosine"))[-top:]
    found = index.distances(queries, exact_top=top, among=among)[0][:, 0]
    np.testing.assert_allclose(np.sort(found[among])[-top:], truth, atol=1e-4)
    np.testing.assert_array_equal(found[~among], index.distances(queries)[0][~among, 0])


def test_repeated_queries_are_searched_once_and_answered_alike():
    bank, distinct = clustered(EXACT_SEARCH_LIMIT + 1000), clustered(40, seed=1)
    queries = distinct[np.random.default_rng(2).integers(0, 40, 300)]
    index = NearestNeighbours("cosine").fit(bank)
    searched = []
    search = index._index.search

    def recorded(rows, k, params=None):
        searched.append(len(rows))
        return search(rows, k, params=params)

    index._index.search = recorded
    found, rows = index.distances(queries, k=3)
    assert searched == [len(np.unique(queries, axis=0))]
    index._index.search = search
    for query, distances, nearest in zip(queries, found, rows, strict=True):
        alone = index.distances(query[None], k=3)
        np.testing.assert_array_equal(alone[0][0], distances)
        np.testing.assert_array_equal(alone[1][0], nearest)


def test_a_half_precision_bank_is_saved_in_half_the_bytes_and_restored_bit_for_bit():
    bank, queries = clustered(EXACT_SEARCH_LIMIT + 1000), clustered(50, seed=1)
    neighbours = NearestNeighbours("cosine", half_precision=True).fit(bank)
    saved = neighbours.saved_bank
    assert saved.dtype == np.float16
    restored = NearestNeighbours("cosine").restore(saved, neighbours.owners, lists=neighbours.lists)
    assert restored.half_precision
    np.testing.assert_array_equal(restored.saved_bank, saved)
    np.testing.assert_array_equal(restored.bank, neighbours.bank)
    np.testing.assert_array_equal(restored.distances(queries)[0], neighbours.distances(queries)[0])
    full = NearestNeighbours("cosine", approximate=False).fit(bank)
    np.testing.assert_allclose(
        neighbours.distances(queries, exact_top=50)[0], full.distances(queries)[0], atol=1e-3
    )


def test_image_numbers_are_held_in_4_bytes_a_row_and_older_8_byte_ones_load():
    owners = np.repeat(np.arange(3), 40)
    fitted = NearestNeighbours("l2").fit(clustered(120), owners)
    assert fitted.owners.dtype == np.int32
    older = NearestNeighbours("l2").restore(fitted.saved_bank, owners.astype(np.int64))
    assert older.owners.dtype == np.int32
    np.testing.assert_array_equal(
        older.distances_excluding(clustered(5), 1)[1],
        fitted.distances_excluding(clustered(5), 1)[1],
    )


def test_a_float32_bank_restores_as_float32():
    neighbours = NearestNeighbours("l2").restore(clustered(100), np.zeros(100, dtype=np.int64))
    assert not neighbours.half_precision and neighbours.saved_bank.dtype == np.float32


def test_repeated_rows_of_one_image_are_stored_once_and_change_no_distance():
    rows = clustered(600)
    bank = np.concatenate([rows, rows[:200], rows[:100]])  # image 0 repeats rows; image 1 copies
    owners = np.array([0] * 800 + [1] * 100)
    index = NearestNeighbours("cosine").fit(bank, owners)
    assert len(index.bank) == 700  # image 0's 600 distinct rows and image 1's 100
    queries = clustered(50, seed=1)
    np.testing.assert_allclose(
        index.distances(queries)[0][:, 0], brute_force(bank, queries, "cosine"), atol=1e-5
    )
    held_out = index.distances_excluding(rows[:100], owner=1)[0][:, 0]
    np.testing.assert_allclose(held_out, 0.0, atol=1e-5)  # image 0 still holds those rows


def test_rows_whose_hashes_collide_are_both_kept(monkeypatch):
    class Ones:  # every multiplier becomes 1: the hash is the sum of a row's bits
        def integers(self, low, high, size, dtype):
            return np.zeros(size, dtype=dtype)

    monkeypatch.setattr(knn.np.random, "default_rng", lambda seed: Ones())
    bank = np.array([[1.0, 2.0], [2.0, 1.0], [1.0, 2.0]], dtype=np.float32)  # same sums of bits
    assert distinct_rows(bank, np.zeros(3, dtype=np.int64)).tolist() == [0, 1]
