"""Write files so a crash never leaves a half-written output behind."""

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def sync_to_disk(path: Path) -> None:
    """Make the file's content durable, so that a rename after it never reveals it half-written
    after a power loss."""
    with open(path, "rb") as file:
        os.fsync(file.fileno())


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_path)`, sync it to disk, then atomically rename it to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        sync_to_disk(tmp)
        tmp.chmod(0o644)  # mkstemp creates 0600; outputs are meant to be shared
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Atomically write `data` to `path`."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_text(path: str | Path, text: str) -> Path:
    """Atomically write `text` (UTF-8) to `path`."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | Path, data: Any) -> Path:
    """Atomically write `data` as indented JSON."""
    return write_text(path, json.dumps(data, indent=2) + "\n")
