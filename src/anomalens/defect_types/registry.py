"""The defect types a detector names: example embeddings per type, matching, "unknown"."""

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from anomalens import validation
from anomalens.calibration import prediction_margin
from anomalens.defect_types.embedding import RegionEmbedder
from anomalens.defect_types.supervised import CROP, CropClassifier, box_crops, normalised
from anomalens.errors import AnomalensError, ConfigError
from anomalens.localization.regions import region_masks
from anomalens.methods.base import prefixed
from anomalens.results import Result
from anomalens.validation import ArraySpec, prefixed_specs

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
        self.crops: dict[str, np.ndarray | None] = {}
        self.classifier: CropClassifier | None = None

    @classmethod
    def for_method(cls, method_config: dict[str, Any]) -> "DefectTypes":
        """An empty store embedding regions on the backbone of the method with `method_config`."""
        return cls(RegionEmbedder.for_method(method_config))

    @property
    def names(self) -> list[str]:
        """Registered type names, in the order they were added."""
        return list(self.examples)

    def add(
        self,
        name: str,
        embeddings: np.ndarray,
        sources: list[str],
        crops: np.ndarray | None = None,
    ) -> None:
        """Register `embeddings` (n, C) of type `name`, adding to its examples if it exists.
        A trained classifier is dropped: it does not know the new examples.

        Args:
            name: the type's name.
            embeddings: unit-length region embeddings, one row per example.
            sources: where each example came from (file names), for people.
            crops: (n, CROP, CROP, 3) uint8 crops around the examples (`crop_pixels`), which
                `train` learns from; a type with an example without its crop cannot be trained.
        """
        if not name.strip() or name == UNKNOWN:
            raise DefectTypeError(f"{name!r} cannot name a defect type")
        if len(embeddings) == 0:
            raise DefectTypeError(f"defect type {name!r} needs at least one example")
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if crops is not None and len(crops) != len(embeddings):
            raise DefectTypeError(f"{len(crops)} crops given for {len(embeddings)} examples")
        if name in self.examples:
            embeddings = np.concatenate([self.examples[name], embeddings])
            sources = self.sources[name] + sources
            earlier = self.crops[name]
            crops = None if earlier is None or crops is None else np.concatenate([earlier, crops])
        self.examples[name] = embeddings
        self.sources[name] = list(sources)
        self.crops[name] = None if crops is None else np.asarray(crops, dtype=np.uint8)
        self.classifier = None

    def remove(self, name: str) -> None:
        """Forget type `name` (and a trained classifier, which knew it)."""
        if name not in self.examples:
            raise DefectTypeError(f"no defect type {name!r}; registered: {self.names or 'none'}")
        del self.examples[name], self.sources[name], self.crops[name]
        self.classifier = None

    def train(self, classifier: CropClassifier) -> CropClassifier:
        """Fine-tune `classifier` on every example's crop; from then on it chooses each
        region's type, while "unknown" still comes from the similarity (`match`).

        Raises DefectTypeError with fewer than two types or a type whose examples lack crops
        (added from embeddings alone, or by a version that kept none).
        """
        _, crops, targets = self._training_set()
        self.classifier = classifier.fit(normalised(crops), targets)
        return self.classifier

    def held_out_accuracy(self, classifier: CropClassifier) -> tuple[float, float] | None:
        """How often `classifier` and the similarity rule name an example right when it was
        left out of their training: each type's examples are split in two halves, each half
        named by both trained on the other. None when a type has fewer than two examples;
        DefectTypeError as for `train`."""
        embeddings, crops, targets = self._training_set()
        if np.bincount(targets).min() < 2:
            return None
        generator = np.random.default_rng(classifier.seed)
        halves = np.concatenate([generator.permutation(n) % 2 for n in np.bincount(targets)])
        right = np.zeros(2)
        for half in (0, 1):
            learn, query = halves != half, halves == half
            rule = DefectTypes(self.embedder, self.rule)
            for index, name in enumerate(self.names):
                rule.add(name, embeddings[learn & (targets == index)], [])
            trained = dataclasses.replace(classifier).fit(normalised(crops[learn]), targets[learn])
            named = trained.predict_proba(normalised(crops[query])).argmax(axis=1)
            similar = rule.similarities(embeddings[query]).argmax(axis=1)
            right += [(named == targets[query]).sum(), (similar == targets[query]).sum()]
        cnn, similarity = right / len(targets)
        return float(cnn), float(similarity)

    def _training_set(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every example's embedding, crop and type index (in `names` order); DefectTypeError
        unless two or more types all keep their examples' crops."""
        if len(self.names) < 2:
            raise DefectTypeError(
                f"a classifier needs at least two defect types; registered: {self.names or 'none'}"
            )
        missing = [name for name in self.names if self.crops[name] is None]
        if missing:
            raise DefectTypeError(
                f"defect types {', '.join(map(repr, missing))} keep no example crops (added "
                "before models kept them): remove them and add their examples again"
            )
        targets = [np.full(len(self.examples[name]), i) for i, name in enumerate(self.names)]
        return (
            np.concatenate([self.examples[name] for name in self.names]),
            np.concatenate([self.crops[name] for name in self.names]),
            np.concatenate(targets),
        )

    def similarities(self, queries: np.ndarray) -> np.ndarray:
        """(m, T) similarity of each query embedding to each type, in `names` order."""
        similarity = RULES[self.rule]
        return np.stack([similarity(queries, self.examples[name]) for name in self.names], axis=1)

    def match(
        self, queries: np.ndarray, crops: np.ndarray | None = None
    ) -> list[tuple[str, float]]:
        """(type name or "unknown", similarity to that type) for each query embedding (m, C).

        The type is the most similar one, or with a trained classifier the one it gives the
        query's crop (`crops`, (m, CROP, CROP, 3) uint8, required then); either way a query is
        "unknown" when its best similarity to any type is below the threshold.
        """
        similarities = self.similarities(queries)
        chosen = similarities.argmax(axis=1)
        if self.classifier is not None:
            if crops is None:
                raise DefectTypeError("the trained classifier names regions from their crops")
            chosen = self.classifier.predict_proba(normalised(crops)).argmax(axis=1)
        threshold = self.threshold
        matches = []
        for row, index in zip(similarities, chosen, strict=True):
            below = threshold is not None and row.max() < threshold
            matches.append((UNKNOWN if below else self.names[index], float(row[index])))
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

    def box_embeddings(
        self, images: list[np.ndarray], results: list[Result]
    ) -> list[np.ndarray | None]:
        """Per result, the (boxes, C) float32 embeddings of its boxes' regions (None without
        boxes)."""
        boxed = [i for i, result in enumerate(results) if result.boxes]
        embedded = self.embedder.embed(
            [images[i] for i in boxed],
            [results[i].anomaly_map for i in boxed],
            [list(region_masks(results[i].mask, results[i].boxes)) for i in boxed],
        )
        embeddings: list[np.ndarray | None] = [None] * len(results)
        for index, rows in zip(boxed, embedded, strict=True):
            embeddings[index] = np.asarray(rows, dtype=np.float32)
        return embeddings

    def label(
        self,
        images: list[np.ndarray],
        results: list[Result],
        embeddings: list[np.ndarray | None] | None = None,
    ) -> None:
        """Set `defect_type` and `similarity` of every box in `results` (one per image);
        `embeddings` are the boxes' `box_embeddings` when already computed."""
        if not self.examples:
            return
        if embeddings is None:
            embeddings = self.box_embeddings(images, results)
        for image, result, rows in zip(images, results, embeddings, strict=True):
            if rows is None:
                continue
            crops = None
            if self.classifier is not None:
                crops = box_crops(image, [(b.x0, b.y0, b.x1, b.y1) for b in result.boxes])
            for box, (name, similarity) in zip(result.boxes, self.match(rows, crops), strict=True):
                box.defect_type, box.similarity = name, similarity

    def document(self) -> dict[str, Any]:
        """JSON-serialisable settings, type names and classifier; the arrays are in `state()`."""
        return {
            "embedder": self.embedder.config(),
            "rule": self.rule,
            "unknown_threshold": self.unknown_threshold,
            "types": [
                {"name": name, "sources": self.sources[name], "crops": self.crops[name] is not None}
                for name in self.names
            ],
            "classifier": None if self.classifier is None else self.classifier.document(),
        }

    def state(self) -> dict[str, np.ndarray]:
        """Each type's example embeddings (n, C) as "types.<name>", its crops as
        "type_crops.<name>" and the classifier's weights as "type_classifier.<parameter>"."""
        arrays = {f"types.{name}": rows for name, rows in self.examples.items()}
        arrays |= {f"type_crops.{name}": c for name, c in self.crops.items() if c is not None}
        if self.classifier is not None:
            arrays |= {f"type_classifier.{k}": v for k, v in self.classifier.state().items()}
        return arrays

    @staticmethod
    def state_spec(document: dict[str, Any]) -> dict[str, ArraySpec]:
        """What `state()` holds for the store `document` describes: one embedding (and crop)
        per source, one embedding width for all."""
        specs = {}
        for entry in document["types"]:
            count = len(entry["sources"])
            specs[f"types.{entry['name']}"] = ArraySpec((count, "width"), "float32")
            if entry.get("crops"):
                specs[f"type_crops.{entry['name']}"] = ArraySpec((count, CROP, CROP, 3), "uint8")
        if document.get("classifier"):
            types = validation.integer("classifier types", document["classifier"]["types"], 2)
            specs |= prefixed_specs(CropClassifier.state_spec(types), "type_classifier.")
        return specs

    @classmethod
    def restore(cls, document: dict[str, Any], arrays: dict[str, np.ndarray]) -> "DefectTypes":
        """The store that `document()` and `state()` describe."""
        types = cls(
            RegionEmbedder(**document["embedder"]),
            document["rule"],
            document["unknown_threshold"],
        )
        for entry in document["types"]:
            name = entry["name"]
            crops = arrays.get(f"type_crops.{name}")
            types.add(name, arrays[f"types.{name}"], entry["sources"], crops)
        if document.get("classifier"):
            if document["classifier"]["types"] != len(types.names):
                raise DefectTypeError("the classifier knows another number of types")
            types.classifier = CropClassifier.restore(
                document["classifier"], prefixed(arrays, "type_classifier.")
            )
        return types
