"""Fitting new models in the background, one at a time, with a state clients can poll."""

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from anomalens.detector import Detector
from anomalens.service.errors import Busy, Conflict, NotFound
from anomalens.service.store import ModelStore

KEPT_FINISHED_JOBS = 100
MAX_WAITING_FITS = 8
"""Fits queued or running at once; more are refused, since each holds its decoded images."""


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
    """Runs fitting jobs on one worker thread and saves each fitted model into `store`."""

    def __init__(self, store: ModelStore):
        self.store = store
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="anomalens-fit")

    def submit(
        self, model: str, detector: Detector, images: list[np.ndarray], names: list[str]
    ) -> Job:
        """Queue fitting unfitted `detector` on good `images` (called `names`) as `model`."""
        with self._lock:
            pending = self._pending()
            if self.store.exists(model) or model in pending:
                raise Conflict(f"a model named {model!r} already exists or is being fitted")
            if len(pending) >= MAX_WAITING_FITS:
                raise Busy(f"{len(pending)} fits are waiting; try again when one has finished")
            job = Job(id=uuid.uuid4().hex, model=model, references=len(images))
            self._jobs[job.id] = job
            self._forget_old_jobs()
        self._worker.submit(self._run, job, detector, images, names)
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
        """Wait for the queued jobs to finish."""
        self._worker.shutdown(wait=True)

    def _run(self, job: Job, detector: Detector, images: list[np.ndarray], names: list[str]):
        job.started, job.state = time.time(), "fitting"
        try:
            detector.fit(images, names=names)
            job.state = "saving"
            self.store.add(job.model, detector)
            job.state = "done"
        except Exception as error:  # a job reports any failure instead of dying silently
            job.state, job.error = "failed", f"{type(error).__name__}: {error}"
        job.finished = time.time()

    def _pending(self) -> set[str]:
        return {job.model for job in self._jobs.values() if not job.is_over}

    def _forget_old_jobs(self) -> None:
        finished = sorted((j for j in self._jobs.values() if j.is_over), key=lambda j: j.created)
        for job in finished[: max(0, len(finished) - KEPT_FINISHED_JOBS)]:
            del self._jobs[job.id]
