"""The HTML report: one self-contained, sortable page that renders cleanly in a real browser."""

import base64
import io
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from browser import CHROMIUM_ARGS
from PIL import Image
from playwright.sync_api import sync_playwright

from anomalens.cli import main
from anomalens.formats.html_report import ResultsDirError, write_html_report

IMAGES = [
    {
        "path": "test/crack/exp1.jpg",
        "score": 3.25,
        "verdict": "NG",
        "boxes": [
            {
                "x0": 10,
                "y0": 5,
                "x1": 40,
                "y1": 15,
                "score": 3.25,
                "area": 180,
                "defect_type": "crack",
                "similarity": 0.91,
            },
            {
                "x0": 50,
                "y0": 30,
                "x1": 56,
                "y1": 38,
                "score": 2.5,
                "area": 30,
                "defect_type": None,
                "similarity": None,
            },
        ],
        "overlay": "overlays/exp1.png",
        "mask": "masks/exp1.png",
    },
    {
        "path": "test/good/<b>odd name</b>.jpg",
        "score": 0.5,
        "verdict": "OK",
        "boxes": [],
        "overlay": "overlays/odd.png",
        "mask": "masks/odd.png",
    },
    {
        "path": "test/blowhole/exp7.jpg",
        "score": 1.75,
        "verdict": "NG",
        "boxes": [
            {
                "x0": 0,
                "y0": 0,
                "x1": 8,
                "y1": 8,
                "score": 1.75,
                "area": 40,
                "defect_type": "unknown",
                "similarity": 0.3,
            },
        ],
        "overlay": "overlays/exp7.png",
        "mask": "masks/exp7.png",
    },
]
MODEL = {
    "method": "anomalydino",
    "backbone": "efficientnet_lite0",
    "thresholds": {"image": 1.2345678, "pixel": 0.875, "set_by": "max_false_alarm 0.01"},
}


class TagCollector(HTMLParser):
    """Every start tag of a page with its attributes."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def tags_of(page: str, name: str) -> list[dict[str, str | None]]:
    """The attributes of each `name` tag in `page`."""
    collector = TagCollector()
    collector.feed(page)
    return [attrs for tag, attrs in collector.tags if tag == name]


def write_results(results_dir: Path, images: list[dict]) -> Path:
    """A `predict` output directory with `images` and a coloured overlay PNG for each."""
    rng = np.random.default_rng(0)
    for entry in images:
        pixels = rng.integers(0, 255, size=(60, 80, 3), dtype=np.uint8)
        pixels[20:40, 20:60] = (255, 0, 0)
        overlay = results_dir / entry["overlay"]
        overlay.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(overlay)
    results = {"model": MODEL, "images": images}
    (results_dir / "results.json").write_text(json.dumps(results), encoding="utf-8")
    return results_dir


@pytest.fixture
def report(tmp_path) -> Path:
    """The report of a three-image results directory."""
    results_dir = write_results(tmp_path / "predictions", IMAGES)
    return write_html_report(results_dir, tmp_path / "report.html")


def test_page_loads_nothing_from_outside(report):
    page = report.read_text(encoding="utf-8")
    assert "http://" not in page and "https://" not in page
    sources = [attrs["src"] for attrs in tags_of(page, "img")]
    links = [attrs["href"] for attrs in tags_of(page, "link")]
    assert all(url.startswith("data:") for url in sources + links)
    assert tags_of(page, "script") == [{}]  # one inline script, no src


def test_each_overlay_is_embedded_as_a_jpeg(report):
    sources = [attrs["src"] for attrs in tags_of(report.read_text(encoding="utf-8"), "img")]
    assert len(sources) == len(IMAGES)
    for source in sources:
        header, payload = source.split(",", 1)
        assert header == "data:image/jpeg;base64"
        with Image.open(io.BytesIO(base64.b64decode(payload))) as picture:
            assert (picture.format, picture.size) == ("JPEG", (80, 60))


def test_each_image_has_a_row_with_its_escaped_path_score_and_verdict(report):
    page = report.read_text(encoding="utf-8")
    rows = tags_of(page, "tr")
    assert [row.get("data-verdict") for row in rows if "data-verdict" in row] == ["NG", "OK", "NG"]
    assert "test/crack/exp1.jpg" in page and "test/blowhole/exp7.jpg" in page
    assert "&lt;b&gt;odd name&lt;/b&gt;" in page and "<b>odd" not in page
    assert ">3.25<" in page and ">0.5<" in page


def test_summary_counts_images_and_verdicts(report):
    page = report.read_text(encoding="utf-8")
    assert "3 images" in page and "2 NG" in page and "1 OK" in page


def test_thresholds_and_model_settings_are_shown(report):
    page = report.read_text(encoding="utf-8")
    assert "<th>image</th><td>1.235</td>" in page
    assert "<th>set_by</th><td>max_false_alarm 0.01</td>" in page
    assert "<th>backbone</th><td>efficientnet_lite0</td>" in page


def test_boxes_are_listed_with_their_labels(report):
    page = report.read_text(encoding="utf-8")
    assert "crack (91%)" in page
    assert "30×10 px at (10, 5)" in page
    assert page.count('<span class="label">anomaly</span>') == 1
    assert "unknown (30%)" in page


def test_table_columns_are_sortable(report):
    headers = tags_of(report.read_text(encoding="utf-8"), "th")
    sortable = [attrs["data-type"] for attrs in headers if "data-type" in attrs]
    assert sortable == ["text", "number", "text", "number", "text"]


def test_missing_results_file_is_named(tmp_path):
    with pytest.raises(ResultsDirError, match=r"results\.json: no such file"):
        write_html_report(tmp_path, tmp_path / "report.html")


def test_malformed_image_entry_is_named(tmp_path):
    entry = {key: value for key, value in IMAGES[0].items() if key != "score"}
    results_dir = write_results(tmp_path, [IMAGES[1], entry])
    with pytest.raises(ResultsDirError, match=r"image entry 1 is malformed .*'score'"):
        write_html_report(results_dir, tmp_path / "report.html")


def test_an_unreadable_overlay_is_named_in_its_row_and_the_others_are_shown(tmp_path):
    results_dir = write_results(tmp_path, IMAGES[:2])
    (results_dir / IMAGES[0]["overlay"]).write_bytes(b"not a png")
    page = write_html_report(results_dir, tmp_path / "report.html").read_text(encoding="utf-8")
    assert re.search(r"overlay unreadable: .*overlays/exp1\.png", page)
    assert len(tags_of(page, "img")) == 1


def test_overlay_outside_the_results_directory_is_refused(tmp_path):
    write_results(tmp_path, [{**IMAGES[1], "overlay": "outside.png"}])
    results_dir = tmp_path / "predictions"
    results_dir.mkdir()
    entry = {**IMAGES[1], "overlay": "../outside.png"}
    (results_dir / "results.json").write_text(json.dumps({"images": [entry]}), encoding="utf-8")
    page = write_html_report(results_dir, tmp_path / "report.html").read_text(encoding="utf-8")
    assert "outside the results directory" in page and not tags_of(page, "img")


def test_page_renders_in_headless_chromium_without_errors_and_sorts_and_filters(report):
    chromium = shutil.which("chromium")
    assert chromium, "the browser test needs Chromium (Debian package `chromium`)"
    problems, requests = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.on("console", lambda message: problems.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.on("request", lambda request: requests.append(request.url))
        page.goto(report.as_uri())
        screenshot = report.with_suffix(".png")
        page.screenshot(path=screenshot, full_page=True)

        scores = "#results tbody tr td:nth-child(3)"
        page.click("th:has-text('Score')")
        ascending = page.locator(scores).all_inner_texts()
        page.click("th:has-text('Score')")
        descending = page.locator(scores).all_inner_texts()
        page.check("#ng-only")
        shown = page.locator("#results tbody tr:visible td:nth-child(4)").all_inner_texts()
        browser.close()

    assert problems == []
    assert all(url.startswith(("file:", "data:")) for url in requests)
    assert (ascending, descending) == (["0.5", "1.75", "3.25"], ["3.25", "1.75", "0.5"])
    assert shown == ["NG", "NG"]
    with Image.open(screenshot) as picture:
        assert picture.width >= 800 and np.asarray(picture.convert("L")).std() > 10


def test_report_command_writes_the_page_into_the_results_directory_by_default(tmp_path, capsys):
    results_dir = write_results(tmp_path, IMAGES)
    assert main(["report", str(results_dir)]) == 0
    assert "test/crack/exp1.jpg" in (results_dir / "report.html").read_text(encoding="utf-8")
    assert "report.html" in capsys.readouterr().out


def test_report_command_writes_where_told(tmp_path):
    results_dir = write_results(tmp_path / "predictions", IMAGES)
    assert main(["report", str(results_dir), "-o", str(tmp_path / "out" / "page.html")]) == 0
    assert (tmp_path / "out" / "page.html").is_file()


def test_report_command_fails_naming_the_missing_results_file(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 1
    assert "results.json: no such file" in capsys.readouterr().err
