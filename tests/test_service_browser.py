"""The inspection page in headless Chromium against a real server on loopback."""

import io
import os
import re
import shutil
import socket
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import uvicorn
from browser import CHROMIUM_ARGS
from images import texture, with_defect
from PIL import Image
from playwright.sync_api import Page, expect, sync_playwright

from anomalens.service import create_app

FIT_TIMEOUT_MS = 120_000
SIDE = 192
SHOTS = Path(os.environ.get("ANOMALENS_SCREENSHOTS", "/tmp/anomalens-screenshots"))
"""Where the screenshots go, to be looked at by eye."""


def photo(folder: Path, name: str, seed: int, defective: bool = False) -> str:
    """Write a textured photo (defective: with a bright square) and return its path."""
    image = texture(seed, SIDE, SIDE)
    if defective:
        image = with_defect(image, top=70, left=100, size=30)
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
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


@pytest.fixture
def browser():
    chromium = shutil.which("chromium")
    assert chromium, "the browser test needs Chromium (Debian package `chromium`)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def watched(browser, server: str, width: int = 1280) -> tuple[Page, list[str]]:
    """A page that records console errors, page errors and requests leaving the server."""
    page = browser.new_page(viewport={"width": width, "height": 900}, accept_downloads=True)
    problems: list[str] = []
    page.on("console", lambda m: m.type in ("error", "warning") and problems.append(m.text))
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on(
        "request",
        lambda r: r.url.startswith((server, "data:", "blob:")) or problems.append(r.url),
    )
    return page, problems


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / f"{name}.png", full_page=True)


def create_model(page: Page, good: list[str]) -> None:
    page.fill("#new-name", "tile")
    page.fill("#new-resolution", "64")
    page.set_input_files("#good-files", good)
    expect(page.locator("#good-chosen")).to_contain_text("3 good photos")
    page.click("#create-form button[type=submit]")
    expect(page.locator("#create-message")).to_have_text(
        "model tile is ready", timeout=FIT_TIMEOUT_MS
    )


def card(page: Page, filename: str):
    return page.locator(".card", has=page.locator(".filename", has_text=filename)).first


def test_create_inspect_download_reload_and_name_defects_in_the_page(server, browser, tmp_path):
    good = [photo(tmp_path, f"good{i}.png", seed=i) for i in range(3)]
    batch = tmp_path / "line3"
    photo(batch, "good/000.png", seed=40)
    photo(batch, "broken/000.png", seed=41, defective=True)
    examples = [photo(tmp_path, f"spot{i}.png", 20 + i, defective=True) for i in range(5)]
    mask = np.zeros((SIDE, SIDE), np.uint8)
    mask[70:100, 100:130] = 255
    Image.fromarray(mask).save(tmp_path / "spot1-mask.png")
    page, problems = watched(browser, server)
    page.goto(server)
    expect(page.locator("#server-status")).to_contain_text("server ok")

    # A failed attempt says why; the next attempt clears the message.
    page.fill("#new-name", "tile")
    page.click("#create-form button[type=submit]")
    expect(page.locator("#create-message")).to_have_text("drop some good photos first")
    create_model(page, good)
    expect(page.locator("#create-progress .label")).to_contain_text("done in")
    expect(page.locator("#model-select")).to_have_value("tile")
    shot(page, "1-model-created")

    # A folder keeps its relative names, and each card shows its score against the threshold.
    page.set_input_files("#inspect-folder", str(batch))
    broken, fine = card(page, "line3/broken/000.png"), card(page, "line3/good/000.png")
    expect(broken).to_have_class("card ng")
    expect(fine).to_have_count(1)
    expect(broken.locator(".score")).to_contain_text("threshold")
    threshold = page.locator("#model-details dd").nth(3).inner_text()
    assert broken.locator(".score").inner_text().endswith(f"threshold {float(threshold):.3f}")
    expect(broken.locator(".meter .fill.ng")).to_have_count(1)
    expect(broken.locator(".boxes li")).not_to_have_count(0)
    assert broken.locator("img.picture").evaluate("i => i.complete && i.naturalWidth > 0")
    shot(page, "2-inspected")

    with page.expect_download() as download:
        page.locator(".batch").first.get_by_label("these results as zip").click()
    names = zipfile.ZipFile(io.BytesIO(Path(download.value.path()).read_bytes())).namelist()
    assert {"results.json", "results.csv", "coco.json"} <= set(names)
    assert {"masks/line3/broken/000.png", "overlays/line3/good/000.png"} <= set(names)

    # The results survive a reload, pictures included.
    page.reload()
    expect(card(page, "line3/broken/000.png")).to_have_class("card ng")
    assert (
        card(page, "line3/broken/000.png")
        .locator("img.picture")
        .evaluate("i => i.complete && i.naturalWidth > 0 && i.src.includes('/api/inspections/')")
    )

    # A defect type from examples, one boxed by dragging and one with a mask, relabels the
    # results inspected before it.
    page.fill("#defect-name", "spot")
    page.set_input_files("#defect-files", examples)
    expect(page.locator("#defect-examples .example")).to_have_count(5)
    first = page.locator("#defect-examples .example-picture").first
    first.locator("img").evaluate("i => i.decode()")
    first.scroll_into_view_if_needed()
    bounds = first.bounding_box()
    scale = bounds["width"] / SIDE
    page.mouse.move(bounds["x"] + 95 * scale, bounds["y"] + 65 * scale)
    page.mouse.down()
    page.mouse.move(bounds["x"] + 135 * scale, bounds["y"] + 105 * scale, steps=4)
    page.mouse.up()
    expect(page.locator("#defect-examples .region").first).to_contain_text("box ")
    page.locator("#defect-examples .mask-choice input").nth(1).set_input_files(
        str(tmp_path / "spot1-mask.png")
    )
    expect(page.locator("#defect-examples .region").nth(1)).to_have_text("mask spot1-mask.png")
    shot(page, "3-defect-examples")
    page.click("#defect-form button[type=submit]")
    expect(page.locator("#defect-message")).to_contain_text(
        re.compile(r"defect type spot added; \d+ earlier result")
    )
    expect(page.locator("#defect-list .thumb")).to_have_count(5)
    assert page.locator("#defect-list .thumb").first.evaluate("i => i.naturalWidth > 0")
    relabelled = card(page, "line3/broken/000.png")
    expect(relabelled.locator(".boxes .tag").first).to_have_text("spot")
    label = relabelled.locator(".labels .box-label").first
    expect(label).to_have_text("spot")
    frame, tag = relabelled.locator("img.picture").bounding_box(), label.bounding_box()
    assert frame["y"] <= tag["y"] and tag["y"] + tag["height"] <= frame["y"] + frame["height"]
    assert frame["x"] <= tag["x"] and tag["x"] + tag["width"] <= frame["x"] + frame["width"]
    shot(page, "4-defect-type-named")

    page.get_by_label("remove spot").click()
    expect(page.locator("#defect-message")).to_contain_text(
        re.compile(r"removed; \d+ earlier result")
    )
    expect(card(page, "line3/broken/000.png").locator(".boxes .tag")).to_have_count(0)

    # History rows reopen their batch.
    page.locator(".batch header").first.get_by_label("close these results").click()
    expect(page.locator(".card")).to_have_count(0)
    page.get_by_label("open line3/good/000.png").click()
    expect(page.locator(".card")).to_have_count(2)

    # A new false-alarm target moves the thresholds without a fit.
    page.fill("#target-input", "0.1")
    page.click("#target-form button[type=submit]")
    expect(page.locator("#model-message")).to_contain_text("thresholds set for 0.1% false alarms")
    expect(page.locator("#model-details")).to_contain_text("0.1%")
    assert float(page.locator("#model-details dd").nth(3).inner_text()) > float(threshold)

    # A bad file is refused with its name; the next inspection clears the message.
    (tmp_path / "notes.png").write_text("not an image")
    page.set_input_files("#inspect-files", str(tmp_path / "notes.png"))
    expect(page.locator("#inspect-message")).to_contain_text("notes.png: not an image")
    page.set_input_files("#inspect-files", good[0])
    expect(page.locator("#inspect-message")).to_contain_text("1 photo inspected")
    shot(page, "5-wide")

    page.set_viewport_size({"width": 800, "height": 900})
    assert page.evaluate("document.documentElement.scrollWidth") <= 800
    for selector in ("#model-select", "#inspect-drop", ".card", ".scroll"):  # the table scrolls
        box = page.locator(selector).first.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 800, selector
    table = page.locator(".scroll").evaluate("t => t.scrollWidth <= t.clientWidth")
    assert table, "the history table needs no sideways scrolling at 800 px"
    shot(page, "6-narrow")
    refused = "Failed to load resource: the server responded with a status of 400 (Bad Request)"
    assert problems == [refused]  # notes.png's, and nothing else


def test_the_api_docs_page_works_offline_from_the_package(server, browser):
    page, problems = watched(browser, server)
    page.goto(f"{server}/docs")
    expect(page.locator("#docs-intro")).to_contain_text("anomalens")
    expect(page.locator("#post-api-models-name-inspect")).to_contain_text("files")
    assert page.locator(".endpoint").count() >= 15
    shot(page, "7-docs")
    page.set_viewport_size({"width": 800, "height": 900})
    assert page.evaluate("document.documentElement.scrollWidth") <= 800
    assert problems == []
