"""The output folder of a prediction: results streamed to an append-only log as they come,
results.json rebuilt from it, a rerun resumed, an earlier prediction replaced whole.

A prediction folder holds MANIFEST (what was predicted: the model's fingerprint, or the
zero-shot settings, and the inputs as given), LOG (one JSON record per image, appended and
synced to disk after that image's mask and overlay were written atomically, so a record always
has its files), RESULTS and COCO (written atomically from the log at the end), and masks/ and
overlays/. A kill loses only the images in flight; the last, half-written line of the log is
dropped on the next run.

Opening a folder:
- missing or empty: a new prediction streams into it;
- a prediction of the same model and inputs: resumed, the images already in its log skipped
  (images that failed are tried again);
- a prediction of anything else: replaced whole. The new one streams into a hidden sibling
  folder (resumed there if the run is interrupted), and only when it is complete does it take
  the old one's place (two renames; an interrupted swap is restored on the next run);
- anything else (no manifest, or files that predict does not write): refused, untouched.
The model folder, and any folder holding it, is never an output folder.
"""

import hashlib
import json
import os
import shutil
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from anomalens.batch.outcomes import Outcome
from anomalens.batch.sources import Item, unique_names
from anomalens.errors import AnomalensError
from anomalens.formats.coco import coco_document
from anomalens.io.atomic import write_bytes, write_json

FORMAT_VERSION = 1
MANIFEST = "prediction.json"
LOG = "results.jsonl"
RESULTS = "results.json"
COCO = "coco.json"
KNOWN_FILES = frozenset({MANIFEST, LOG, RESULTS, COCO, "report.html"})
"""Files a prediction folder may hold at its top (report.html: `anomalens report`'s default)."""
OUTPUT_FOLDERS = ("masks", "overlays")


class PredictionFolder:
    """Where a prediction's results go (see the module docstring).

    Args:
        path: the output folder.
        key: what is predicted (model fingerprint or zero-shot settings, and the inputs); a
            folder holding a prediction with the same key is resumed.
        protected: folders that must not be, hold, or lie inside the output folder (the model).

    Raises AnomalensError, with one clear line, for a folder it refuses or cannot write.
    """

    def __init__(self, path: Path, key: dict[str, Any], protected: Sequence[Path] = ()):
        self.path = path
        self.key = key
        target = path.resolve()
        for folder in protected:
            folder = folder.resolve()
            if target == folder or folder in target.parents or target in folder.parents:
                raise AnomalensError(
                    f"{path}: the output folder must not be, hold or lie inside {folder}"
                )
        try:
            _recover(path)
            self.work = self._open()
        except OSError as error:
            raise AnomalensError(f"{path}: cannot use the output folder ({error})") from None
        self.records = _read_log(self.work / LOG)
        try:
            self._log = open(self.work / LOG, "a", encoding="utf-8")  # noqa: SIM115 (kept open)
        except OSError as error:
            raise AnomalensError(
                f"{self.work / LOG}: cannot be written ({error.strerror})"
            ) from None

    @property
    def resumed(self) -> int:
        """Images already inspected when the folder was opened."""
        return sum("error" not in record for record in self.records.values())

    def pending(self, items: Iterable[Item]) -> list[Item]:
        """The items not yet inspected, each renamed where a name is already another source's
        in the log (a file added to a folder since the run this one resumes)."""
        done = {source for source, record in self.records.items() if "error" not in record}
        owner = {record["name"]: source for source, record in self.records.items()}
        items = list(items)
        taken = set(owner) | {item.name for item in items}
        left = []
        for item in items:
            if item.source in done:
                continue
            if owner.get(item.name, item.source) != item.source:
                [(_, name)] = unique_names([(item.source, item.name)], taken)
                taken.add(name)
                item = Item(item.source, name)
            left.append(item)
        return left

    def add(self, outcome: Outcome) -> dict[str, Any]:
        """Write an outcome's files atomically, then append its record to the log; a file that
        cannot be written makes the record an error. Returns the record logged."""
        record = outcome.record
        for relative, content in outcome.files().items():
            try:
                write_bytes(self.work / relative, content)
            except OSError as error:
                problem = f"{relative} cannot be written ({error.strerror or error})"
                record = {"path": record["path"], "name": record["name"], "error": problem}
                break
        try:
            self._log.write(json.dumps(record) + "\n")
            self._log.flush()
            os.fsync(self._log.fileno())
        except OSError as error:
            raise AnomalensError(f"{self.work / LOG}: cannot be written ({error})") from None
        self.records[record["path"]] = record
        return record

    def finish(
        self, model: dict[str, Any], defect_types: Sequence[str], skipped: list, coco: bool
    ) -> dict[str, Any]:
        """Write results.json (and coco.json, else remove a stale one) from the log, put a
        replacing prediction in place, and return the results document."""
        self._log.close()
        records = list(_read_log(self.work / LOG).values())
        images = [_entry(record) for record in records if "error" not in record]
        document = {
            "model": model,
            "images": images,
            "errors": [{"path": r["path"], "error": r["error"]} for r in records if "error" in r],
            "skipped": [passed.to_dict() for passed in skipped],
        }
        try:
            write_json(self.work / RESULTS, document)
            if coco:
                parts = [
                    {"file_name": r["path"], "score": r["score"], "verdict": r["verdict"]}
                    | {key: r["coco"][key] for key in ("width", "height", "annotations")}
                    for r in records
                    if "error" not in r
                ]
                write_json(self.work / COCO, coco_document(parts, defect_types))
            else:
                (self.work / COCO).unlink(missing_ok=True)
            if self.work != self.path:
                _swap(self.work, self.path)
        except OSError as error:
            raise AnomalensError(f"{self.path}: results cannot be written ({error})") from None
        return document

    def _open(self) -> Path:
        """The folder to stream into (see the module docstring)."""
        path = self.path
        if path.exists() and not path.is_dir():
            raise AnomalensError(f"{path}: exists and is not a folder")
        if not path.exists() or not any(path.iterdir()):
            return self._start(path)
        staging = staging_folder(path)
        if _prediction_key(path) == self.key:
            if staging.exists():  # a replacement abandoned for this prediction
                _prediction_key(staging)  # refuses a folder predict did not write
                shutil.rmtree(staging)
            return path
        if staging.exists():
            if _prediction_key(staging) == self.key:
                return staging
            shutil.rmtree(staging)
        return self._start(staging)

    def _start(self, folder: Path) -> Path:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            write_json(folder / MANIFEST, {"anomalens_prediction": FORMAT_VERSION, "key": self.key})
        except OSError as error:
            raise AnomalensError(
                f"{self.path}: cannot write the output folder ({error.strerror or error})"
            ) from None
        return folder


def staging_folder(path: Path) -> Path:
    """Where a prediction replacing the one at `path` is written until it is complete."""
    return _sibling(path, "predicting")


def fingerprint(folder: Path) -> str:
    """A hash of every file in `folder` (names and contents): which model a prediction used."""
    digest = hashlib.blake2b(digest_size=16)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(os.fsencode(path.relative_to(folder).as_posix()) + b"\0")
        with open(path, "rb") as file:
            for chunk in iter(lambda: file.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _prediction_key(folder: Path) -> Any:
    """The key in a prediction folder's manifest; AnomalensError for a folder that is not a
    prediction or holds files predict does not write."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        version = manifest["anomalens_prediction"]
        key = manifest["key"]
    except (OSError, ValueError, KeyError, TypeError):
        raise AnomalensError(
            f"{folder}: is not empty and holds no prediction ({MANIFEST}); choose a new or empty "
            "folder (predict replaces only a folder it wrote)"
        ) from None
    if version != FORMAT_VERSION:
        raise AnomalensError(f"{folder}: a prediction of format {version}; this one writes 1")
    foreign = [
        path.relative_to(folder).as_posix()
        for path in sorted(folder.rglob("*"))
        if not path.is_dir() and not _written_by_predict(path.relative_to(folder))
    ]
    if foreign:
        shown = ", ".join(foreign[:3]) + (
            f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        )
        raise AnomalensError(
            f"{folder}: holds files predict did not write ({shown}); move them or choose "
            "another folder"
        )
    return key


def _written_by_predict(relative: Path) -> bool:
    if len(relative.parts) == 1:
        return relative.name in KNOWN_FILES or _is_temporary(relative)
    return relative.parts[0] in OUTPUT_FOLDERS and (
        relative.suffix == ".png" or _is_temporary(relative)
    )


def _is_temporary(relative: Path) -> bool:
    """An atomic write's temporary file, left by a kill."""
    return relative.name.startswith(".") and relative.name.endswith(".tmp")


def _read_log(path: Path) -> dict[str, dict[str, Any]]:
    """The last record of each source in the log, in the order sources first appear; a last
    line cut short by a kill is dropped from the file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) < len(data):
        with open(path, "r+b") as file:
            file.truncate(len(complete))
    records: dict[str, dict[str, Any]] = {}
    for line in complete.splitlines():
        try:
            record = json.loads(line)
            records[record["path"]] = record
        except (ValueError, KeyError, TypeError):
            continue
    return records


def _entry(record: dict[str, Any]) -> dict[str, Any]:
    """A log record as its results.json entry."""
    return {key: value for key, value in record.items() if key not in ("name", "coco")}


def _sibling(path: Path, purpose: str) -> Path:
    return path.parent / f".{path.name}.{purpose}"


def _swap(staging: Path, path: Path) -> None:
    """Put the complete prediction `staging` in the place of `path` (see `_recover`)."""
    backup = _sibling(path, "replaced")
    os.replace(path, backup)
    os.replace(staging, path)
    shutil.rmtree(backup)


def _recover(path: Path) -> None:
    """Finish a swap a kill interrupted: restore the old prediction if it was moved aside and
    the new one not yet put in place, else remove the old one."""
    backup = _sibling(path, "replaced")
    if not backup.exists():
        return
    if path.exists():
        shutil.rmtree(backup)
    else:
        os.replace(backup, path)
        print(
            f"note: {path}: restored the prediction an interrupted run had moved aside",
            file=sys.stderr,
        )
