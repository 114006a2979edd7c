"""The defect types a detector names: example embeddings per type, matching, "unknown"."""

from collections.abc import Callable
from typing import Any

import numpy as np

from anomalens.calibration import prediction_margin
from anomalens.defect_types.embedding import RegionEmbedder
from anomalens.errors import AnomalensError, ConfigError
from anomalens.localization.regions import region_masks
from anomalens.results import Result

UNKNOWN = "unknown"
"""Label of a region unlike every registered type."""
FALSE_UNKNOWN_RATE = 0.10
"""Nominal rate of regions of a registered type labelled "unknown" by the calibrated threshold;
held-out similarities come from one example fewer than matching uses, so the rate measured on
MTD is lower (about 6%, with about half of the regions of unregistered types called unknown)."""


class DefectTypeError(AnomalensError):
    """A defect type cannot be added, removed or used as asked."""


def prototype_similarity(queries: np.ndarray, examples: np.ndarray) -> np.ndarray:
    """Cosine similarity of each query (m, C) to the mean of the unit `examples` (n, C)."""
    prototype = examples.mean(axis=0)
    return queries @ (prototype / max(float(np.linalg.norm(prototype)), 1e-12))


def example_similarity(queries: np.ndarray, examples: np.ndarray) -> np.ndarray:
    """Cosine similarity of each query (m, C) to its most similar example (n, C)."""
    return (queries @ examples.T).max(axis=1)


def combined_similarity(queries: np.ndarray, examples: np.ndarray) -> np.ndarray:
    """Mean of the prototype and nearest-example similarities."""
    return (prototype_similarity(queries, examples) + example_similarity(queries, examples)) / 2


RULES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "prototype": prototype_similarity,
    "example": example_similarity,
    "both": combined_similarity,
}
DEFAULT_RULE = "both"
"""Best on MTD (5-way 5-shot): closed-set accuracy and open-set AUROC above either rule alone."""


class DefectTypes:
    """Registered defect types, each kept as every example's region embedding.

    A region gets the type it is most similar to, or "unknown" when even that similarity is
    below the unknown threshold.

    Args:
        embedder: turns image regions into embeddings (default: `RegionEmbedder()`).
        rule: similarity of a region to a type: "prototype" (cosine to the mean of the type's
            examples), "example" (to its most similar example) or "both" (mean of the two).
        unknown_threshold: similarity below which a region is "unknown"; None calibrates it
            from the examples themselves (see `calibrated_threshold`).
    """

    def __init__(
        self,
        embedder: RegionEmbedder | None = None,
        rule: str = DEFAULT_RULE,
        unknown_threshold: float | None = None,
    ):
        if rule not in RULES:
            raise ConfigError(f"rule must be one of {sorted(RULES)}, got {rule!r}")
        self.embedder = embedder or RegionEmbedder()
        self.rule = rule
        self.unknown_threshold = unknown_threshold
        self.examples: dict[str, np.ndarray] = {}
        self.sources: dict[str, list[str]] = {}

    @classmethod
    def for_method(cls, method_config: dict[str, Any]) -> "DefectTypes":
        """An empty store embedding regions on the backbone of the method with `method_config`."""
        return cls(RegionEmbedder.for_method(method_config))

    @property
    def names(self) -> list[str]:
        """Registered type names, in the order they were added."""
        return list(self.examples)

    def add(self, name: str, embeddings: np.ndarray, sources: list[str]) -> None:
        """Register `embeddings` (n, C) of type `name`, adding to its examples if it exists.

        Args:
            name: the type's name.
            embeddings: unit-length region embeddings, one row per example.
            sources: where each example came from (file names), for people.
        """
        if not name.strip() or name == UNKNOWN:
            raise DefectTypeError(f"{name!r} cannot name a defect type")
        if len(embeddings) == 0:
            raise DefectTypeError(f"defect type {name!r} needs at least one example")
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if name in self.examples:
            embeddings = np.concatenate([self.examples[name], embeddings])
            sources = self.sources[name] + sources
        self.examples[name] = embeddings
        self.sources[name] = list(sources)

    def remove(self, name: str) -> None:
        """Forget type `name`."""
        if name not in self.examples:
            raise DefectTypeError(f"no defect type {name!r}; registered: {self.names or 'none'}")
        del self.examples[name], self.sources[name]

    def similarities(self, queries: np.ndarray) -> np.ndarray:
        """(m, T) similarity of each query embedding to each type, in `names` order."""
        similarity = RULES[self.rule]
        return np.stack([similarity(queries, self.examples[name]) for name in self.names], axis=1)

    def match(self, queries: np.ndarray) -> list[tuple[str, float]]:
        """(type name or "unknown", best similarity) for each query embedding (m, C)."""
        similarities = self.similarities(queries)
        threshold = self.threshold
        matches = []
        for row in similarities:
            best = int(row.argmax())
            below = threshold is not None and row[best] < threshold
            matches.append((UNKNOWN if below else self.names[best], float(row[best])))
        return matches

    @property
    def threshold(self) -> float | None:
        """The unknown threshold in use: the one set by hand, else the calibrated one."""
        if self.unknown_threshold is not None:
            return self.unknown_threshold
        return self.calibrated_threshold()

    def held_out_similarities(self) -> np.ndarray:
        """Similarity of each example to its own type without it (types with 2+ examples)."""
        similarity = RULES[self.rule]
        values = [
            similarity(examples[i : i + 1], np.delete(examples, i, axis=0))[0]
            for examples in self.examples.values()
            if len(examples) > 1
            for i in range(len(examples))
        ]
        return np.array(values, dtype=np.float64)

    def calibrated_threshold(self) -> float | None:
        """Lower normal prediction bound of the held-out similarities: a new region of a known
        type falls below it with probability FALSE_UNKNOWN_RATE. None with fewer than two
        held-out similarities (no type has two examples): every region then gets a type."""
        values = self.held_out_similarities()
        if len(values) < 2:
            return None
        spread = float(np.std(values, ddof=1))
        return float(np.mean(values)) - prediction_margin(len(values), spread, FALSE_UNKNOWN_RATE)

    def label(self, images: list[np.ndarray], results: list[Result]) -> None:
        """Set `defect_type` and `similarity` of every box in `results` (one per image)."""
        if not self.examples:
            return
        boxed = [i for i, result in enumerate(results) if result.boxes]
        embeddings = self.embedder.embed(
            [images[i] for i in boxed],
            [results[i].anomaly_map for i in boxed],
            [list(region_masks(results[i].mask, results[i].boxes)) for i in boxed],
        )
        for index, rows in zip(boxed, embeddings, strict=True):
            for box, (name, similarity) in zip(results[index].boxes, self.match(rows), strict=True):
                box.defect_type, box.similarity = name, similarity

    def document(self) -> dict[str, Any]:
        """JSON-serialisable settings and type names; the embeddings are in `state()`."""
        return {
            "embedder": self.embedder.config(),
            "rule": self.rule,
            "unknown_threshold": self.unknown_threshold,
            "types": [{"name": name, "sources": self.sources[name]} for name in self.names],
        }

    def state(self) -> dict[str, np.ndarray]:
        """Each type's example embeddings (n, C), keyed by type name."""
        return dict(self.examples)

    @classmethod
    def restore(cls, document: dict[str, Any], arrays: dict[str, np.ndarray]) -> "DefectTypes":
        """The store that `document()` and `state()` describe."""
        types = cls(
            RegionEmbedder(**document["embedder"]),
            document["rule"],
            document["unknown_threshold"],
        )
        for entry in document["types"]:
            types.add(entry["name"], arrays[entry["name"]], entry["sources"])
        return types
