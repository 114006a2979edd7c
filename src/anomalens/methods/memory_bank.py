"""Shared machinery of nearest-neighbour methods: a bank of normal patch features."""

from abc import abstractmethod
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from anomalens.memory.knn import REFINE_FACTOR, NearestNeighbours
from anomalens.methods.base import Method, PatchScores
from anomalens.progress import spinner
from anomalens.validation import ArraySpec, choice, integer


@dataclass
class PatchGrid:
    """Patch features of one image: (h, w, C) float32, plus the image region they cover."""

    features: np.ndarray
    extent: tuple[float, float]
    image_size: tuple[int, int]


class MemoryBankMethod(Method):
    """A method that scores a patch by its distance to the nearest normal patch.

    Subclasses define how images become patch grids, which reference patches enter the bank,
    and how an image score is read off the patch distances.
    """

    metric: str

    def __init__(
        self, approximate: bool | None, probes: int | None = None, refine: int = REFINE_FACTOR
    ) -> None:
        self.approximate = choice("approximate", approximate, (None, True, False))
        self.probes = probes if probes is None else integer("probes", probes, minimum=1)
        self.refine = integer("refine", refine, minimum=1)
        self.neighbours = NearestNeighbours(
            self.metric, approximate, half_precision=True, probes=probes, refine=refine
        )

    @abstractmethod
    def patch_grids(self, images: list[np.ndarray], progress: bool = False) -> list[PatchGrid]:
        """Patch features of each image."""

    @abstractmethod
    def bank_patches(
        self, images: list[np.ndarray], progress: bool
    ) -> tuple[np.ndarray, np.ndarray, list[PatchGrid]]:
        """(bank (N, C), owners (N,) index of each row's reference, plain grids of `images`)."""

    @abstractmethod
    def image_score(
        self, grid: PatchGrid, distances: np.ndarray, indices: np.ndarray, exclude: int | None
    ) -> tuple[np.ndarray, float]:
        """(h, w) patch scores and the image score, from each patch's nearest bank distance and
        row index, both (h*w, 1); `exclude` is the held-out reference whose bank rows any
        further search must not see (None outside held-out scoring)."""

    def exact_patches(self, grid: PatchGrid) -> tuple[int, np.ndarray | None]:
        """How many of `grid`'s patch distances, the largest among the patches a (h*w,) mask
        marks (None: all), must be what exact search gives (the ones the image score reads);
        the approximate index may overestimate the others. 0: none."""
        return 0, None

    def index_bank(self, bank: np.ndarray, owners: np.ndarray) -> None:
        """Make `bank` (N, C), with the reference index of each row in `owners`, searchable."""
        self.neighbours.fit(bank, owners)

    def fit(self, images: list[np.ndarray], progress: bool = False) -> None:
        bank, owners, _ = self.bank_patches(images, progress)
        self._index(bank, owners, progress)

    def fit_with_holdout(
        self, images: list[np.ndarray], progress: bool = False
    ) -> list[PatchScores]:
        """Fit on all `images`; score each against the bank rows of the other images only."""
        if len(images) < 2:
            raise ValueError("held-out scores need at least two images")
        bank, owners, grids = self.bank_patches(images, progress)
        self._index(bank, owners, progress)
        results = []
        for owner, grid in enumerate(tqdm(grids, desc="held-out", disable=not progress)):
            flat = grid.features.reshape(-1, grid.features.shape[-1])
            count, among = self.exact_patches(grid)
            found = self.neighbours.distances_excluding(flat, owner, exact_top=count, among=among)
            results.append(self._scores(grid, *found, exclude=owner))
        return results

    def _index(self, bank: np.ndarray, owners: np.ndarray, progress: bool) -> None:
        with spinner(f"indexing {len(bank):,} bank patches", progress):
            self.index_bank(bank, owners)

    def score(self, images: list[np.ndarray]) -> list[PatchScores]:
        results = []
        for grid in self.patch_grids(images):
            flat = grid.features.reshape(-1, grid.features.shape[-1])
            count, among = self.exact_patches(grid)
            found = self.neighbours.distances(flat, exact_top=count, among=among)
            results.append(self._scores(grid, *found))
        return results

    def _scores(
        self,
        grid: PatchGrid,
        distances: np.ndarray,
        indices: np.ndarray,
        exclude: int | None = None,
    ) -> PatchScores:
        patch_scores, image_score = self.image_score(grid, distances, indices, exclude)
        return PatchScores(
            grid=patch_scores.astype(np.float32),
            extent=grid.extent,
            image_size=grid.image_size,
            image_score=float(image_score),
        )

    def state(self) -> dict[str, np.ndarray]:
        found = self.neighbours
        return {"bank": found.saved_bank, "owners": found.owners, "lists": found.lists}

    def state_spec(self) -> dict[str, ArraySpec]:
        return {
            "bank": ArraySpec(("rows", "dim"), ("float16", "float32")),  # float32: older models
            "owners": ArraySpec(("rows",), ("int32", "int64")),  # int64: older models
            "centroids": ArraySpec(("lists", "dim"), "float32", required=False),
            "codebook": ArraySpec((None,), "float32", required=False),
            "lists": ArraySpec((None,), "uint8", required=False),
        }

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.neighbours.restore(
            arrays["bank"],
            arrays["owners"],
            arrays.get("centroids"),  # models saved before the lists were kept
            arrays.get("codebook"),
            arrays.get("lists"),
        )
