"""Errors a user can act on: each names the file or thing at fault and the problem."""

from pathlib import Path


class AnomalensError(Exception):
    """Base class of every error anomalens raises on purpose."""


class ImageError(AnomalensError):
    """An input image cannot be used; names the file and the problem."""

    def __init__(self, source: str | Path, problem: str):
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")


class ConfigError(AnomalensError, ValueError):
    """A setting has a value it cannot take (an unknown method, backbone, level or option, or a
    number out of range); names the setting and the values it accepts."""


class DeviceError(ConfigError):
    """A device (or its provider in a runtime) this machine cannot use: the model is fine."""


class MissingWeightsError(AnomalensError):
    """Pretrained weights for a backbone are not on this machine."""


class ModelFileError(AnomalensError):
    """A saved detector cannot be read."""
