"""Read weight files safely, find Hugging Face snapshots, and install files people supply or
fetch (`anomalens weights import` / `fetch`) after checking them; nothing downloads unasked."""

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import safetensors.torch
import torch
from torch import nn

from anomalens.backbones.weights import find_file, install_path, known_sha256, sha256
from anomalens.errors import AnomalensError, MissingWeightsError
from anomalens.io.atomic import atomic_write

if TYPE_CHECKING:
    from anomalens.backbones import BackboneEntry


class WeightsFileError(AnomalensError):
    """A weights file exists but does not hold the weights expected; names the file."""


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a PyTorch checkpoint (read with weights_only) or a safetensors file."""
    try:
        if path.suffix == ".safetensors":
            return safetensors.torch.load_file(path)
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise WeightsFileError(f"{path}: not a readable weights file ({error})") from error
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsFileError(f"{path}: expected a state dict (names -> tensors)")
    return state


def read_huggingface_folder(folder: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(config.json, tensors of every *.safetensors file) of a Hugging Face model folder."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as error:
        raise WeightsFileError(f"{folder}: no readable config.json ({error})") from error
    state: dict[str, torch.Tensor] = {}
    for file in sorted(folder.glob("*.safetensors")):
        state |= read_state_dict(file)
    return config, state


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """Copy `state` into `model`; a WeightsFileError names `path` and the keys that differ."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(
        key for key in set(expected) & set(state) if expected[key].shape != state[key].shape
    )
    if missing or unexpected or wrong_shape:
        raise WeightsFileError(
            f"{path}: does not fit {type(model).__name__}: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}, wrong shape {wrong_shape[:5]}"
        )
    model.load_state_dict(state)


def huggingface_cache() -> Path:
    """The Hugging Face hub cache folder, as the huggingface_hub library resolves it."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    hf_home = os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")
    return Path(hf_home) / "hub"


def huggingface_snapshot(repo: str) -> Path | None:
    """The cached snapshot folder of `repo` (e.g. "facebook/dinov2-small") holding config.json
    and safetensors weights: the revision refs/main names, else the newest such; None if none."""
    model_dir = huggingface_cache() / ("models--" + repo.replace("/", "--"))
    snapshots = model_dir / "snapshots"
    main = model_dir / "refs" / "main"
    preferred = [snapshots / main.read_text().strip()] if main.is_file() else []
    newest = []
    if snapshots.is_dir():
        newest = sorted(snapshots.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
    for snapshot in preferred + newest:
        if (snapshot / "config.json").is_file() and any(snapshot.glob("*.safetensors")):
            return snapshot
    return None


def locate_weights(
    backbone: str,
    filenames: list[str],
    explicit: str | Path | None,
    url: str | None,
    huggingface_repo: str | None = None,
) -> Path:
    """Existing weights of `backbone`; never downloads.

    Args:
        backbone: registry name, for messages.
        filenames: file (or folder) names looked for in `search_dirs()`; the first is the one
            `anomalens weights import` and `fetch` install.
        explicit: a path (the only place looked at), or None to search.
        url: where the first of `filenames` can be downloaded from; None if nowhere public.
        huggingface_repo: Hugging Face model whose cached snapshot is also accepted.
    """
    try:
        return find_file(backbone, filenames, explicit)
    except MissingWeightsError as error:
        if explicit is not None:
            raise
        snapshot = huggingface_snapshot(huggingface_repo) if huggingface_repo else None
        if snapshot is not None:
            return snapshot
        hints = [str(error)]
        if huggingface_repo:
            hints.append(
                f"Also looked for the Hugging Face model {huggingface_repo} in "
                f"{huggingface_cache()}; a folder with its config.json and model.safetensors "
                f"works too (--weights FOLDER)."
            )
        if url:
            hints.append(
                f"On a machine with internet, `anomalens weights fetch {backbone}` downloads "
                f"{url} and checks it."
            )
        raise MissingWeightsError("\n".join(hints)) from None


def verified(entry: "BackboneEntry", path: Path) -> str:
    """The file's SHA-256, after checking it against the digest its registered name carries
    (torch hub's `name-<sha256 prefix>.pth`) and that it builds `entry`'s backbone; a
    WeightsFileError names the file and what is wrong."""
    if not path.is_file():
        raise WeightsFileError(f"{path}: no such file")
    digest = sha256(path)
    known = known_sha256(entry.filename)
    if known and not digest.startswith(known):
        raise WeightsFileError(
            f"{path}: sha256 {digest} does not match {entry.filename}'s {known}...; "
            "not the registered file, or damaged"
        )
    entry.build(path)
    return digest


def import_weights(entry: "BackboneEntry", source: Path) -> tuple[Path, str]:
    """Check `source` (see `verified`) and copy it, atomically, into the first weights folder
    searched (`install_path`); returns (where it went, its SHA-256)."""
    digest = verified(entry, source)
    target = atomic_write(install_path(entry.filename), lambda tmp: shutil.copyfile(source, tmp))
    return target, digest


def fetch_weights(
    entry: "BackboneEntry",
    download: Callable[[str, str], None] = torch.hub.download_url_to_file,
) -> tuple[Path, str]:
    """Download `entry.url`, check it (see `verified`) and move it where `import_weights` puts
    it; returns (where it went, its SHA-256). `download(url, destination)` does the transfer."""
    if entry.url is None:
        raise MissingWeightsError(
            f"backbone {entry.name!r} has no public download ({entry.source}): get "
            f"{entry.filename} yourself, then `anomalens weights import {entry.name} FILE`"
        )
    target = install_path(entry.filename)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as folder:
        downloaded = Path(folder) / entry.filename
        try:
            download(entry.url, str(downloaded))
        except OSError as error:
            raise MissingWeightsError(f"{entry.url}: download failed ({error})") from error
        try:
            digest = verified(entry, downloaded)
        except WeightsFileError as error:
            raise WeightsFileError(f"downloaded from {entry.url}: {error}") from error
        os.replace(downloaded, target)
    return target, digest
