"""The models folder: fitted detectors and their metadata.

Layout: `ROOT/<name>/` holds each detector as `Detector.save` (or `anomalens fit`) writes it,
and `ROOT/anomalens.sqlite3` the metadata of every model, the inspection log (see `log.py`) and
defect-type example thumbnails. A model folder put into ROOT by hand, or saved by a server that
was killed before it recorded it, is found and listed (`discover`); one that cannot be loaded
is listed in `skipped` with the reason. Every method is safe to call from many threads; each
model has its own lock, held while it is used.
"""

import json
import os
import re
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from anomalens.detector import Detector
from anomalens.errors import AnomalensError
from anomalens.persistence import ARRAYS_FILE, CONFIG_FILE
from anomalens.service.database import FILE, Database
from anomalens.service.errors import Conflict, NotFound, ServiceError
from anomalens.visualize import png_bytes

LEGACY_FOLDER = "models"
"""Where servers before this layout kept the models, inside the folder they were given."""
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
THUMBNAIL_SIDE = 160
"""Longest side of a defect-type example's thumbnail, in pixels."""


def check_name(name: str, what: str = "model name") -> str:
    """Return `name` if it is 1-64 letters, digits, '_', '.' or '-' starting with a letter or
    digit (so it is a safe file name and URL segment); else raise ServiceError."""
    if not NAME_PATTERN.fullmatch(name):
        raise ServiceError(
            f"invalid {what} {name!r}: use 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return name


class ModelStore:
    """Fitted detectors in folder `root` and their metadata (see module doc)."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.database = Database(root / FILE)
        self._lock = threading.Lock()
        self._model_locks: dict[str, threading.Lock] = {}
        self._detectors: dict[str, Detector] = {}
        self._stamps: dict[str, int] = {}
        self._skipped: dict[str, tuple[int, str]] = {}
        self._move_legacy_models()
        self.discover()

    def describe_all(self) -> list[dict[str, Any]]:
        """Every model's description, by name, after looking for new model folders."""
        self.discover()
        with self.database.connect() as db:
            rows = db.execute("SELECT * FROM models ORDER BY name").fetchall()
        return [_description(row) for row in rows]

    def count(self) -> int:
        """How many models are stored."""
        with self.database.connect() as db:
            return db.execute("SELECT COUNT(*) FROM models").fetchone()[0]

    def describe(self, name: str) -> dict[str, Any]:
        """Model `name`'s description: configuration, thresholds, references, defect types."""
        self.require(name)
        with self.database.connect() as db:
            row = db.execute("SELECT * FROM models WHERE name = ?", (name,)).fetchone()
        if row is None:  # deleted meanwhile
            raise NotFound(f"no model named {name!r}")
        return _description(row)

    def require(self, name: str) -> None:
        """Raise NotFound unless model `name` is stored, or its folder was just put into the
        models folder (ServiceError for an invalid name)."""
        if not self.exists(check_name(name)):
            self.discover()
            if not self.exists(name):
                raise NotFound(f"no model named {name!r}")

    def exists(self, name: str) -> bool:
        """Whether a model `name` is stored."""
        with self.database.connect() as db:
            return db.execute("SELECT 1 FROM models WHERE name = ?", (name,)).fetchone() is not None

    def skipped(self) -> list[dict[str, str]]:
        """Folders in the models folder that look like models but cannot be used, and why."""
        with self._lock:
            return [{"folder": name, "problem": why} for name, (_, why) in self._skipped.items()]

    def discover(self) -> None:
        """Record every model folder in `root` that has no metadata yet (copied in by hand, or
        saved by a server killed before it recorded it) and forget models whose folder is gone.

        A folder is loaded once to check it; one that fails is listed in `skipped` and tried
        again only when its files change.
        """
        with self.database.connect() as db:
            known = {row["name"] for row in db.execute("SELECT name FROM models")}
        folders = {path.name: path for path in self.root.iterdir() if _looks_like_model(path)}
        with self._lock:
            self._skipped = {k: v for k, v in self._skipped.items() if k in folders}
            tried = dict(self._skipped)
        for name, folder in sorted(folders.items()):
            stamp = _stamp(folder)
            if name in known or tried.get(name, (None,))[0] == stamp:
                continue
            try:
                check_name(name, "model folder name")
                detector = Detector.load(folder)
            except AnomalensError as error:
                with self._lock:
                    self._skipped[name] = (stamp, str(error))
                continue
            with self._lock:
                self._skipped.pop(name, None)
                if not self.exists(name):
                    created = datetime.fromtimestamp(stamp / 1e9, UTC)
                    self._record(name, detector, created.isoformat(timespec="milliseconds"))
        for name in known - folders.keys():
            self._forget_if_idle(name)

    def add(self, name: str, detector: Detector) -> dict[str, Any]:
        """Save fitted `detector` as model `name` (Conflict if taken); return its description."""
        check_name(name)
        with self._lock:
            if self.exists(name) or (self.root / name).exists():
                raise Conflict(f"a model named {name!r} already exists")
            detector.save(self.root / name)
            self._record(name, detector, _now())
        return self.describe(name)

    @contextmanager
    def use(self, name: str) -> Iterator[Detector]:
        """Model `name`'s detector, loaded on first use (and again when its files were changed
        by hand), with the model's lock held."""
        with self._model_lock(name):
            if not self.exists(name):  # deleted while this waited for the lock
                raise NotFound(f"no model named {name!r}")
            folder = self.root / name
            if name not in self._detectors or self._stamps.get(name) != _stamp(folder):
                self._detectors[name] = Detector.load(folder)
                self._stamps[name] = _stamp(folder)
                self._write_summary(name, self._detectors[name])
            yield self._detectors[name]

    def update(self, name: str, detector: Detector) -> dict[str, Any]:
        """Save `detector`, changed while `use(name)` is held, over model `name`."""
        detector.save(self.root / name)
        self._stamps[name] = _stamp(self.root / name)
        self._write_summary(name, detector)
        return self.describe(name)

    def delete(self, name: str) -> None:
        """Remove model `name`, waiting for work in progress on it; the log keeps its entries."""
        with self._model_lock(name), self._lock:
            with self.database.connect() as db:
                db.execute("DELETE FROM models WHERE name = ?", (name,))
                db.execute("DELETE FROM examples WHERE model = ?", (name,))
            self._detectors.pop(name, None)
            self._model_locks.pop(name, None)
            trash = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{name}.deleted."))
            if (self.root / name).exists():
                os.replace(self.root / name, trash / "model")
            shutil.rmtree(trash)

    def add_thumbnails(
        self, model: str, defect_type: str, start: int, named: list[tuple[str, np.ndarray]]
    ) -> None:
        """Keep a thumbnail of each (name, image) example of `defect_type`, numbered from
        `start` (the type's examples before them)."""
        rows = [
            (model, defect_type, start + i, name, png_bytes(_thumbnail(image)))
            for i, (name, image) in enumerate(named)
        ]
        with self.database.connect() as db:
            db.executemany("INSERT OR REPLACE INTO examples VALUES (?, ?, ?, ?, ?)", rows)

    def remove_thumbnails(self, model: str, defect_type: str) -> None:
        """Forget the example thumbnails of `defect_type`."""
        with self.database.connect() as db:
            db.execute("DELETE FROM examples WHERE model = ? AND type = ?", (model, defect_type))

    def thumbnail(self, model: str, defect_type: str, position: int) -> bytes:
        """The PNG thumbnail of example `position` of `defect_type`, or NotFound (examples
        added outside the server have none)."""
        with self.database.connect() as db:
            row = db.execute(
                "SELECT thumbnail FROM examples WHERE model = ? AND type = ? AND position = ?",
                (model, defect_type, position),
            ).fetchone()
        if row is None:
            raise NotFound(f"no thumbnail of example {position} of {model!r}/{defect_type!r}")
        return row["thumbnail"]

    def _record(self, name: str, detector: Detector, created: str) -> None:
        """Insert model `name`'s metadata (with `self._lock` held) and keep its detector."""
        with self.database.connect() as db:
            db.execute(
                "INSERT INTO models VALUES (?, ?, ?, ?)",
                (name, created, _now(), json.dumps(_summary(detector))),
            )
        self._detectors[name] = detector
        self._stamps[name] = _stamp(self.root / name)

    def _write_summary(self, name: str, detector: Detector) -> None:
        """Record `detector`'s summary as model `name`'s, when it changed."""
        summary = json.dumps(_summary(detector))
        with self.database.connect() as db:
            db.execute(
                "UPDATE models SET updated = ?, summary = ? WHERE name = ? AND summary != ?",
                (_now(), summary, name, summary),
            )

    def _forget_if_idle(self, name: str) -> None:
        """Drop the metadata of model `name`, whose folder is gone, unless it is in use (a save
        replacing the folder holds the model's lock)."""
        with self._lock:
            lock = self._model_locks.setdefault(name, threading.Lock())
            if not lock.acquire(blocking=False):
                return
            try:
                if not (self.root / name).exists():
                    with self.database.connect() as db:
                        db.execute("DELETE FROM models WHERE name = ?", (name,))
                    self._detectors.pop(name, None)
                    self._model_locks.pop(name, None)
            finally:
                lock.release()

    def _move_legacy_models(self) -> None:
        """Move models from ROOT/models/, where earlier servers kept them, into ROOT itself."""
        legacy = self.root / LEGACY_FOLDER
        if not legacy.is_dir() or _looks_like_model(legacy):
            return
        for folder in legacy.iterdir():
            if _looks_like_model(folder) and not (self.root / folder.name).exists():
                os.replace(folder, self.root / folder.name)
        if not any(legacy.iterdir()):
            legacy.rmdir()

    def _model_lock(self, name: str) -> threading.Lock:
        self.require(name)  # outside self._lock: it may discover, which takes it
        with self._lock:
            return self._model_locks.setdefault(name, threading.Lock())


def _summary(detector: Detector) -> dict[str, Any]:
    config = detector.config()
    types = detector.defect_types
    return {
        "method": config["method"],
        "backbone": config["method_params"].get("backbone"),
        "resolution": config["method_params"].get("resolution"),
        "references": len(detector.references),
        "reference_outliers": detector.reference_outliers,
        "defect_types": types.names,
        "defect_examples": {name: types.sources[name] for name in types.names},
        "thresholds": detector.threshold_dicts(),
        "retargetable": bool(detector.held_out_scores and detector.held_out_map_maxima),
        "config": config,
    }


def _description(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "name": row["name"],
        "created": row["created"],
        "updated": row["updated"],
        **json.loads(row["summary"]),
    }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _looks_like_model(path: Path) -> bool:
    """Whether `path` is a visible folder holding a model's files (or one of them)."""
    if path.name.startswith(".") or not path.is_dir():
        return False
    return (path / CONFIG_FILE).exists() or (path / ARRAYS_FILE).exists()


def _stamp(folder: Path) -> int:
    """When the model files in `folder` last changed (nanoseconds), 0 when they are missing."""
    try:
        return max((folder / file).stat().st_mtime_ns for file in (CONFIG_FILE, ARRAYS_FILE))
    except OSError:
        return 0


def _thumbnail(image: np.ndarray) -> np.ndarray:
    picture = Image.fromarray(image)
    picture.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    return np.asarray(picture)
