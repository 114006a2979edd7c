"""Registry of pretrained backbones; each turns an image batch into feature maps."""

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from anomalens.backbones.base import Backbone
from anomalens.backbones.weights import install_path, sha256
from anomalens.errors import ConfigError, MissingWeightsError


@dataclass(frozen=True)
class BackboneEntry:
    """How to find and build one backbone.

    Attributes:
        name: registry name.
        source: where the weights come from, for people.
        locate: weights path or None -> existing weights file or directory (MissingWeightsError).
        build: weights file or directory -> Backbone in eval mode.
        filename: the file name `locate` looks for in the weights folders, where
            `anomalens weights import` and `fetch` put the file.
        url: where the file can be downloaded from; None if nowhere public.
    """

    name: str
    source: str
    locate: Callable[[str | Path | None], Path]
    build: Callable[[Path], Backbone]
    filename: str
    url: str | None = None


_REGISTRY: dict[str, BackboneEntry] = {}


def register(entry: BackboneEntry) -> None:
    """Add a backbone to the registry."""
    _REGISTRY[entry.name] = entry


def backbone_names() -> list[str]:
    """Names of every registered backbone."""
    return sorted(_REGISTRY)


def get_entry(name: str) -> BackboneEntry:
    """The registry entry for `name`, or a ConfigError listing the valid names."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown backbone {name!r}; choose from {backbone_names()}")
    return _REGISTRY[name]


@functools.lru_cache(maxsize=4)
def load_backbone(name: str, weights: str | None = None) -> Backbone:
    """Build backbone `name` with its pretrained weights, frozen, in eval mode (cached)."""
    entry = get_entry(name)
    model = entry.build(entry.locate(weights))
    model.eval().requires_grad_(False)
    return model


def weights_status() -> list[dict[str, object]]:
    """For each backbone: name, whether its weights are here, their source, and their path and
    sha256, or for missing ones where `anomalens weights import` would put them ("target") and
    whether `weights fetch` can download them ("fetchable")."""
    rows = []
    for name in backbone_names():
        entry = _REGISTRY[name]
        try:
            path = entry.locate(None)
        except MissingWeightsError:
            target = str(install_path(entry.filename))
            missing = {"available": False, "target": target, "fetchable": entry.url is not None}
            rows.append({"name": name, "source": entry.source, **missing})
            continue
        rows.append(
            {
                "name": name,
                "available": True,
                "source": entry.source,
                "path": str(path),
                "sha256": sha256(path),
            }
        )
    return rows


from anomalens.backbones import (  # noqa: E402  (each module registers itself)
    dinov2,  # noqa: F401
    dinov3,  # noqa: F401
    efficientnet_lite,  # noqa: F401
    inception,  # noqa: F401
    wide_resnet,  # noqa: F401
)

__all__ = ["Backbone", "BackboneEntry", "backbone_names", "load_backbone", "register"]
