"""Fits accepted by the server are never lost: a stop keeps the queue recorded, a second stop
does not wait for the running fit, and the next start resumes or reports every job."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from images import texture

from anomalens import Detector
from anomalens.cli.serve import stopping_server, uvicorn_config
from anomalens.service.jobs import FitJobs
from anomalens.service.limits import Limits
from anomalens.service.store import ModelStore
from anomalens.visualize import png_bytes

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


SLOW_SERVER = """
import sys, time
from anomalens import Detector
from anomalens.cli import main

Detector.fit = lambda self, *args, **kwargs: time.sleep(600)  # a fit that is always running
sys.exit(main(sys.argv[1:]))
"""


def serve(arguments: list[str], script: str | None = None) -> subprocess.Popen:
    code = script or "import sys; from anomalens.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", code, "serve", *arguments], env=env, stderr=subprocess.PIPE
    )


def test_serve_stops_at_the_second_sigterm_and_resumes_the_recorded_fits(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    arguments = ["--port", str(port), "--models", str(tmp_path)]
    files = [
        ("files", (f"{i}.png", png_bytes(image), "image/png")) for i, image in enumerate(IMAGES)
    ]
    fit = {"method": "anomalydino", "resolution": "64"}
    server = serve(arguments, SLOW_SERVER)
    try:
        wait_for(lambda: answers(f"{url}/api/health"))
        ids = [
            httpx.post(f"{url}/api/models", data={"name": name, **fit}, files=files).json()["id"]
            for name in ("first", "second")
        ]
        wait_for(lambda: httpx.get(f"{url}/api/jobs/{ids[0]}").json()["state"] == "fitting")
        server.send_signal(signal.SIGTERM)
        time.sleep(1)
        assert server.poll() is None  # the first stop waits for the running fit
        stopped = time.monotonic()
        server.send_signal(signal.SIGTERM)
        server.wait(20)
        assert time.monotonic() - stopped < 10
    finally:
        server.kill()
        server.wait()
    recorded = {job: json.loads((tmp_path / "jobs" / job / "job.json").read_text()) for job in ids}
    assert [recorded[job]["job"]["state"] for job in ids] == ["fitting", "queued"]

    restarted = serve(arguments)
    try:
        wait_for(lambda: answers(f"{url}/api/health"))
        wait_for(
            lambda: all(
                httpx.get(f"{url}/api/jobs/{job}").json()["state"] == "done" for job in ids
            ),
            300,
        )
        assert {m["name"] for m in httpx.get(f"{url}/api/models").json()} == {"first", "second"}
    finally:
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(60)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_ctrl_c_stops_the_server_cleanly(tmp_path):
    port = free_port()
    server = serve(["--port", str(port), "--models", str(tmp_path)])
    try:
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/api/health"))
        server.send_signal(signal.SIGINT)
        _, err = server.communicate(timeout=60)
    finally:
        server.kill()
    assert server.returncode == 0 and b"Traceback" not in err
