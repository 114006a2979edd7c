"""One self-contained HTML page summarising a `predict` output directory; it opens offline.

The directory holds `results.json`: an object with `model` (detector settings, `thresholds`
among them) and `images`, one entry per image with `path`, `score`, `verdict`, `boxes` (x0, y0,
x1, y1, score, area, defect_type, similarity) and the relative paths of its `overlay` and `mask`
PNGs. Overlays are embedded as JPEG data URIs, so the page loads nothing from anywhere.
"""

import base64
import io
import json
import re
from html import escape
from pathlib import Path
from typing import Any

from PIL import Image

from anomalens.errors import AnomalensError, ImageError
from anomalens.io.atomic import write_text
from anomalens.io.images import load_image

RESULTS_FILE = "results.json"
LONE_SURROGATE = re.compile("[\ud800-\udfff]")
OVERLAY_MAX_SIDE = 640
"""Overlays are shrunk to fit this many pixels so that large runs still make a light page."""
OVERLAY_JPEG_QUALITY = 85


class ResultsDirError(AnomalensError):
    """A `predict` output directory cannot be read; names the file and the problem."""


def write_html_report(results_dir: str | Path, output_html: str | Path) -> Path:
    """Atomically write the report of `results_dir` (a `predict` output) to `output_html`."""
    results_dir = Path(results_dir)
    page = render_report(results_dir, read_results(results_dir))
    return write_text(output_html, displayable(page))


def displayable(text: str) -> str:
    """`text` with each lone surrogate (how Python holds a byte of a file name that is not
    UTF-8, PEP 383) replaced by U+FFFD, so that it can be written as UTF-8."""
    return LONE_SURROGATE.sub("\ufffd", text)


def read_results(results_dir: Path) -> dict[str, Any]:
    """The parsed `results.json` of `results_dir`, checked to hold an `images` list."""
    path = results_dir / RESULTS_FILE
    if not path.is_file():
        raise ResultsDirError(f"{path}: no such file; is {results_dir} a `predict` output?")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ResultsDirError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(results, dict) or not isinstance(results.get("images"), list):
        raise ResultsDirError(f"{path}: expected a JSON object with an 'images' list")
    if not isinstance(results.get("model") or {}, dict):
        raise ResultsDirError(f"{path}: 'model' should be a JSON object")
    return results


def render_report(results_dir: Path, results: dict[str, Any]) -> str:
    """The report page for `results` (as read by `read_results`) from `results_dir`."""
    images = results["images"]
    model = dict(results.get("model") or {})
    thresholds = model.pop("thresholds", {})
    rows = []
    for index, entry in enumerate(images):
        try:
            rows.append(_image_row(results_dir, entry))
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            raise ResultsDirError(
                f"{results_dir / RESULTS_FILE}: image entry {index} is malformed ({error!r})"
            ) from None
    title = f"anomalens report: {results_dir.resolve().name}"
    return PAGE.format(
        title=escape(title),
        style=STYLE,
        script=SCRIPT,
        summary=_summary(images),
        thresholds=_settings_table(thresholds),
        model=_settings_table(model),
        rows="\n".join(rows),
    )


def _summary(images: list[dict[str, Any]]) -> str:
    flagged = sum(entry.get("verdict") == "NG" for entry in images)
    return (
        f'<span class="count">{len(images)} images</span>'
        f'<span class="count ng">{flagged} NG</span>'
        f'<span class="count ok">{len(images) - flagged} OK</span>'
    )


def _settings_table(settings: dict[str, Any]) -> str:
    """A two-column table of `settings`, nested objects flattened to dotted names."""
    if not settings:
        return "<p>none recorded</p>"
    rows = "".join(
        f"<tr><th>{escape(name)}</th><td>{escape(_format(value))}</td></tr>"
        for name, value in _flatten(settings)
    )
    return f'<table class="settings">{rows}</table>'


def _flatten(settings: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items = []
    for name, value in settings.items():
        if isinstance(value, dict):
            items += _flatten(value, f"{prefix}{name}.")
        else:
            items.append((f"{prefix}{name}", value))
    return items


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(_format(item) for item in value)
    return str(value)


def _image_row(results_dir: Path, entry: dict[str, Any]) -> str:
    path, verdict, boxes = str(entry["path"]), str(entry["verdict"]), entry["boxes"]
    score = float(entry["score"])
    labels = sorted({_label(box) for box in boxes})
    picture = _picture(results_dir, entry.get("overlay"), path)
    return (
        f'<tr data-verdict="{escape(verdict)}">'
        f'<td class="picture">{picture}</td>'
        f'<td data-value="{escape(path)}" class="path">{escape(path)}</td>'
        f'<td data-value="{score!r}" class="number">{_format(score)}</td>'
        f'<td data-value="{escape(verdict)}"><span class="verdict {escape(verdict.lower())}">'
        f"{escape(verdict)}</span></td>"
        f'<td data-value="{len(boxes)}" class="number">{len(boxes)}</td>'
        f'<td data-value="{escape(", ".join(labels))}">{_box_list(boxes)}</td>'
        "</tr>"
    )


def _picture(results_dir: Path, overlay: str | None, path: str) -> str:
    """The overlay as an inline image, or why there is none; one bad file spoils only its row."""
    if not overlay:
        return "no overlay"
    try:
        return f'<img src="{_jpeg_data_uri(results_dir, overlay)}" alt="overlay of {escape(path)}">'
    except (ImageError, ResultsDirError) as error:
        return f"overlay unreadable: {escape(str(error))}"


def _label(box: dict[str, Any]) -> str:
    return box.get("defect_type") or "anomaly"


def _box_list(boxes: list[dict[str, Any]]) -> str:
    if not boxes:
        return ""
    items = []
    for box in boxes:
        similarity = box.get("similarity")
        match = f" ({similarity:.0%})" if similarity is not None else ""
        width, height = box["x1"] - box["x0"], box["y1"] - box["y0"]
        items.append(
            f'<li><span class="label">{escape(_label(box))}{match}</span> '
            f"score {_format(float(box['score']))}, {width}×{height} px at "
            f"({box['x0']}, {box['y0']}), {box['area']} px²</li>"
        )
    return f'<ul class="boxes">{"".join(items)}</ul>'


def _jpeg_data_uri(results_dir: Path, relative: str) -> str:
    """The image at `relative` inside `results_dir`, shrunk and encoded as a JPEG data URI."""
    path = results_dir / relative
    if not path.resolve().is_relative_to(results_dir.resolve()):
        raise ResultsDirError(f"{path}: outside the results directory {results_dir}")
    picture = Image.fromarray(load_image(path))
    picture.thumbnail((OVERLAY_MAX_SIDE, OVERLAY_MAX_SIDE))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=OVERLAY_JPEG_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy"
  content="default-src 'none'; img-src data:; style-src 'unsafe-inline';
    script-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
<header>
<h1>{title}</h1>
<p class="summary">{summary}</p>
</header>
<section class="settings-panels">
<div><h2>Thresholds</h2>{thresholds}</div>
<div><h2>Model</h2>{model}</div>
</section>
<section>
<label class="filter"><input type="checkbox" id="ng-only"> NG only</label>
<table id="results">
<thead><tr>
<th>Overlay</th>
<th data-type="text" title="Sort by image">Image</th>
<th data-type="number" title="Sort by score">Score</th>
<th data-type="text" title="Sort by verdict">Verdict</th>
<th data-type="number" title="Sort by region count">Regions</th>
<th data-type="text" title="Sort by defect type">Defects</th>
</tr></thead>
<tbody>
{rows}
</tbody>
</table>
</section>
<script>{script}</script>
</body>
</html>
"""

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.5em; margin: 0 0 .3em; }
h2 { font-size: 1.1em; margin: .5em 0; }
.count { margin-right: 1em; font-weight: 600; }
.count.ng, .verdict.ng { color: #b00020; }
.count.ok, .verdict.ok { color: #1b7f3b; }
.settings-panels { display: flex; gap: 3em; flex-wrap: wrap; }
table.settings th { text-align: left; font-weight: normal; color: #555; padding-right: 1em; }
.filter { display: block; margin: 1em 0 .5em; }
#results { border-collapse: collapse; width: 100%; }
#results th, #results td { border-bottom: 1px solid #ddd; padding: .4em .6em;
  text-align: left; vertical-align: top; }
#results thead th { background: #f4f4f4; position: sticky; top: 0; }
#results th[data-type] { cursor: pointer; user-select: none; }
#results th[aria-sort="ascending"]::after { content: " ▲"; }
#results th[aria-sort="descending"]::after { content: " ▼"; }
.number { text-align: right; font-variant-numeric: tabular-nums; }
.path { word-break: break-all; max-width: 20em; }
.verdict { font-weight: 700; }
.picture img { max-width: 240px; max-height: 240px; cursor: zoom-in; display: block; }
.picture img.large { max-width: none; max-height: none; cursor: zoom-out; }
.boxes { margin: 0; padding-left: 1.2em; }
.label { font-weight: 600; }
"""

SCRIPT = """
const table = document.getElementById("results");
const body = table.tBodies[0];
const headers = Array.from(table.tHead.rows[0].cells);
for (const header of headers.filter((cell) => cell.dataset.type)) {
  header.addEventListener("click", () => {
    const ascending = header.getAttribute("aria-sort") !== "ascending";
    headers.forEach((cell) => cell.removeAttribute("aria-sort"));
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    const key = (row) => row.cells[header.cellIndex].dataset.value;
    const compare = header.dataset.type === "number"
      ? (a, b) => Number(key(a)) - Number(key(b))
      : (a, b) => key(a).localeCompare(key(b));
    const rows = Array.from(body.rows).sort(compare);
    if (!ascending) rows.reverse();
    body.append(...rows);
  });
}
document.getElementById("ng-only").addEventListener("change", (event) => {
  for (const row of body.rows) {
    row.hidden = event.target.checked && row.dataset.verdict !== "NG";
  }
});
for (const image of body.querySelectorAll(".picture img")) {
  image.addEventListener("click", () => image.classList.toggle("large"));
}
"""
