"""Fits accepted by the server are never lost: a stop keeps the queue recorded, a second stop
does not wait for the running fit, and the next start resumes or reports every job."""

import signal
import threading
import time

import pytest
from images import texture

from anomalens import Detector
from anomalens.cli.serve import stopping_server, uvicorn_config
from anomalens.service.jobs import FitJobs
from anomalens.service.limits import Limits
from anomalens.service.store import ModelStore

IMAGES = [texture(seed) for seed in range(3)]


def unfitted() -> Detector:
    return Detector(method="anomalydino", resolution=64, rotation=False)


@pytest.fixture
def gate(monkeypatch):
    """Fits wait for `gate.set()` (released at the end of the test)."""
    event, real = threading.Event(), Detector.fit

    def gated(self, *args, **kwargs):
        event.wait()
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Detector, "fit", gated)
    yield event
    event.set()


def wait_for(condition, seconds: float = 60) -> None:
    end = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def test_a_stop_finishes_the_running_fit_and_the_next_start_runs_the_queued_ones(gate, tmp_path):
    store = ModelStore(tmp_path)
    jobs = FitJobs(store)
    submitted = [jobs.submit(name, unfitted(), IMAGES, ["a", "b", "c"]) for name in "xyz"]
    wait_for(lambda: jobs.get(submitted[0].id).state == "fitting")
    stopping = threading.Thread(target=jobs.shutdown)
    stopping.start()
    time.sleep(0.3)
    assert stopping.is_alive()  # waiting for the running fit
    gate.set()
    stopping.join(60)
    assert not stopping.is_alive()
    assert [store.exists(name) for name in "xyz"] == [True, False, False]

    restarted = FitJobs(ModelStore(tmp_path))
    wait_for(lambda: all(restarted.get(job.id).is_over for job in submitted))
    assert [restarted.get(job.id).state for job in submitted] == ["done"] * 3
    assert all(store.exists(name) for name in "xyz")
    restarted.shutdown()


def test_a_second_stop_abandons_the_running_fit_which_runs_again_at_the_next_start(gate, tmp_path):
    jobs = FitJobs(ModelStore(tmp_path))
    job = jobs.submit("model", unfitted(), IMAGES, ["a", "b", "c"])
    wait_for(lambda: jobs.get(job.id).state == "fitting")
    stopping = threading.Thread(target=jobs.shutdown)
    stopping.start()
    time.sleep(0.3)
    started = time.monotonic()
    jobs.abandon()
    stopping.join(5)
    assert not stopping.is_alive() and time.monotonic() - started < 1

    gate.set()  # the abandoned fit would still finish; the process would have exited
    restarted = FitJobs(ModelStore(tmp_path))
    wait_for(lambda: restarted.get(job.id).is_over)
    assert restarted.get(job.id).state == "done"
    assert ModelStore(tmp_path).exists("model")
    restarted.shutdown()


def test_finished_jobs_are_reported_after_a_restart(tmp_path):
    jobs = FitJobs(ModelStore(tmp_path))
    bad = jobs.submit("bad", unfitted(), [texture(0)] * 3, ["a", "b", "c"])  # identical
    wait_for(lambda: jobs.get(bad.id).is_over)
    jobs.shutdown()
    restarted = FitJobs(ModelStore(tmp_path))
    assert restarted.get(bad.id).state == "failed"
    assert "no spread" in restarted.get(bad.id).error
    assert not list((tmp_path / "jobs" / bad.id).glob("*.npy"))  # only the record is kept
    restarted.shutdown()


class Recording:
    def __init__(self):
        self.abandoned = False

    def abandon(self):
        self.abandoned = True


def test_the_second_sigterm_to_the_server_stops_it_at_once(tmp_path):
    jobs = Recording()
    server = stopping_server(uvicorn_config(object(), "127.0.0.1", 0), jobs)
    server.handle_exit(signal.SIGTERM, None)
    assert server.should_exit and not server.force_exit and not jobs.abandoned
    server.handle_exit(signal.SIGTERM, None)
    assert server.force_exit and jobs.abandoned


def test_the_request_body_limit_follows_the_upload_limit():
    small = Limits.for_machine(max_file_bytes=2**20, memory=16 * 2**30)
    assert small.max_request_bytes == 20 * 2**20
    assert Limits.for_machine(max_file_bytes=100 * 2**20).max_request_bytes == 2000 * 2**20


def test_pixel_budgets_shrink_with_the_machines_memory():
    large, small = (Limits.for_machine(memory=gib * 2**30) for gib in (256, 4))
    assert large.max_request_pixels == 400_000_000 and large.max_pixels == 40_000_000
    # 4 GiB: a quarter of it at 24 bytes a pixel, shared by the requests decoding at once
    assert small.max_request_pixels * small.max_decoding * 24 <= 2**30
    assert small.max_pixels <= small.max_request_pixels < 400_000_000
