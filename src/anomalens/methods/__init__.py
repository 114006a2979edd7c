"""Registry of anomaly detection methods."""

import inspect

from anomalens.errors import ConfigError
from anomalens.methods.anomalydino import AnomalyDINO
from anomalens.methods.autoencoder import AutoencoderMethod
from anomalens.methods.base import Method, PatchScores
from anomalens.methods.discriminator import Discriminator
from anomalens.methods.efficientad import EfficientAD
from anomalens.methods.ensemble import Ensemble
from anomalens.methods.fanogan import FAnoGAN
from anomalens.methods.fastflow import FastFlow
from anomalens.methods.feature_autoencoder import FeatureAutoencoderMethod
from anomalens.methods.gaussian import ImageGaussian
from anomalens.methods.padim import PaDiM
from anomalens.methods.patchcore import PatchCore
from anomalens.methods.stfpm import STFPM

METHODS: dict[str, type[Method]] = {
    AnomalyDINO.name: AnomalyDINO,
    PatchCore.name: PatchCore,
    PaDiM.name: PaDiM,
    AutoencoderMethod.name: AutoencoderMethod,
    Discriminator.name: Discriminator,
    Ensemble.name: Ensemble,
    ImageGaussian.name: ImageGaussian,
    FeatureAutoencoderMethod.name: FeatureAutoencoderMethod,
    FastFlow.name: FastFlow,
    STFPM.name: STFPM,
    FAnoGAN.name: FAnoGAN,
    EfficientAD.name: EfficientAD,
}


def create_method(name: str, **params: object) -> Method:
    """An unfitted method `name` configured with `params`; a ConfigError names an unknown
    method or option and what it accepts."""
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; choose from {sorted(METHODS)}")
    accepted = inspect.signature(METHODS[name]).parameters
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ConfigError(f"{name} has no option {', '.join(unknown)}; it takes {sorted(accepted)}")
    return METHODS[name](**params)


__all__ = ["METHODS", "Method", "PatchScores", "create_method"]
