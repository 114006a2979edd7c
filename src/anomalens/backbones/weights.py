"""Find pretrained weight files on this machine, and say clearly where to put missing ones."""

import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path

from anomalens.errors import MissingWeightsError

WEIGHTS_DIR_ENV = "ANOMALENS_WEIGHTS_DIR"


def search_dirs() -> list[Path]:
    """Directories searched for weight files, in order."""
    dirs = []
    if os.environ.get(WEIGHTS_DIR_ENV):
        dirs.append(Path(os.environ[WEIGHTS_DIR_ENV]))
    home = Path.home()
    dirs.append(home / ".cache" / "anomalens" / "weights")
    torch_home = Path(os.environ.get("TORCH_HOME", home / ".cache" / "torch"))
    dirs.append(torch_home / "hub" / "checkpoints")
    return dirs


def install_path(filename: str) -> Path:
    """Where `anomalens weights import` and `fetch` put a file: the first folder searched."""
    return search_dirs()[0] / filename


def find_file(backbone: str, filenames: Iterable[str], explicit: str | Path | None = None) -> Path:
    """Return the first existing weights file for `backbone`.

    `explicit`, when given, is the only place looked at. Otherwise each of `filenames` is looked
    for in `search_dirs()`. Raises MissingWeightsError naming the places searched.
    """
    if explicit is not None:
        path = Path(explicit).expanduser()
        if path.exists():
            return path
        raise MissingWeightsError(
            f"weights for backbone {backbone!r} not found at {path}: pass an existing file"
        )
    names = list(filenames)
    candidates = [directory / name for directory in search_dirs() for name in names]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    looked = "\n  ".join(str(c) for c in candidates)
    raise MissingWeightsError(
        f"weights for backbone {backbone!r} are not on this machine. Looked in:\n  {looked}\n"
        f"Get {names[0]} and run `anomalens weights import {backbone} FILE` (it checks the "
        f"file and copies it to {install_path(names[0])}; {WEIGHTS_DIR_ENV} moves that folder), "
        "or pass "
        f"--weights PATH (Python: weights=PATH)."
    )


def known_sha256(filename: str) -> str | None:
    """The SHA-256 prefix a file name carries in torch hub's convention (`name-<hex>.pth`, as
    torchvision's and Meta's DINOv3 files are named), None if it carries none."""
    match = re.search(r"-([0-9a-f]{8,64})\.", filename)
    return match.group(1) if match else None


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file, or of every file under a directory in sorted order."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()
