"""Nearest-neighbour distances from query patches to a bank of normal patches (faiss)."""

import faiss
import numpy as np

EXACT_SEARCH_LIMIT = 2_000
"""Banks with more entries get an inverted-file (approximate) index. On MTD at 320 px, exact
search over one rotated reference (4,480 rows) took a quarter of the backbone's forward pass and
over 16 references (68,480 rows) four times it (benchmarks/speed.py)."""
LISTS_PER_SQRT_ROW = 4
"""The approximate index splits N bank rows into 4·sqrt(N) inverted lists."""
PROBES = 24
"""Inverted lists visited per query by the approximate index of a large bank (about 1,000 lists
and more: 16 references at 320 px), unless told otherwise."""
PROBES_PER_SQRT_LIST = 0.75
"""Smaller banks visit 0.75·sqrt(lists) lists, fewer than PROBES: their lists are fewer, so each
holds a larger share of the bank. One rotated reference at 320 px (114 lists) visits 8 and finds
the exact nearest patch for 97.5% of queries (99.7% with 24), in 6.0 instead of 8.8 ms per image
(benchmarks/index_settings.py --shots 1)."""
REFINE_FACTOR = 24
"""Candidates per query, found with the compressed codes, whose exact distances are computed.
With PROBES, the 16-reference bank was searched in 21.5 ms per image at 320 px and 37 ms at 448
px, against 31 and 96 ms for lists of full vectors with 16 probes, finding the exact nearest
patch more often (96% against 93% at 320 px) and changing the image score by 0.5% against 0.8%
(benchmarks/index_settings.py)."""
TRAINING_PER_LIST = 39
"""Bank rows per inverted list to train the index's k-means (faiss's minimum): smaller banks
get fewer lists."""
CODE_BITS = 4
"""Bits of each pair of dimensions' code (16 centres), the width faiss's fast scan works on
(single dimensions when the dimension count is odd)."""
CODE_TRAINING_ROWS = 2**CODE_BITS * TRAINING_PER_LIST
"""Rows that train the compressed codes' centres; smaller banks repeat rows."""
FIRST_EXACT_QUERIES = 16
"""Queries re-searched exactly in the first round of `NearestNeighbours._exact_top` at the least.
Every round reads the whole bank, so a first round of max(4·count, 16) queries, one round on
every dev dataset's test images, costs less than starting smaller."""
EXACT_CHUNK_VALUES = 2**24
"""Query-row products computed at a time by exact re-search (64 MB of float32)."""
DEDUPLICATION_CHUNK = 2**16
"""Bank rows hashed or compared at a time when repeated rows are dropped."""


def list_count(rows: int) -> int:
    """Inverted lists of the approximate index for a bank of `rows` rows."""
    return max(1, min(int(LISTS_PER_SQRT_ROW * np.sqrt(rows)), rows // TRAINING_PER_LIST))


def probe_count(lists: int, probes: int | None = None) -> int:
    """Inverted lists the approximate index visits per query when it has `lists` lists: `probes`
    of them, or by default PROBES_PER_SQRT_LIST·sqrt(lists) and at most PROBES."""
    if probes is not None:
        return max(1, min(probes, lists))
    return max(1, min(round(PROBES_PER_SQRT_LIST * np.sqrt(lists)), PROBES))


def flat_index(dim: int, metric: int) -> faiss.Index:
    """An exact index for faiss `metric` (METRIC_INNER_PRODUCT or METRIC_L2)."""
    return (
        faiss.IndexFlatIP(dim) if metric == faiss.METRIC_INNER_PRODUCT else faiss.IndexFlatL2(dim)
    )


def inverted_file_index(
    bank: np.ndarray,
    lists: int,
    metric: int,
    centroids: np.ndarray | None = None,
    codebook: np.ndarray | None = None,
    probes: int | None = None,
    refine: int = REFINE_FACTOR,
) -> faiss.IndexRefine:
    """An approximate index over `bank` (N, D) float32 with `lists` inverted lists and faiss
    `metric`, searching probe_count(lists, probes) lists and re-ranking `refine` candidates a
    query exactly.

    The lists hold 4-bit product-quantised codes of pairs of dimensions (of single dimensions
    when D is odd), scanned with faiss's SIMD "fast scan"; the candidates they yield are
    re-ranked with the full vectors, so returned distances are exact and only the choice of
    nearest row is approximate. The k-means of the lists and the codes' centres train on a
    seeded sample of the bank, unless `centroids` (lists, D) and `codebook` (16·D,) from an
    earlier training are given; centroids alone retrain only the codes.
    """
    count, dim = bank.shape
    if centroids is not None and centroids.shape != (lists, dim):
        raise ValueError(f"centroids of shape {centroids.shape} do not fit a bank of {dim}")
    if codebook is not None and codebook.shape != (2**CODE_BITS * dim,):
        raise ValueError(f"a codebook of shape {codebook.shape} does not fit a bank of {dim}")
    quantizer = flat_index(dim, metric)
    sub_vectors = dim // 2 if dim % 2 == 0 else dim
    lists_index = faiss.IndexIVFPQFastScan(quantizer, dim, lists, sub_vectors, CODE_BITS, metric)
    lists_index.nprobe = probe_count(lists, probes)
    index = faiss.IndexRefineFlat(lists_index)
    index.k_factor = refine
    index.referenced_objects = [quantizer, lists_index]
    if centroids is not None:
        quantizer.add(np.ascontiguousarray(centroids, dtype=np.float32))  # k-means is skipped
    if centroids is not None and codebook is not None:
        faiss.copy_array_to_vector(codebook.astype(np.float32), lists_index.pq.centroids)
        lists_index.pq.sync_transposed_centroids()
        lists_index.is_trained = index.is_trained = True
    else:
        size = max(TRAINING_PER_LIST * lists, CODE_TRAINING_ROWS)
        sample = np.sort(np.random.default_rng(0).choice(count, size, replace=size > count))
        index.train(bank[sample])
    index.add(bank)
    return index


def restored_index(
    bank: np.ndarray,
    lists: np.ndarray,
    metric: int,
    probes: int | None = None,
    refine: int = REFINE_FACTOR,
) -> faiss.IndexRefine:
    """The approximate index `inverted_file_index` built over `bank` (with `probes` and
    `refine`), from its inverted lists as
    `NearestNeighbours.lists` serialised them: no row is assigned or encoded again, so loading
    takes a copy instead of a search of every row against every list (19 s at 200 references),
    and searches return bit for bit what the fitted index returned. A ValueError says when
    `lists` are not an index of this bank."""
    try:
        lists_index = faiss.deserialize_index(np.ascontiguousarray(lists, dtype=np.uint8))
    except RuntimeError as error:
        raise ValueError(f"unreadable inverted lists ({error})") from None
    count, dim = bank.shape
    valid = isinstance(lists_index, faiss.IndexIVFPQFastScan) and lists_index.metric_type == metric
    if not valid or (lists_index.ntotal, lists_index.d) != (count, dim):
        raise ValueError(f"the inverted lists do not index this bank of {count} x {dim}")
    lists_index.nprobe = probe_count(lists_index.nlist, probes)
    index = faiss.IndexRefineFlat(lists_index, faiss.swig_ptr(bank))
    index.k_factor = refine
    index.referenced_objects = [lists_index]
    return index


def first_equal_rows(rows: np.ndarray, owners: np.ndarray | None = None) -> np.ndarray:
    """(N,) index, for each row of `rows` (N, D, float16 or float32), of the first row of its
    owner (`owners` (N,); None: one owner) equal to it bit for bit: itself when none before is.

    Rows are grouped by (owner, a 64-bit multiplicative hash of their bits), computed
    DEDUPLICATION_CHUNK rows at a time, and a row is matched to its group's first row only once
    they are compared equal, so a hash collision keeps both rows apart; memory stays a few bytes
    a row beyond the chunk, however many rows."""
    count = len(rows)
    words = np.ascontiguousarray(rows).view(f"u{rows.itemsize}")
    multipliers = np.random.default_rng(0).integers(1, 2**63, words.shape[1], dtype=np.uint64) | 1
    hashes = np.empty(count, dtype=np.uint64)
    for start in range(0, count, DEDUPLICATION_CHUNK):
        chunk = words[start : start + DEDUPLICATION_CHUNK].astype(np.uint64)
        hashes[start : start + DEDUPLICATION_CHUNK] = (chunk * multipliers).sum(axis=1)
    owners = np.zeros(count, dtype=np.int64) if owners is None else owners
    keys = np.stack([np.asarray(owners, dtype=np.int64).view(np.uint64), hashes], axis=1)
    _, first, group = np.unique(
        keys.view(np.dtype((np.void, 16))).ravel(), return_index=True, return_inverse=True
    )
    representative = first[group.ravel()]
    repeated = np.flatnonzero(representative != np.arange(count))
    for start in range(0, len(repeated), DEDUPLICATION_CHUNK):
        chunk = repeated[start : start + DEDUPLICATION_CHUNK]
        collided = np.any(words[chunk] != words[representative[chunk]], axis=1)
        representative[chunk[collided]] = chunk[collided]
    return representative


def distinct_rows(bank: np.ndarray, owners: np.ndarray) -> np.ndarray:
    """Sorted indices of the rows of `bank` that are the first of their owner with their exact
    bit pattern (see `first_equal_rows`)."""
    representative = first_equal_rows(bank, owners)
    return np.flatnonzero(representative == np.arange(len(bank)))


class _IndexMemory:
    """Exposes an index's stored vectors to numpy and keeps the index alive while they are."""

    def __init__(self, index: faiss.Index, flat: faiss.IndexFlat):
        view = faiss.rev_swig_ptr(flat.get_xb(), flat.ntotal * flat.d)
        self.index = index
        self.__array_interface__ = view.__array_interface__


def stored_vectors(index: faiss.Index) -> np.ndarray:
    """(N, D) read-only view of the full vectors an exact or re-ranking index holds, so that the
    bank is not kept twice in memory."""
    flat = faiss.downcast_index(
        index.refine_index if isinstance(index, faiss.IndexRefine) else index
    )
    vectors = np.asarray(_IndexMemory(index, flat)).reshape(flat.ntotal, flat.d)
    vectors.flags.writeable = False
    return vectors


class NearestNeighbours:
    """Distances from query vectors to their nearest vectors in a bank.

    Args:
        metric: "cosine" (vectors are L2-normalised; distance = 1 - cosine similarity) or
            "l2" (Euclidean distance).
        approximate: None chooses an inverted-file index only for banks larger than
            EXACT_SEARCH_LIMIT; True or False forces the choice.
        half_precision: round the fitted rows to float16 (and normalise them again for
            "cosine"; they are searched in float32), so that `saved_bank` holds them in half
            the bytes and loses nothing.
        probes: inverted lists the approximate index visits per query; None: `probe_count`'s
            default for the bank's size.
        refine: candidates per query the approximate index re-ranks exactly.
    """

    def __init__(
        self,
        metric: str = "cosine",
        approximate: bool | None = None,
        half_precision: bool = False,
        probes: int | None = None,
        refine: int = REFINE_FACTOR,
    ):
        if metric not in ("cosine", "l2"):
            raise ValueError(f"metric must be 'cosine' or 'l2', got {metric!r}")
        self.metric = metric
        self._faiss_metric = faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2
        self.approximate = approximate
        self.half_precision = half_precision
        self.probes = probes
        self.refine = refine
        self.bank = np.empty((0, 0), dtype=np.float32)
        self.owners = np.empty(0, dtype=np.int32)
        self._index: faiss.Index | None = None
        self._bank_norms: np.ndarray | None = None
        """(N,) squared norms of the bank rows, for exact re-search with the l2 metric."""
        self._half_norms: np.ndarray | None = None
        """(N, 1) norms of the float16 rows a half-precision cosine bank was normalised by."""

    def fit(self, bank: np.ndarray, owners: np.ndarray | None = None) -> "NearestNeighbours":
        """Index `bank` (N, D); `owners` (N,) names the source image of each row (optional).

        Rows equal bit for bit to an earlier row of the same image are dropped: they change no
        distance, held out or not, and uniform regions repeat one patch thousands of times
        (DeepPCB's fine bank at 16 references: 409,600 rows, 244,549 distinct; 29% of all rows
        sat in one inverted list, which every query on blank board scanned)."""
        owners = np.zeros(len(bank), dtype=np.int64) if owners is None else np.asarray(owners)
        bank = self._prepare(bank)
        if self.half_precision:
            bank = bank.astype(np.float16)
        kept = distinct_rows(bank, owners)
        return self.restore(bank[kept], owners[kept])

    def restore(
        self,
        bank: np.ndarray,
        owners: np.ndarray,
        centroids: np.ndarray | None = None,
        codebook: np.ndarray | None = None,
        lists: np.ndarray | None = None,
    ) -> "NearestNeighbours":
        """Index a bank exactly as `self.saved_bank` held it after `fit`: float32 rows as they
        are, float16 rows at half precision from then on (normalised again for "cosine", as
        `fit` normalised them, which rounding to float16 gives back bit for bit).

        `lists`, as `self.lists` held them, restore the approximate index as it was fitted (see
        `restored_index`). Without them (models saved before lists were kept), `centroids` and
        `codebook`, as `self.centroids` and `self.codebook` held them, spare the approximate
        index its training (k-means of the lists: half a minute for a bank of 200 references;
        codes: 2.4 s for 16 references at 320 or 448 px) and give it the same lists and codes,
        but every row is assigned to its list again.
        """
        self.half_precision = bank.dtype == np.float16
        bank = np.ascontiguousarray(bank, dtype=np.float32)
        self._half_norms = None
        if self.half_precision and self.metric == "cosine":
            self._half_norms = np.maximum(np.linalg.norm(bank, axis=1, keepdims=True), 1e-12)
            bank = np.ascontiguousarray(bank / self._half_norms)
        self.owners = np.asarray(owners, dtype=np.int32)  # image numbers: 4 bytes a row
        if lists is not None and len(lists):
            self._index = restored_index(bank, lists, self._faiss_metric, self.probes, self.refine)
        else:
            self._index = self._build_index(bank, centroids, codebook)
        self.bank = stored_vectors(self._index)
        self._bank_norms = (
            np.einsum("ij,ij->i", self.bank, self.bank) if self.metric == "l2" else None
        )
        return self

    @property
    def saved_bank(self) -> np.ndarray:
        """The bank's rows as `restore` takes them back bit for bit: float16 with
        `half_precision`, float32 otherwise."""
        if not self.half_precision:
            return self.bank
        rows = self.bank if self._half_norms is None else self.bank * self._half_norms
        return rows.astype(np.float16)  # within a float32 rounding of the float16 rows

    @property
    def is_approximate(self) -> bool:
        """Whether the fitted bank is searched through the approximate index."""
        return isinstance(self._index, faiss.IndexRefine)

    @property
    def centroids(self) -> np.ndarray:
        """(lists, D) centres of the approximate index's inverted lists; (0, D) for exact search."""
        if not self.is_approximate:
            return np.empty((0, self.bank.shape[1]), dtype=np.float32)
        lists_index = faiss.extract_index_ivf(self._index)
        return lists_index.quantizer.reconstruct_n(0, lists_index.nlist)

    @property
    def codebook(self) -> np.ndarray:
        """(16·D,) centres of the approximate index's product quantiser; empty for exact search."""
        if not self.is_approximate:
            return np.empty(0, dtype=np.float32)
        lists_index = faiss.downcast_index(faiss.extract_index_ivf(self._index))
        return faiss.vector_to_array(lists_index.pq.centroids)

    @property
    def lists(self) -> np.ndarray:
        """The approximate index's inverted lists (each row's list and compressed code, the
        lists' centres and the codes' centres) in faiss's serialisation, a uint8 array; empty
        for exact search."""
        if not self.is_approximate:
            return np.empty(0, dtype=np.uint8)
        return faiss.serialize_index(faiss.extract_index_ivf(self._index))

    def distances(
        self, queries: np.ndarray, k: int = 1, exact_top: int = 0, among: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(distances, indices), each (Q, k), nearest first; k is cut to the bank's size, so
        that no row is faiss's -1 padding. The `exact_top` queries farthest from the bank, of
        those `among` (Q,) marks (None: all), get what exact search gives them (see
        `_exact_top`), whatever the index."""
        queries = self._prepare(queries)
        k = min(k, len(self.bank))
        values, indices = self._search_distinct(queries, k)
        distances = self._to_distances(values)
        if exact_top and self.is_approximate:
            self._exact_top(queries, distances, indices, exact_top, None, among)
        return distances, indices

    def distances_excluding(
        self,
        queries: np.ndarray,
        owner: int,
        k: int = 1,
        exact_top: int = 0,
        among: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(distances, indices), each (Q, k), of the k nearest bank rows not of image `owner`,
        nearest first; k is cut to the number of such rows; `exact_top` and `among` as in
        `distances`.

        Exact banks copy the other rows into a fresh flat index (copying costs far less than
        searching, and faiss's exact search with an ID filter is about ten times slower);
        approximate banks search the inverted-file index with an ID filter, and queries whose
        probed lists hold fewer than k rows of other images are searched exactly among them.
        """
        excluded = self.owners == owner
        if excluded.all():
            raise ValueError("the bank holds no patches of other images")
        queries = self._prepare(queries)
        kept = np.flatnonzero(~excluded)
        k = min(k, len(kept))
        if not self.is_approximate:
            return self._search_rows(queries, kept, k)
        others = faiss.IDSelectorNot(faiss.IDSelectorBatch(np.flatnonzero(excluded)))
        params = faiss.IndexRefineSearchParameters(
            k_factor=self.refine,
            base_index_params=faiss.SearchParametersIVF(
                sel=others, nprobe=faiss.extract_index_ivf(self._index).nprobe
            ),
        )
        values, indices = self._search_distinct(queries, k, params)
        distances = self._to_distances(values)
        unfound = np.flatnonzero((indices < 0).any(axis=1))
        if unfound.size:
            distances[unfound], indices[unfound] = self._search_rows(queries[unfound], kept, k)
        if exact_top:
            self._exact_top(queries, distances, indices, exact_top, excluded, among)
        return distances, indices

    def _search_distinct(
        self, queries: np.ndarray, k: int, params: faiss.SearchParameters | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The index's (values, indices) of prepared `queries`, each distinct query searched
        once: uniform regions repeat one patch (DeepPCB's fine grids: 6,400 queries, 1,800 to
        4,700 distinct)."""
        same = first_equal_rows(queries)
        first = same == np.arange(len(queries))
        if first.all():
            return self._index.search(queries, k, params=params)
        values, indices = self._index.search(queries[first], k, params=params)
        position = (np.cumsum(first) - 1)[same]
        return values[position], indices[position]

    def _exact_top(
        self,
        queries: np.ndarray,
        distances: np.ndarray,
        indices: np.ndarray,
        count: int,
        excluded: np.ndarray | None,
        among: np.ndarray | None,
    ) -> None:
        """Replace, in place, the approximate results of the queries farthest from the bank by
        exact ones (ignoring the bank rows where `excluded` is True), until the `count` largest
        nearest distances of the queries `among` marks (None: all) are certainly those exact
        search finds.

        An approximate nearest distance is never below the exact one (it is the exact distance
        to some bank row), so once the count-th largest exact distance of the re-searched
        queries is at least the largest approximate distance left, no other query can be among
        the top `count`. The first round re-searches max(4·count, FIRST_EXACT_QUERIES) queries,
        largest first, and each further round twice as many.
        What the image score reads (the top patches) is then exact and the rest of the map as
        the index found it."""
        candidates = np.arange(len(queries)) if among is None else np.flatnonzero(among)
        order = candidates[np.argsort(-distances[candidates, 0], kind="stable")]
        count = min(count, len(order))
        if not count:
            return
        done, size = 0, min(max(4 * count, FIRST_EXACT_QUERIES), len(order))
        while done < len(order):
            fresh = order[done:size]
            distances[fresh], indices[fresh] = self._exact_search(
                queries[fresh], distances.shape[1], excluded
            )
            done, size = size, min(2 * size, len(order))
            searched = distances[order[:done], 0]
            left = distances[order[done:], 0].max(initial=-np.inf)
            if np.partition(searched, done - count)[done - count] >= left:
                return

    def _exact_search(
        self, queries: np.ndarray, k: int, excluded: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact (distances, indices), each (Q, k), of prepared `queries` among the bank rows
        not `excluded` (a (N,) mask, or None), by matrix products over the bank in place (no
        copy of it), EXACT_CHUNK_VALUES query-row products at a time."""
        bank = self.bank
        distances = np.empty((len(queries), k), dtype=np.float32)
        indices = np.empty((len(queries), k), dtype=np.int64)
        step = max(1, EXACT_CHUNK_VALUES // len(bank))
        for start in range(0, len(queries), step):
            chunk = queries[start : start + step]
            cost = chunk @ bank.T  # made smaller-is-nearer in place
            if self.metric == "cosine":
                np.negative(cost, out=cost)
            else:
                cost *= -2.0
                cost += self._bank_norms
            if excluded is not None:
                cost[:, excluded] = np.inf
            if k == 1:
                nearest = cost.argmin(axis=1)[:, None]
            else:
                nearest = np.argpartition(cost, k - 1, axis=1)[:, :k]
                order = np.argsort(np.take_along_axis(cost, nearest, 1), axis=1)
                nearest = np.take_along_axis(nearest, order, 1)
            values = np.take_along_axis(cost, nearest, 1)
            if self.metric == "cosine":
                distances[start : start + step] = self._to_distances(-values)
            else:
                norms = np.einsum("ij,ij->i", chunk, chunk)[:, None]
                distances[start : start + step] = self._to_distances(values + norms)
            indices[start : start + step] = nearest
        return distances, indices

    def spacing(self) -> np.ndarray:
        """(N,) distance from each bank row to its nearest row of another image: how densely
        the references cover that part of feature space. Zeros when the bank holds one image."""
        spacing = np.zeros(len(self.bank), dtype=np.float32)
        owners = np.unique(self.owners)
        if len(owners) < 2:
            return spacing
        for owner in owners:
            rows = np.flatnonzero(self.owners == owner)
            spacing[rows] = self.distances_excluding(self.bank[rows], int(owner))[0][:, 0]
        return spacing

    def _search_rows(
        self, queries: np.ndarray, rows: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact (distances, indices), each (Q, k), of prepared `queries` among bank `rows`
        (k at most len(rows))."""
        index = flat_index(self.bank.shape[1], self._faiss_metric)
        index.add(self.bank[rows])
        values, indices = index.search(queries, k)
        return self._to_distances(values), rows[indices]

    def _prepare(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if self.metric == "cosine":
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def _build_index(
        self, bank: np.ndarray, centroids: np.ndarray | None, codebook: np.ndarray | None
    ) -> faiss.Index:
        count, dim = bank.shape
        approximate = self.approximate
        if approximate is None:
            approximate = count > EXACT_SEARCH_LIMIT
        if not approximate:
            index = flat_index(dim, self._faiss_metric)
            index.add(bank)
            return index
        if centroids is not None and len(centroids) == 0:
            centroids = None  # an exact bank's: nothing to reuse, train afresh
        if codebook is not None and len(codebook) == 0:
            codebook = None  # an exact bank's, or a model saved before codes were kept
        lists = list_count(count) if centroids is None else len(centroids)
        return inverted_file_index(
            bank, lists, self._faiss_metric, centroids, codebook, self.probes, self.refine
        )

    def _to_distances(self, values: np.ndarray) -> np.ndarray:
        if self.metric == "cosine":
            return np.clip(1.0 - values, 0.0, 2.0)
        return np.sqrt(np.maximum(values, 0.0))
