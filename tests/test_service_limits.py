"""The server's budgets: slow or partial uploads are answered 408 instead of holding a
connection, and a body over the limit is refused before it is read."""

import socket
import threading
import time

import pytest
import uvicorn

from anomalens.service import Limits, create_app


@pytest.fixture
def server(tmp_path):
    limits = Limits(max_request_bytes=1_000_000, body_timeout=1, min_body_rate=10_000)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    running = uvicorn.Server(
        uvicorn.Config(create_app(tmp_path, limits), port=port, log_level="warning")
    )
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    while not running.started:
        time.sleep(0.05)
    yield port
    running.should_exit = True
    thread.join(10)


def post_slowly(port: int, declared: int, sent: bytes) -> tuple[str, float]:
    """Send a multipart POST declaring `declared` bytes but only `sent`; the status line and
    the seconds until it came."""
    head = (
        "POST /api/models/x/inspect HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=20) as connection:
        connection.sendall(head.encode() + sent)
        start = time.monotonic()
        status = connection.recv(200).split(b"\r\n")[0].decode()
        return status, time.monotonic() - start


def test_a_partial_upload_times_out_with_408(server):
    status, seconds = post_slowly(server, 500_000, b"--b\r\nContent-Disposition: form-data")
    assert " 408 " in status and seconds < 10


def test_a_body_declared_over_the_limit_is_refused_before_it_is_read(server):
    status, seconds = post_slowly(server, 2_000_000, b"")
    assert " 413 " in status and seconds < 1
