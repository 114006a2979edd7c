"""Registry of pretrained backbones; each turns an image batch into feature maps."""

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


Substitute = Callable[[Backbone, str | None], Any]
"""(torch backbone, its weights setting) -> what feature extractors call instead of it."""
_substitute: ContextVar[Substitute | None] = ContextVar("backbone_substitute", default=None)


@contextmanager
def substituted_backbones(substitute: Substitute) -> Iterator[None]:
    """Within this block, `load_backbone` returns `substitute(backbone, weights)`: an exported
    graph in another runtime, or the backbone on another device. Every feature extractor built
    inside it (a model being loaded, the fresh copies a fit makes) keeps what it was given."""
    token = _substitute.set(substitute)
    try:
        yield
    finally:
        _substitute.reset(token)


def load_backbone(name: str, weights: str | None = None) -> Backbone:
    """Backbone `name` with its pretrained weights, frozen, in eval mode (cached), or what the
    enclosing `substituted_backbones` block puts in its place."""
    backbone = _torch_backbone(name, weights)
    substitute = _substitute.get()
    return backbone if substitute is None else substitute(backbone, weights)


@functools.lru_cache(maxsize=4)
def _torch_backbone(name: str, weights: str | None) -> Backbone:
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
