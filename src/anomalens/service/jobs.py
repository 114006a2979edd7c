"""Fitting new models in the background, one at a time, with a state clients can poll.

Every job is recorded under `ROOT/jobs/<id>/`: its settings and state in job.json, its good
images as .npy files until it is over. A job queued, fitting or saving when the server stopped
(a SIGTERM, a second one, a kill) is queued again under the same id when it starts next; the
records of finished jobs are kept (the newest KEPT_FINISHED_JOBS), so that a client polling
across a restart learns how its fit ended.
"""

import json
import logging
import os
import queue
import shutil
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from anomalens.detector import Detector
from anomalens.io.atomic import write_json
from anomalens.service.errors import Busy, Conflict, NotFound
from anomalens.service.store import ModelStore

KEPT_FINISHED_JOBS = 100
MAX_WAITING_FITS = 8
"""Fits queued or running at once; more are refused."""
JOBS_DIR = "jobs"
JOB_FILE = "job.json"

log = logging.getLogger(__name__)


@dataclass
class Job:
    """One model being fitted.

    Attributes:
        id: job identifier.
        model: name of the model it creates.
        references: number of good images it fits on.
        state: "queued", "fitting", "saving", "done" or "failed".
        error: what went wrong, when it failed.
        created, started, finished: Unix times (None until reached).
    """

    id: str
    model: str
    references: int
    state: str = "queued"
    error: str | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None

    @property
    def is_over(self) -> bool:
        """Whether the job is done or failed."""
        return self.state in ("done", "failed")

    def to_dict(self) -> dict[str, Any]:
        """The fields plus `elapsed`: seconds spent since the job started (or in total)."""
        end = self.finished or time.time()
        return {**asdict(self), "elapsed": round(end - self.started, 1) if self.started else 0.0}


class FitJobs:
    """Runs fitting jobs on one worker thread, records them under `store.root / "jobs"`,
    resumes those a stopped server left, and saves each fitted model into `store`."""

    def __init__(self, store: ModelStore):
        self.store = store
        self.folder = store.root / JOBS_DIR
        self.folder.mkdir(parents=True, exist_ok=True)
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._stopping = threading.Event()
        self._abandoned = threading.Event()
        self._resume()
        # A daemon, so that abandoning a running fit (a second SIGTERM) lets the process exit;
        # the job's record says it did not finish, and it runs again at the next start.
        self._worker = threading.Thread(target=self._work, name="anomalens-fit", daemon=True)
        self._worker.start()

    def submit(
        self, model: str, detector: Detector, images: list[np.ndarray], names: list[str]
    ) -> Job:
        """Record and queue fitting unfitted `detector` on good `images` (called `names`) as
        `model`."""
        with self._lock:
            if self._stopping.is_set():
                raise Busy("the server is shutting down; submit the fit when it is back")
            pending = self._pending()
            if self.store.exists(model) or model in pending:
                raise Conflict(f"a model named {model!r} already exists or is being fitted")
            if len(pending) >= MAX_WAITING_FITS:
                raise Busy(f"{len(pending)} fits are waiting; try again when one has finished")
            job = Job(id=uuid.uuid4().hex, model=model, references=len(images))
            self._record(job, detector.config(), names, images)
            self._jobs[job.id] = job
            self._forget_old_jobs()
        self._queue.put(job.id)
        return job

    def get(self, job_id: str) -> Job:
        """Job `job_id`, or NotFound."""
        with self._lock:
            if job_id not in self._jobs:
                raise NotFound(f"no job {job_id!r}")
            return self._jobs[job_id]

    def active(self) -> int:
        """How many jobs are queued, fitting or saving."""
        with self._lock:
            return len(self._pending())

    def shutdown(self) -> None:
        """Start no more fits (the queued ones stay recorded for the next start) and wait for
        the running one to finish, unless `abandon` is called meanwhile."""
        self._stopping.set()
        self._queue.put(None)
        while self._worker.is_alive() and not self._abandoned.wait(0.1):
            pass
        waiting = self.active()
        if waiting:
            log.warning(f"{waiting} fits recorded in {self.folder} will run at the next start")

    def abandon(self) -> None:
        """Stop waiting for the running fit (it stays recorded and runs again at the next
        start): a second request to stop."""
        self._abandoned.set()

    def _work(self) -> None:
        while (job_id := self._queue.get()) is not None and not self._stopping.is_set():
            self._run(self._jobs[job_id])

    def _run(self, job: Job) -> None:
        folder = self.folder / job.id
        job.started, job.state = time.time(), "fitting"
        try:
            settings = json.loads((folder / JOB_FILE).read_text())
            self._save_state(job)
            images = [
                np.load(folder / f"{i:04d}.npy", allow_pickle=False) for i in range(job.references)
            ]
            detector = Detector.from_config(settings["config"])
            detector.fit(images, names=settings["names"])
            if self._stopping.is_set() and self._abandoned.is_set():
                return  # the process is exiting: leave the job recorded as unfinished
            job.state = "saving"
            self._save_state(job)
            self.store.add(job.model, detector)
            job.state = "done"
        except Exception as error:  # a job reports any failure instead of dying silently
            job.state, job.error = "failed", f"{type(error).__name__}: {error}"
        job.finished = time.time()
        self._save_state(job)
        for images in folder.glob("*.npy"):  # an over job needs only its record
            images.unlink()

    def _record(
        self, job: Job, config: dict[str, Any], names: list[str], images: list[np.ndarray]
    ) -> None:
        """Write the job's folder whole, or nothing: its images first, then job.json."""
        staging = self.folder / f".{job.id}.tmp"
        staging.mkdir()
        try:
            for index, image in enumerate(images):
                np.save(staging / f"{index:04d}.npy", image, allow_pickle=False)
            write_json(staging / JOB_FILE, {"job": asdict(job), "config": config, "names": names})
            os.replace(staging, self.folder / job.id)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _save_state(self, job: Job) -> None:
        path = self.folder / job.id / JOB_FILE
        write_json(path, {**json.loads(path.read_text()), "job": asdict(job)})

    def _resume(self) -> None:
        """Read the recorded jobs: finished ones are reported, unfinished ones queued again."""
        recorded = []
        for folder in self.folder.iterdir():
            if folder.name.startswith("."):  # a job being recorded when the server stopped
                shutil.rmtree(folder, ignore_errors=True)
                continue
            try:
                recorded.append(Job(**json.loads((folder / JOB_FILE).read_text())["job"]))
            except (OSError, ValueError, TypeError, KeyError) as error:
                log.warning(f"{folder}: unreadable job record ({error}); left as it is")
        for job in sorted(recorded, key=lambda j: j.created):
            self._jobs[job.id] = job
            if job.is_over:
                continue
            if self.store.exists(job.model):  # saved just before the server stopped
                job.state, job.finished = "done", job.finished or time.time()
            else:
                job.state, job.started = "queued", None
                self._queue.put(job.id)
                log.warning(f"job {job.id} (model {job.model!r}) was interrupted; queued again")
            self._save_state(job)
        self._forget_old_jobs()

    def _pending(self) -> set[str]:
        return {job.model for job in self._jobs.values() if not job.is_over}

    def _forget_old_jobs(self) -> None:
        finished = sorted((j for j in self._jobs.values() if j.is_over), key=lambda j: j.created)
        for job in finished[: max(0, len(finished) - KEPT_FINISHED_JOBS)]:
            del self._jobs[job.id]
            shutil.rmtree(self.folder / job.id, ignore_errors=True)
