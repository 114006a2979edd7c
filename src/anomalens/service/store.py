"""The models directory: fitted detectors, their metadata and the inspection log.

Layout: `ROOT/models/<name>/` holds each detector as `Detector.save` writes it, and
`ROOT/anomalens.sqlite3` holds the metadata of every model and the inspection log. Every
method is safe to call from many threads; each model has its own lock, held while it is used.
"""

import json
import os
import re
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from anomalens.detector import Detector
from anomalens.results import Result
from anomalens.service.errors import Conflict, NotFound, ServiceError

DATABASE = "anomalens.sqlite3"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    name TEXT PRIMARY KEY,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    summary TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS inspections (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    model TEXT NOT NULL,
    filename TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    score REAL NOT NULL,
    verdict TEXT NOT NULL,
    boxes TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS inspections_by_model ON inspections (model, id);
"""


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
    """Fitted detectors under `root`, their metadata and the inspection log (see module doc)."""

    def __init__(self, root: Path):
        self.root = root
        self.models_dir = root / "models"
        self.models_dir.mkdir(parents=True, exist_ok=True)
        self._database = root / DATABASE
        self._lock = threading.Lock()
        self._model_locks: dict[str, threading.Lock] = {}
        self._detectors: dict[str, Detector] = {}
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)

    def describe_all(self) -> list[dict[str, Any]]:
        """Every model's description, by name."""
        with self._connect() as db:
            rows = db.execute("SELECT * FROM models ORDER BY name").fetchall()
        return [_description(row) for row in rows]

    def count(self) -> int:
        """How many models are stored."""
        with self._connect() as db:
            return db.execute("SELECT COUNT(*) FROM models").fetchone()[0]

    def describe(self, name: str) -> dict[str, Any]:
        """Model `name`'s description: configuration, thresholds, references, defect types."""
        with self._connect() as db:
            row = db.execute("SELECT * FROM models WHERE name = ?", (check_name(name),)).fetchone()
        if row is None:
            raise NotFound(f"no model named {name!r}")
        return _description(row)

    def require(self, name: str) -> None:
        """Raise NotFound unless model `name` is stored (ServiceError for an invalid name)."""
        if not self.exists(check_name(name)):
            raise NotFound(f"no model named {name!r}")

    def exists(self, name: str) -> bool:
        """Whether a model `name` is stored."""
        with self._connect() as db:
            return db.execute("SELECT 1 FROM models WHERE name = ?", (name,)).fetchone() is not None

    def add(self, name: str, detector: Detector) -> dict[str, Any]:
        """Save fitted `detector` as model `name` (Conflict if taken); return its description."""
        check_name(name)
        with self._lock:
            if self.exists(name):
                raise Conflict(f"a model named {name!r} already exists")
            detector.save(self.models_dir / name)
            now = _now()
            with self._connect() as db:
                db.execute(
                    "INSERT INTO models VALUES (?, ?, ?, ?)",
                    (name, now, now, json.dumps(_summary(detector))),
                )
            self._detectors[name] = detector
        return self.describe(name)

    @contextmanager
    def use(self, name: str) -> Iterator[Detector]:
        """Model `name`'s detector, loaded on first use, with the model's lock held."""
        with self._model_lock(name):
            if name not in self._detectors:
                if not self.exists(name):
                    raise NotFound(f"no model named {name!r}")
                self._detectors[name] = Detector.load(self.models_dir / name)
            yield self._detectors[name]

    def update(self, name: str, detector: Detector) -> dict[str, Any]:
        """Save `detector`, changed while `use(name)` is held, over model `name`."""
        detector.save(self.models_dir / name)
        with self._connect() as db:
            db.execute(
                "UPDATE models SET updated = ?, summary = ? WHERE name = ?",
                (_now(), json.dumps(_summary(detector)), name),
            )
        return self.describe(name)

    def delete(self, name: str) -> None:
        """Remove model `name`, waiting for work in progress on it; the log keeps its entries."""
        with self._model_lock(name), self._lock:
            with self._connect() as db:
                db.execute("DELETE FROM models WHERE name = ?", (name,))
            self._detectors.pop(name, None)
            self._model_locks.pop(name, None)
            trash = Path(tempfile.mkdtemp(dir=self.models_dir, prefix=f".{name}.deleted."))
            if (self.models_dir / name).exists():
                os.replace(self.models_dir / name, trash / "model")
            shutil.rmtree(trash)

    def log(self, model: str, inspected: list[tuple[str, str, Result]]) -> None:
        """Record inspections by `model` of (file name, image SHA-256, result): time, score,
        verdict and boxes."""
        now = _now()
        rows = [
            (now, model, filename, sha256, float(result.score), result.verdict, _boxes(result))
            for filename, sha256, result in inspected
        ]
        with self._connect() as db:
            db.executemany(
                "INSERT INTO inspections (time, model, filename, sha256, score, verdict, boxes)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def inspections(self, limit: int, model: str | None = None) -> list[dict[str, Any]]:
        """The `limit` most recent inspections, newest first, of one `model` or all."""
        query, arguments = "SELECT * FROM inspections", ()
        if model is not None:
            query, arguments = f"{query} WHERE model = ?", (model,)
        with self._connect() as db:
            rows = db.execute(f"{query} ORDER BY id DESC LIMIT ?", (*arguments, limit)).fetchall()
        return [{**dict(row), "boxes": json.loads(row["boxes"])} for row in rows]

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection committed on success and closed afterwards."""
        with closing(sqlite3.connect(self._database, timeout=30)) as db:
            db.row_factory = sqlite3.Row
            with db:
                yield db

    def _model_lock(self, name: str) -> threading.Lock:
        with self._lock:
            self.require(name)
            return self._model_locks.setdefault(name, threading.Lock())


def _summary(detector: Detector) -> dict[str, Any]:
    config = detector.config()
    return {
        "method": config["method"],
        "backbone": config["method_params"].get("backbone"),
        "resolution": config["method_params"].get("resolution"),
        "references": len(detector.references),
        "reference_outliers": detector.reference_outliers,
        "defect_types": detector.defect_types.names,
        "thresholds": detector.threshold_dicts(),
        "config": config,
    }


def _description(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "name": row["name"],
        "created": row["created"],
        "updated": row["updated"],
        **json.loads(row["summary"]),
    }


def _boxes(result: Result) -> str:
    return json.dumps([box.to_dict() for box in result.boxes])


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
