"""The server's SQLite file: model metadata, the inspection log, pictures and example thumbnails."""

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

FILE = "anomalens.sqlite3"
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
CREATE TABLE IF NOT EXISTS pictures (
    inspection INTEGER PRIMARY KEY,
    mask BLOB NOT NULL,
    overlay BLOB,
    embeddings BLOB
);
CREATE TABLE IF NOT EXISTS examples (
    model TEXT NOT NULL,
    type TEXT NOT NULL,
    position INTEGER NOT NULL,
    name TEXT NOT NULL,
    thumbnail BLOB NOT NULL,
    PRIMARY KEY (model, type, position)
);
CREATE INDEX IF NOT EXISTS inspections_by_model ON inspections (model, id);
"""
ADDED_COLUMNS = {
    "inspections": {
        "batch": "TEXT NOT NULL DEFAULT ''",
        "threshold": "REAL",
        "width": "INTEGER",
        "height": "INTEGER",
    }
}
"""Columns added after the first release, added to older files when they are opened."""


class Database:
    """The SQLite file at `path`, created or brought up to date when opened."""

    def __init__(self, path: Path):
        self.path = path
        with self.connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
            for table, columns in ADDED_COLUMNS.items():
                present = {row["name"] for row in db.execute(f"PRAGMA table_info({table})")}
                for column, declaration in columns.items():
                    if column not in present:
                        db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
            db.execute("CREATE INDEX IF NOT EXISTS inspections_by_batch ON inspections (batch)")

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A connection committed on success (rolled back on an error) and closed afterwards."""
        with closing(sqlite3.connect(self.path, timeout=30)) as db:
            db.row_factory = sqlite3.Row
            with db:
                yield db
