"""Registry of anomaly detection methods."""

from anomalens.methods.anomalydino import AnomalyDINO
from anomalens.methods.autoencoder import AutoencoderMethod
from anomalens.methods.base import Method, PatchScores
from anomalens.methods.padim import PaDiM
from anomalens.methods.patchcore import PatchCore

METHODS: dict[str, type[Method]] = {
    AnomalyDINO.name: AnomalyDINO,
    PatchCore.name: PatchCore,
    PaDiM.name: PaDiM,
    AutoencoderMethod.name: AutoencoderMethod,
}


def create_method(name: str, **params: object) -> Method:
    """An unfitted method `name` configured with `params`."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose from {sorted(METHODS)}")
    return METHODS[name](**params)


__all__ = ["METHODS", "Method", "PatchScores", "create_method"]
