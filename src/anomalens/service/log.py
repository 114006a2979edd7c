"""The inspection log: every inspected image's result, kept pictures, grouped into batches.

Each request's images form one batch. Every entry keeps its score, the image threshold it was
judged against, its verdict, boxes, mask PNG and box embeddings (for relabelling); overlay PNGs
are kept for the newest entries up to `kept_overlay_bytes` together, older ones are dropped.
"""

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np

from anomalens.defect_types.registry import DefectTypes
from anomalens.results import Result
from anomalens.service import labels
from anomalens.service.database import Database
from anomalens.service.errors import NotFound
from anomalens.service.limits import MEBIBYTE

KEPT_OVERLAY_BYTES = 512 * MEBIBYTE
COLUMNS = (
    "id, time, model, batch, filename, sha256, score, threshold, verdict, boxes, width, height,"
    " overlay IS NOT NULL AS has_overlay, mask IS NOT NULL AS has_mask"
)


@dataclass
class Inspected:
    """One image's inspection, as the log records it."""

    filename: str
    sha256: str
    result: Result
    threshold: float
    mask_png: bytes
    overlay_png: bytes | None
    embeddings: np.ndarray | None


class InspectionLog:
    """The log in `database` (see module doc)."""

    def __init__(self, database: Database, kept_overlay_bytes: int = KEPT_OVERLAY_BYTES):
        self.database = database
        self.kept_overlay_bytes = kept_overlay_bytes

    def record(self, model: str, inspected: list[Inspected]) -> tuple[str, list[int]]:
        """Log one batch of `model`'s inspections; return the batch id and the entries' ids."""
        batch, now, ids = uuid.uuid4().hex, _now(), []
        with self.database.connect() as db:
            for item in inspected:
                result = item.result
                height, width = result.mask.shape
                row = (now, model, batch, item.filename, item.sha256, float(result.score))
                row += (item.threshold, result.verdict, _boxes(result), width, height)
                cursor = db.execute(
                    "INSERT INTO inspections (time, model, batch, filename, sha256, score,"
                    " threshold, verdict, boxes, width, height)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
                ids.append(cursor.lastrowid)
                embeddings = None if item.embeddings is None else labels.to_bytes(item.embeddings)
                db.execute(
                    "INSERT INTO pictures VALUES (?, ?, ?, ?)",
                    (cursor.lastrowid, item.mask_png, item.overlay_png, embeddings),
                )
            self._drop_old_overlays(db)
        return batch, ids

    def entries(
        self, limit: int, model: str | None = None, batch: str | None = None
    ) -> list[dict[str, Any]]:
        """The `limit` most recent entries, newest first, of one `model` or all; or one
        `batch`'s entries in upload order."""
        query = f"SELECT {COLUMNS} FROM inspections LEFT JOIN pictures ON inspection = id"
        if batch is not None:
            query, arguments = f"{query} WHERE batch = ? ORDER BY id LIMIT ?", (batch, limit)
        elif model is not None:
            query, arguments = f"{query} WHERE model = ? ORDER BY id DESC LIMIT ?", (model, limit)
        else:
            query, arguments = f"{query} ORDER BY id DESC LIMIT ?", (limit,)
        with self.database.connect() as db:
            rows = db.execute(query, arguments).fetchall()
        if batch is not None and not rows:
            raise NotFound(f"no inspection batch {batch!r}")
        return [_entry(row) for row in rows]

    def picture(self, inspection: int, kind: Literal["mask", "overlay"]) -> bytes:
        """The mask or overlay PNG of entry `inspection`; NotFound when it is not kept."""
        with self.database.connect() as db:
            row = db.execute(
                f"SELECT {kind} FROM pictures WHERE inspection = ?", (inspection,)
            ).fetchone()
        if row is None or row[0] is None:
            raise NotFound(f"the {kind} of inspection {inspection} is not kept")
        return row[0]

    def relabel(self, model: str, types: DefectTypes) -> int:
        """Give every logged box of `model` the defect type `types` give it now; return how
        many entries changed. Entries whose embeddings do not fit the types' (a model
        replaced by one on another backbone) keep their labels."""
        size = next((len(rows[0]) for rows in types.examples.values()), None)
        with self.database.connect() as db:
            rows = db.execute(
                "SELECT id, boxes, embeddings FROM inspections JOIN pictures ON inspection = id"
                " WHERE model = ? AND embeddings IS NOT NULL",
                (model,),
            ).fetchall()
            changed = []
            for row in rows:
                boxes = json.loads(row["boxes"])
                embeddings = labels.from_bytes(row["embeddings"], len(boxes))
                if size is not None and embeddings.shape[1] != size:
                    continue
                now = labels.relabelled(types, boxes, embeddings)
                if now != boxes:
                    changed.append((json.dumps(now), row["id"]))
            db.executemany("UPDATE inspections SET boxes = ? WHERE id = ?", changed)
        return len(changed)

    def _drop_old_overlays(self, db) -> None:
        """Drop the overlays beyond the newest `kept_overlay_bytes` of them."""
        rows = db.execute(
            "SELECT inspection, length(overlay) FROM pictures WHERE overlay IS NOT NULL"
            " ORDER BY inspection DESC"
        ).fetchall()
        total, dropped = 0, []
        for inspection, size in rows:
            total += size
            if total > self.kept_overlay_bytes:
                dropped.append((inspection,))
        db.executemany("UPDATE pictures SET overlay = NULL WHERE inspection = ?", dropped)


def _entry(row) -> dict[str, Any]:
    entry = dict(row)
    entry["boxes"] = json.loads(entry["boxes"])
    entry["has_overlay"], entry["has_mask"] = bool(entry["has_overlay"]), bool(entry["has_mask"])
    return entry


def _boxes(result: Result) -> str:
    return json.dumps([box.to_dict() for box in result.boxes])


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
