"""The inspection page in headless Chromium against a real server on loopback."""

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from browser import CHROMIUM_ARGS
from images import texture, with_defect
from PIL import Image
from playwright.sync_api import expect, sync_playwright

from anomalens.service import create_app

FIT_TIMEOUT_MS = 120_000
SIDE = 192


def photo(folder: Path, name: str, seed: int, defective: bool = False) -> str:
    """Write a textured photo (defective: with a bright square) and return its path."""
    image = texture(seed, SIDE, SIDE)
    if defective:
        image = with_defect(image, top=70, left=100, size=30)
    path = folder / name
    Image.fromarray(image).save(path)
    return str(path)


@pytest.fixture
def server(tmp_path) -> Iterator[str]:
    """The service on a free loopback port, stopped after the test; yields its base URL."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = uvicorn.Config(create_app(tmp_path / "models"), log_level="warning")
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not running.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    running.should_exit = True
    thread.join(timeout=30)
    listener.close()


def test_create_inspect_and_name_a_defect_in_the_page(server, tmp_path):
    chromium = shutil.which("chromium")
    assert chromium, "the browser test needs Chromium (Debian package `chromium`)"
    good = [photo(tmp_path, f"good{i}.png", seed=i) for i in range(3)]
    scratched = photo(tmp_path, "scratched.png", seed=10, defective=True)
    examples = [photo(tmp_path, f"spot{i}.png", 20 + i, defective=True) for i in range(5)]
    another = photo(tmp_path, "another.png", seed=30, defective=True)
    shots = tmp_path / "screenshots"
    problems, requests = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: m.type in ("error", "warning") and problems.append(m.text))
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.on("request", lambda request: requests.append(request.url))
        page.goto(server)
        expect(page.locator("#server-status")).to_contain_text("server ok")

        page.fill("#new-name", "tile")
        page.fill("#new-resolution", "64")
        page.set_input_files("#good-files", good)
        expect(page.locator("#good-chosen")).to_contain_text("3 good photos")
        page.click("#create-form button[type=submit]")
        expect(page.locator("#create-message")).to_have_text(
            "model tile is ready", timeout=FIT_TIMEOUT_MS
        )
        expect(page.locator("#create-progress .label")).to_contain_text("done in")
        expect(page.locator("#model-select")).to_have_value("tile")
        page.screenshot(path=shots / "1-model-created.png", full_page=True)

        page.set_input_files("#inspect-files", [scratched, good[0]])
        first = page.locator(".card").first
        expect(first).to_have_class("card ng")
        expect(first.locator(".boxes li")).not_to_have_count(0)
        assert first.locator("img.picture").evaluate("img => img.complete && img.naturalWidth > 0")
        page.screenshot(path=shots / "2-inspected.png", full_page=True)

        page.fill("#defect-name", "spot")
        page.set_input_files("#defect-files", examples)
        page.click("#defect-form button[type=submit]")
        expect(page.locator("#defect-list")).to_contain_text("spot")
        page.set_input_files("#inspect-files", [another])
        expect(page.locator(".card").first.locator(".boxes .tag").first).to_have_text("spot")
        expect(page.locator("#history tbody tr")).to_have_count(3)
        page.screenshot(path=shots / "3-defect-type-named.png", full_page=True)

        page.locator(".card").first.locator("button.view", has_text="mask").click()
        page.screenshot(path=shots / "4-mask-view.png", full_page=True)
        browser.close()

    assert problems == []
    assert all(url.startswith((server, "data:", "blob:")) for url in requests)
    for shot in shots.iterdir():
        with Image.open(shot) as picture:
            assert picture.width == 1280
