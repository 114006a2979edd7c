"""Few-shot episodes on cached region embeddings: each matching rule of `DefectTypes` against a
supervised logistic-regression classifier trained on the same shots.

Each episode draws `shots` support examples of every type; the type's other regions are the
queries. Open-set episodes hold one type out of the support, in turn: its regions should come
back "unknown", which the AUROC of each classifier's confidence (negated) measures.
scikit-learn is imported where it is used, so that importing the CLI does not pay for it.
"""

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from anomalens.defect_types.registry import RULES, DefectTypeError, DefectTypes
from anomalens.metrics import image_auroc

Z_95 = 1.959964
"""Standard normal quantile of a two-sided 95% confidence interval."""
LOGISTIC_REGRESSION = "logistic regression"


@dataclass
class Estimate:
    """Mean over episodes with its 95% confidence interval (normal approximation)."""

    mean: float
    low: float
    high: float

    @classmethod
    def of(cls, values: list[float]) -> "Estimate":
        """The estimate of the mean of per-episode `values`."""
        array = np.asarray(values, dtype=np.float64)
        half = Z_95 * array.std(ddof=1) / np.sqrt(len(array)) if len(array) > 1 else 0.0
        return cls(float(array.mean()), float(array.mean() - half), float(array.mean() + half))


@dataclass
class Prediction:
    """A classifier's answer for the queries of one episode.

    Attributes:
        types: predicted type index of each query.
        confidence: best similarity (or probability) of each query; low means likely unknown.
        threshold: confidence below which the classifier calls a query unknown, if it has one.
    """

    types: np.ndarray
    confidence: np.ndarray
    threshold: float | None


@dataclass
class ClassifierResult:
    """How one classifier did over the episodes.

    Attributes:
        name: "prototype", "example" or "both" (matching rules) or "logistic regression".
        metrics: per-episode means with 95% intervals: "accuracy" and "macro_f1" on queries of
            the support's types; open-set: "unknown_auroc"; with a calibrated unknown threshold:
            "false_unknown_rate" (known queries called unknown) and, open-set, "unknown_recall".
        confusion: (T, T) known-type query counts summed over episodes; rows are the true types,
            columns the predicted ones, both in sorted type order.
    """

    name: str
    metrics: dict[str, Estimate]
    confusion: list[list[int]]


Classifier = Callable[[np.ndarray, np.ndarray, np.ndarray], Prediction]
"""(support embeddings, support type indices, query embeddings) -> Prediction."""


def run_episodes(
    embeddings: np.ndarray,
    labels: list[str],
    shots: int = 5,
    episodes: int = 100,
    open_set: bool = False,
    seed: int = 0,
) -> list[ClassifierResult]:
    """Every matching rule and logistic regression over the same seeded few-shot episodes.

    Args:
        embeddings: (n, C) unit-length region embeddings.
        labels: each embedding's defect type.
        shots: support examples per type and episode.
        episodes: number of episodes.
        open_set: hold one type out of each episode's support, each type in turn.
        seed: seed of the support draws.
    """
    types = sorted(set(labels))
    targets = np.array([types.index(label) for label in labels])
    _check_counts(types, targets, shots, open_set)
    classifiers: dict[str, Classifier] = {rule: _matcher(rule) for rule in RULES}
    classifiers[LOGISTIC_REGRESSION] = _logistic_regression
    values: dict[str, dict[str, list[float]]] = {name: defaultdict(list) for name in classifiers}
    confusions = {name: np.zeros((len(types), len(types)), np.int64) for name in classifiers}
    rng = np.random.default_rng(seed)
    for episode in range(episodes):
        held_out = episode % len(types) if open_set else None
        support, queries = _draw(targets, shots, held_out, rng)
        unknown = targets[queries] == held_out
        truth = targets[queries][~unknown]
        for name, classify in classifiers.items():
            prediction = classify(embeddings[support], targets[support], embeddings[queries])
            predicted = prediction.types[~unknown]
            for metric, value in _episode_metrics(prediction, predicted, truth, unknown).items():
                values[name][metric].append(value)
            np.add.at(confusions[name], (truth, predicted), 1)
    return [
        ClassifierResult(
            name,
            {metric: Estimate.of(series) for metric, series in values[name].items()},
            confusions[name].tolist(),
        )
        for name in classifiers
    ]


def _check_counts(types: list[str], targets: np.ndarray, shots: int, open_set: bool) -> None:
    needed = 3 if open_set else 2
    if len(types) < needed:
        kind = "open-set episodes" if open_set else "episodes"
        raise DefectTypeError(f"{kind} need at least {needed} defect types, got {types}")
    counts = np.bincount(targets, minlength=len(types))
    short = [
        f"{name} ({count})" for name, count in zip(types, counts, strict=True) if count <= shots
    ]
    if short:
        raise DefectTypeError(
            f"{shots}-shot episodes need more than {shots} regions of each type; too few: "
            + ", ".join(short)
        )


def _draw(
    targets: np.ndarray, shots: int, held_out: int | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(support, queries) indices: `shots` of every type but `held_out`, and all the others."""
    support = [
        rng.choice(np.flatnonzero(targets == type_index), shots, replace=False)
        for type_index in np.unique(targets)
        if type_index != held_out
    ]
    chosen = np.sort(np.concatenate(support))
    return chosen, np.setdiff1d(np.arange(len(targets)), chosen)


def _episode_metrics(
    prediction: Prediction, predicted: np.ndarray, truth: np.ndarray, unknown: np.ndarray
) -> dict[str, float]:
    """One episode's metrics (see `ClassifierResult.metrics`)."""
    from sklearn.metrics import f1_score

    metrics = {
        "accuracy": float(np.mean(predicted == truth)),
        "macro_f1": float(f1_score(truth, predicted, average="macro", zero_division=0)),
    }
    if unknown.any():
        metrics["unknown_auroc"] = image_auroc(unknown, -prediction.confidence)
    if prediction.threshold is not None:
        called_unknown = prediction.confidence < prediction.threshold
        metrics["false_unknown_rate"] = float(called_unknown[~unknown].mean())
        if unknown.any():
            metrics["unknown_recall"] = float(called_unknown[unknown].mean())
    return metrics


def _matcher(rule: str) -> Classifier:
    """Classifier registering the support as `DefectTypes` matched by `rule`."""

    def classify(support: np.ndarray, targets: np.ndarray, queries: np.ndarray) -> Prediction:
        store = DefectTypes(rule=rule)
        for type_index in np.unique(targets):
            examples = support[targets == type_index]
            store.add(str(type_index), examples, [""] * len(examples))
        similarities = store.similarities(queries)
        type_indices = np.array([int(name) for name in store.names])
        return Prediction(
            type_indices[similarities.argmax(axis=1)],
            similarities.max(axis=1),
            store.calibrated_threshold(),
        )

    return classify


def _logistic_regression(
    support: np.ndarray, targets: np.ndarray, queries: np.ndarray
) -> Prediction:
    """Multinomial logistic regression (scikit-learn defaults) trained on the support."""
    from sklearn.linear_model import LogisticRegression

    classifier = LogisticRegression(max_iter=1000).fit(support, targets)
    probabilities = classifier.predict_proba(queries)
    return Prediction(
        classifier.classes_[probabilities.argmax(axis=1)], probabilities.max(axis=1), None
    )
