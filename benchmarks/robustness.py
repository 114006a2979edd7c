"""The hostile probe: odd files through the CLI, the API and the server, kills, and a load test.

Usage:
    nice .venv/bin/python benchmarks/robustness.py [DATA] [--seconds 60] [--kills 10]

DATA is an MVTec-AD style category (default ../shared/data/mtd): the model is fitted at the
default settings on 8 of its train/good images, the load test posts its test images. The probe

1. generates a corpus of at least 300 odd paths (every image mode and depth Pillow writes,
   formats, EXIF orientations, sizes from 1 px to 100 MP and 32:1 strips, truncations of eight
   files at 20 offsets each, bit flips, junk, decompression bombs declared in headers or real,
   NaN and infinite floats, odd names, and paths that are not image files at all);
2. runs `anomalens predict` on the corpus folder, `Detector.predict` on each path (in a child
   process) and posts each file to a loopback `anomalens serve`, counting inspected files,
   clean per-file errors, tracebacks and paths skipped without a word;
3. measures the peak memory of `anomalens predict` on each of the heaviest inputs alone, less
   that of a small image;
4. kills `anomalens fit` (during fitting and saving over an earlier model) and `anomalens
   predict` with SIGKILL at random moments, then counts models lost, stray folders left after
   the next load, and results lost (masks or overlays on disk with no results record);
5. loads the server with 20 and then 50 concurrent clients for --seconds each.

Every figure is printed at the end; tracebacks, silent skips, results lost and stray folders
must be 0, and the worst peak memory per image under 2 GB. Timings depend on the machine's
load: run it with nice on a shared machine.
"""

import argparse
import contextlib
import io
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from load_service import _run_clients
from PIL import Image

from anomalens.detector import Detector
from anomalens.io.images import is_image_file
from anomalens.service.store import ModelStore

ANOMALENS = [sys.executable, "-c", "import sys; from anomalens.cli import main; sys.exit(main())"]
KILL_METHOD = ["--method", "anomalydino", "--resolution", "64", "--param", "rotation=false"]
"""A quick model for the kill tests, so that many kills fit in minutes."""
HEAVY = ("solid-9000x9000.png", "solid-10000x9999.png", "strip-1767x56544.png", "noise-4000.jpg")
"""The corpus files whose peak memory is measured one by one."""
MEGABYTE = 1 << 20


@dataclass
class Tally:
    """What one channel (CLI, API or server) did with the corpus."""

    tried: int = 0
    inspected: int = 0
    errors: int = 0
    skipped: int = 0
    silent: list[str] = field(default_factory=list)
    tracebacks: list[str] = field(default_factory=list)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default=Path("../shared/data/mtd"), type=Path)
    parser.add_argument("--seconds", type=float, default=60, help="length of each load test")
    parser.add_argument("--kills", type=int, default=10, help="kills of fit and of predict each")
    parser.add_argument("--work", type=Path, help="working folder (default: a temporary one)")
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="PATTERN",
        help="leave corpus paths matching this glob out (repeatable), to measure the rest on a "
        "branch that lacks one fix",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="anomalens-probe-")) if args.work is None else args.work
    work.mkdir(parents=True, exist_ok=True)
    try:
        run(args, work)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> None:
    good = sorted(p for p in (args.data / "train" / "good").iterdir() if is_image_file(p))[:8]
    references = work / "references"
    references.mkdir(exist_ok=True)
    for path in good:
        shutil.copy(path, references / path.name)
    model = work / "model"
    if not model.exists():  # a --work folder of an earlier run keeps its model
        started = time.perf_counter()
        _check(subprocess.run([*ANOMALENS, "fit", str(references), "-o", str(model)], **QUIET))
        print(f"fitted the default detector on {len(good)} references in {_since(started)}")
    corpus = work / "corpus"
    shutil.rmtree(corpus, ignore_errors=True)
    tried = build_corpus(corpus, args.data)
    for pattern in args.exclude:
        for path in sorted(corpus.glob(pattern), reverse=True):
            _remove(path)
    tried = [name for name in tried if os.path.lexists(corpus / name)]
    print(f"corpus: {len(tried)} paths in {corpus}")
    for stage in ("predicted", "memory", "kills", "server"):  # what an earlier run left
        shutil.rmtree(work / stage, ignore_errors=True)
    cli = probe_cli(model, corpus, tried, work / "predicted")
    api = probe_api(model, corpus, tried, work)
    memory = probe_memory(model, corpus, work / "memory")
    kills = probe_kills(references, model, corpus, work / "kills", args.kills)
    server, load = probe_server(model, corpus, tried, work / "server", args)
    report(cli, api, server, memory, kills, load)


# -- the corpus ---------------------------------------------------------------------------------


def build_corpus(root: Path, data: Path) -> list[str]:
    """Write the odd paths under `root`; return them relative to it (folders' contents too)."""
    root.mkdir(parents=True, exist_ok=True)
    made: list[str] = []

    def put(name: str, content: bytes | Image.Image, **options) -> Path:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            content.save(path, **options)
        made.append(name)
        return path

    rng = np.random.default_rng(0)
    photo = Image.open(next(p for p in sorted((data / "test").rglob("*")) if is_image_file(p)))
    photo = photo.convert("RGB").resize((96, 64))
    texture = np.asarray(photo)
    gray = texture[:, :, 0]
    _modes(put, photo, gray)
    _depths(put, gray, rng)
    _formats(put, photo)
    _orientations(put, photo)
    _sizes(put, rng)
    for name in ("png", "jpg", "progressive.jpg", "gif", "bmp", "tif", "webp", "16bit.png"):
        _truncations(put, _encoded(photo, gray, name), name)
    _corruptions(put, _encoded(photo, gray, "png"), _encoded(photo, gray, "jpg"), rng)
    _bombs(put, _encoded(photo, gray, "jpg"))
    _non_finite(put, rng)
    _names(put, _encoded(photo, gray, "png"))
    _not_images(root, put, _encoded(photo, gray, "png"), made)
    return made


def _modes(put, photo: Image.Image, gray: np.ndarray) -> None:
    for mode in ("1", "L", "LA", "P", "RGB", "RGBA", "I;16"):
        put(f"mode-{mode.replace(';', '_')}.png", photo.convert(mode))
    for mode in ("I", "F"):
        put(f"mode-{mode}.tif", photo.convert(mode))
    for mode in ("CMYK", "YCbCr", "L"):
        put(f"mode-{mode}.jpg", photo.convert(mode))
    put("mode-CMYK.tif", photo.convert("CMYK"))
    put("mode-LAB.tif", photo.convert("LAB"))
    put("mode-P-transparent.gif", photo.convert("P"), transparency=0)


def _depths(put, gray: np.ndarray, rng: np.random.Generator) -> None:
    for top in (1, 127, 255, 1023, 4095, 16383, 65535):
        values = (gray.astype(np.float64) / 255 * top).astype(np.uint16)
        put(f"depth-16bit-max{top}.png", Image.fromarray(values))
        put(f"depth-16bit-max{top}.tif", Image.fromarray(values))
    put("depth-rgb16-low.png", _png(np.repeat(gray[:, :, None], 3, 2).astype(np.uint16)))
    put("depth-rgb16-full.png", _png(np.repeat(gray[:, :, None], 3, 2).astype(np.uint16) * 257))
    put("depth-rgba16.png", _png(rng.integers(0, 65535, (64, 96, 4)).astype(np.uint16)))
    put("depth-int32-negative.tif", Image.fromarray(gray.astype(np.int32) - 1000))
    for low, high in ((0, 1), (0, 255), (-5, 5), (0, 1e6)):
        values = (low + gray / 255 * (high - low)).astype(np.float32)
        put(f"depth-float-{low}-{high}.tif", Image.fromarray(values))


def _formats(put, photo: Image.Image) -> None:
    put("format-progressive.jpg", photo, progressive=True)
    put("format-quality5.jpg", photo, quality=5)
    for bits in ("1", "L", "P", "RGB", "RGBA"):
        put(f"format-bmp-{bits}.bmp", photo.convert(bits))
    for compression in ("raw", "tiff_lzw", "tiff_deflate", "jpeg", "packbits"):
        put(f"format-tiff-{compression}.tif", photo, compression=compression)
    put("format-multipage.tif", photo, save_all=True, append_images=[photo.rotate(90)])
    frames = [photo.rotate(angle) for angle in (0, 90, 180)]
    put("format-animated.gif", frames[0], save_all=True, append_images=frames[1:], loop=0)
    put("format-animated.webp", frames[0], save_all=True, append_images=frames[1:])
    put("format-lossless.webp", photo, lossless=True)
    put("format-lossy.webp", photo, quality=20)
    put("format-png-interlaced.png", photo, optimize=True)
    put("FORMAT-UPPER.JPG", photo)
    put("format-double.png.png", photo)


def _orientations(put, photo: Image.Image) -> None:
    for orientation in range(1, 9):
        exif = photo.getexif()
        exif[0x0112] = orientation
        put(f"exif-orientation-{orientation}.jpg", photo, exif=exif)


def _sizes(put, rng: np.random.Generator) -> None:
    for width, height in ((1, 1), (15, 15), (16, 16), (15, 200), (16, 512), (16, 513), (512, 16)):
        put(f"size-{width}x{height}.png", Image.new("L", (width, height), 128))
    for width, height in ((16, 3000), (16, 20000), (16, 200000), (3200, 100), (17, 544)):
        put(f"strip-{width}x{height}.png", Image.new("L", (width, height), 128))
    put("strip-1767x56544.png", Image.new("L", (1767, 56544), 90))  # 100 MP at 32:1
    put("solid-9000x9000.png", Image.new("L", (9000, 9000), 200))
    put("solid-10000x9999.png", Image.new("RGB", (10000, 9999), (20, 90, 160)))
    put("solid-10001x10000.png", Image.new("L", (10001, 10000), 7))  # just over MAX_PIXELS
    put("noise-4000.jpg", Image.fromarray(rng.integers(0, 255, (3000, 4000, 3), np.uint8)))
    put("size-640x640.png", Image.fromarray(rng.integers(0, 255, (640, 640, 3), np.uint8)))


def _encoded(photo: Image.Image, gray: np.ndarray, kind: str) -> bytes:
    buffer = io.BytesIO()
    if kind == "16bit.png":
        Image.fromarray(gray.astype(np.uint16) * 257).save(buffer, format="PNG")
    elif kind == "progressive.jpg":
        photo.save(buffer, format="JPEG", progressive=True)
    else:
        photo.save(buffer, format={"jpg": "JPEG", "tif": "TIFF"}.get(kind, kind.upper()))
    return buffer.getvalue()


def _truncations(put, data: bytes, name: str) -> None:
    offsets = {0, 1, 4, 8, 16, 24, 33, 50, 100, 200, len(data) - 1, len(data) - 12}
    offsets |= {round(len(data) * share) for share in (0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.9, 0.99)}
    for offset in sorted(offsets)[:20]:
        put(f"truncated-{name.replace('.', '-')}-at-{offset}.{name.split('.')[-1]}", data[:offset])


def _corruptions(put, png: bytes, jpeg: bytes, rng: np.random.Generator) -> None:
    for kind, data in (("png", png), ("jpg", jpeg)):
        for position in rng.integers(0, len(data), 20):
            flipped = bytearray(data)
            flipped[position] ^= 1 << int(rng.integers(0, 8))
            put(f"bitflip-{kind}-{position}.{kind}", bytes(flipped))
    for suffix in ("png", "jpg", "jpeg", "bmp", "gif", "tif", "tiff", "webp"):
        put(f"empty.{suffix}", b"")
        put(f"junk.{suffix}", rng.integers(0, 256, 5000, np.uint8).tobytes())
    put("text.png", b"this is not an image\n")
    put("html.jpg", b"<html><body>not an image</body></html>")
    put("zip.png", b"PK\x03\x04" + bytes(100))
    put("png-named.jpg", png)
    put("jpeg-named.png", jpeg)
    put("png-then-junk.png", png + bytes(rng.integers(0, 256, 3000, np.uint8)))
    put("png-no-iend.png", png[:-12])
    put("jpeg-doubled.jpg", jpeg + jpeg)


def _bombs(put, jpeg: bytes) -> None:
    put("bomb-header-100000.png", _png_header(100000, 100000))
    put("bomb-header-65535x1.png", _png_header(65535, 1))
    put("bomb-zlib-30000.png", _zlib_bomb(30000))
    put("bomb-zlib-12000.png", _zlib_bomb(12000))  # 144 MP: between MAX_PIXELS and Pillow's
    start = jpeg.index(b"\xff\xc0") + 5
    put("bomb-jpeg-65500.jpg", jpeg[:start] + struct.pack(">HH", 65500, 65500) + jpeg[start + 4 :])
    gif = io.BytesIO()
    Image.new("P", (16, 16)).save(gif, format="GIF")
    data = gif.getvalue()
    put("bomb-gif-65535.gif", data[:6] + struct.pack("<HH", 65535, 65535) + data[10:])
    bmp = io.BytesIO()
    Image.new("L", (16, 16)).save(bmp, format="BMP")
    data = bmp.getvalue()
    put("bomb-bmp-50000.bmp", data[:18] + struct.pack("<ii", 50000, 50000) + data[26:])
    put("bomb-text-chunk.png", _png_with_text_bomb())


def _non_finite(put, rng: np.random.Generator) -> None:
    values = rng.random((64, 96)).astype(np.float32)
    for name, value in (("nan-block", np.nan), ("inf-block", np.inf), ("neg-inf", -np.inf)):
        spoiled = values.copy()
        spoiled[10:30, 10:30] = value
        put(f"float-{name}.tif", Image.fromarray(spoiled))
    put("float-all-nan.tif", Image.fromarray(np.full((64, 96), np.nan, np.float32)))


def _names(put, png: bytes) -> None:
    names = [
        "name with spaces.png",
        "naïve-café.png",
        "名前.png",
        "emoji-🔍.png",
        "-leading-dash.png",
        "quote'\"<b>html</b>&amp;.png",
        "percent-%s-%d.png",
        "line\nbreak.png",
        "tab\tname.png",
        "same.png",
        "same.jpg",
        "same.PNG",
        "l" * 230 + ".png",  # 234 bytes: outputs and their temporary names grow past 255
        "m" * 250 + ".png",
    ]
    for name in names:
        put(name, png)
    put(os.fsdecode(b"latin1-caf\xe9.png"), png)  # not UTF-8


def _not_images(root: Path, put, png: bytes, made: list[str]) -> None:
    put(".hidden.png", png)
    put(".hidden-folder/inside.png", png)
    put("folder/inside.png", png)
    put("folder/.hidden-in-folder.png", png)
    put("folder/deeper/inside.png", png)
    put("dir-named.png/inside.png", png)
    put("no-suffix", png)
    for suffix in ("heic", "heif", "avif", "jxl", "svg", "psd", "txt", "pdf"):
        put(f"other.{suffix}", png if suffix != "svg" else b"<svg></svg>")
    links = {
        "link-broken.png": "nowhere.png",
        "link-loop.png": "link-loop.png",
        "link-to-file.png": "folder/inside.png",
        "link-to-folder": "folder",
        "link-to-parent": ".",
    }
    for name, target in links.items():
        (root / name).symlink_to(target)
        made.append(name)
    os.mkfifo(root / "fifo.png")
    made.append("fifo.png")
    with socket.socket(socket.AF_UNIX) as unix:
        unix.bind(str(root / "socket.png"))
    made.append("socket.png")
    unreadable = put("unreadable.png", png)
    unreadable.chmod(0)


def _png(array: np.ndarray) -> bytes:
    """A 16-bit PNG of an (H, W, 3 or 4) uint16 array, which Pillow cannot write."""
    height, width, channels = array.shape
    rows = array.astype(">u2").reshape(height, -1).view(np.uint8).reshape(height, -1)
    body = b"".join(b"\0" + row.tobytes() for row in rows)
    header = struct.pack(">IIBBBBB", width, height, 16, {3: 2, 4: 6}[channels], 0, 0, 0)
    return _png_chunks([(b"IHDR", header), (b"IDAT", zlib.compress(body))])


def _png_header(width: int, height: int) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return _png_chunks([(b"IHDR", header), (b"IDAT", zlib.compress(b"\0" * 64))])


def _zlib_bomb(side: int) -> bytes:
    """A real one-colour grey PNG of side x side pixels, written a row at a time."""
    compressor, row, parts = zlib.compressobj(9), b"\0" + bytes(side), []
    parts = [compressor.compress(row) for _ in range(side)]
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return _png_chunks([(b"IHDR", header), (b"IDAT", b"".join(parts))])


def _png_with_text_bomb() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (32, 32)).save(buffer, format="PNG")
    data = buffer.getvalue()
    text = b"Comment\0\0" + zlib.compress(bytes(200 * MEGABYTE), 9)
    return data[:33] + _png_chunks([(b"zTXt", text)], signature=False) + data[33:]


def _png_chunks(chunks: list[tuple[bytes, bytes]], signature: bool = True) -> bytes:
    out = [b"\x89PNG\r\n\x1a\n"] if signature else []
    for kind, body in [*chunks, *([(b"IEND", b"")] if signature else [])]:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        out.append(struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc))
    return b"".join(out)


# -- the channels ------------------------------------------------------------------------------


def probe_cli(model: Path, corpus: Path, tried: list[str], output: Path) -> Tally:
    """`anomalens predict` on the corpus folder; every path must be inspected, an error or
    skipped, each with a word."""
    started = time.perf_counter()
    done = subprocess.run(
        [*ANOMALENS, "predict", str(model), str(corpus), "-o", str(output)],
        capture_output=True,
        text=True,
        errors="replace",
    )
    tally = Tally(tried=len(tried), tracebacks=_tracebacks(done.stderr))
    results_file = output / "results.json"
    if not results_file.is_file():
        tally.tracebacks.append(f"no results.json (exit {done.returncode})")
        return tally
    results = json.loads(results_file.read_text())
    said = {
        entry["path"] for key in ("images", "errors", "skipped") for entry in results.get(key, [])
    }
    tally.inspected, tally.errors = len(results["images"]), len(results["errors"])
    tally.skipped = len(results.get("skipped", []))
    inside = {str(parent) for said_path in said for parent in Path(said_path).parents}
    for name in tried:
        path = corpus / name
        if str(path) not in inside and not any(str(p) in said for p in (path, *path.parents)):
            tally.silent.append(name)  # neither reported, nor under a folder reported
    print(f"CLI predict on the corpus: {_since(started)}, exit {done.returncode}: {tally}")
    return tally


API_PROBE = """
import json, sys, traceback
from anomalens.detector import Detector
from anomalens.errors import AnomalensError
detector = Detector.load(sys.argv[1])
counts = {"inspected": 0, "errors": 0, "tracebacks": []}
for path in json.loads(open(sys.argv[2]).read()):
    try:
        (result,) = detector.predict([path])  # an unusable image comes back with its error
        counts["errors" if result.error else "inspected"] += 1
    except AnomalensError:
        counts["errors"] += 1
    except Exception:
        counts["tracebacks"].append(path + ": " + traceback.format_exc(limit=2)[-300:])
print(json.dumps(counts))
"""


def probe_api(model: Path, corpus: Path, tried: list[str], work: Path) -> Tally:
    """`Detector.predict([path])` on every path, in a child process."""
    started = time.perf_counter()
    listing = work / "api-paths.json"
    listing.write_text(json.dumps([str(corpus / name) for name in tried]))
    done = subprocess.run(
        [sys.executable, "-c", API_PROBE, str(model), str(listing)],
        capture_output=True,
        text=True,
        errors="replace",
    )
    tally = Tally(tried=len(tried))
    if done.returncode != 0:
        tally.tracebacks = [f"API probe exited {done.returncode}: {done.stderr[-500:]}"]
        return tally
    counts = json.loads(done.stdout.splitlines()[-1])
    tally.inspected, tally.errors, tally.tracebacks = (
        counts["inspected"],
        counts["errors"],
        counts["tracebacks"],
    )
    print(f"API on every path: {_since(started)}: {tally}")
    return tally


def probe_memory(model: Path, corpus: Path, work: Path) -> list[tuple[str, float, float]]:
    """(input, peak RSS of `anomalens predict` on it alone, that less a small image's), MB."""
    small = corpus / "mode-RGB.png"
    base = _peak_rss([*ANOMALENS, "predict", str(model), str(small), "-o", str(work / "small")])
    measured = []
    for name in HEAVY:
        output = work / name
        peak = _peak_rss([*ANOMALENS, "predict", str(model), str(corpus / name), "-o", str(output)])
        measured.append((name, peak, peak - base))
        print(f"peak memory, predict {name}: {peak:.0f} MB, {peak - base:.0f} MB over a small one")
    return measured


def _peak_rss(command: list[str]) -> float:
    """Peak resident memory of `command`, in MB."""
    process = subprocess.Popen(command, **QUIET)
    _, _, usage = os.wait4(process.pid, 0)
    return usage.ru_maxrss / 1024


# -- kills -------------------------------------------------------------------------------------


@dataclass
class Kills:
    fit_kills: int = 0
    models_lost: int = 0
    stray_after_kill: int = 0
    stray_after_load: int = 0
    predict_kills: int = 0
    results_lost: int = 0
    outputs_on_disk: int = 0


def probe_kills(references: Path, model: Path, corpus: Path, work: Path, count: int) -> Kills:
    """SIGKILL `fit` (fitting or saving over the model of the kill before) and `predict` at
    random moments; see the module docstring for what is counted."""
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    target = work / "models" / "model"
    fit = [*ANOMALENS, "fit", str(references), "-o", str(target), *KILL_METHOD]
    started = time.perf_counter()
    _check(subprocess.run(fit, **QUIET))
    duration = time.perf_counter() - started
    kills = Kills()
    for _ in range(count):
        process = subprocess.Popen(fit, **QUIET)
        time.sleep(rng.uniform(0.5, 1.05) * duration)  # the save comes at the very end
        process.send_signal(signal.SIGKILL)
        process.wait()
        kills.fit_kills += 1
        kills.stray_after_kill += len(_strays(target))
        if not _loads(target):
            kills.models_lost += 1
            _check(subprocess.run(fit, **QUIET))  # the next kill replaces a model again
        kills.stray_after_load += len(_strays(target))
    images = [p for p in sorted(corpus.iterdir()) if p.name.startswith(("mode-", "exif-"))]
    inputs = work / "predict-inputs"
    inputs.mkdir(exist_ok=True)
    for path in images:
        shutil.copy(path, inputs / path.name)
    started = time.perf_counter()
    predict = [*ANOMALENS, "predict", str(model), str(inputs), "-o"]
    _check(subprocess.run([*predict, str(work / "whole")], **QUIET), allowed=(0, 1))
    duration = time.perf_counter() - started
    for index in range(count):
        output = work / f"predicted-{index}"
        process = subprocess.Popen([*predict, str(output)], **QUIET)
        time.sleep(rng.uniform(0.3, 0.95) * duration)
        process.send_signal(signal.SIGKILL)
        process.wait()
        kills.predict_kills += 1
        written, lost = _lost_results(output)
        kills.outputs_on_disk += written
        kills.results_lost += lost
    print(f"kills: {kills}")
    return kills


def _strays(target: Path) -> list[Path]:
    """What a save left beside the model folder besides the model itself."""
    return [path for path in target.parent.iterdir() if path.name != target.name]


def _loads(target: Path) -> bool:
    try:
        Detector.load(target)
        return True
    except Exception as error:  # a raw error from a half-written model counts as lost too
        print(f"  after a kill, {target} does not load: {type(error).__name__}: {error}")
        return False


def _lost_results(output: Path) -> tuple[int, int]:
    """(mask and overlay files on disk, those of them no results record names)."""
    records: list[dict] = []
    if (output / "results.json").is_file():
        records = json.loads((output / "results.json").read_text()).get("images", [])
    elif (output / "results.jsonl").is_file():
        for line in (output / "results.jsonl").read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):  # the line the kill cut short
                records.append(json.loads(line))
    named = {record.get(key) for record in records for key in ("mask", "overlay")}
    written = [
        path.relative_to(output).as_posix()
        for folder in ("masks", "overlays")
        if (output / folder).is_dir()
        for path in (output / folder).rglob("*.png")
    ]
    return len(written), sum(name not in named for name in written)


# -- the server --------------------------------------------------------------------------------


@dataclass
class Load:
    clients: int
    seconds: float
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float


def probe_server(
    model: Path, corpus: Path, tried: list[str], root: Path, args: argparse.Namespace
) -> tuple[Tally, dict]:
    """Post every corpus file to a loopback server, then load it; (tally, load figures)."""
    root.mkdir(parents=True)
    ModelStore(root).add("probe", Detector.load(model))
    port = _free_port()
    log = (root / "server.log").open("w")
    server = subprocess.Popen(
        [*ANOMALENS, "serve", "--models", str(root), "--port", str(port)], stderr=log, stdout=log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(url)
        rss_start = _rss(server.pid)
        tally = _post_corpus(url, corpus, tried)
        tests = sorted(p for p in (args.data / "test").rglob("*") if is_image_file(p))
        images = [path.read_bytes() for path in tests]
        loads = []
        for clients in (20, 50):
            options = argparse.Namespace(
                url=url, model="probe", clients=clients, seconds=args.seconds, no_pictures=False
            )
            latencies, errors, elapsed = _run_clients(options, images)
            p50, p99 = np.percentile(np.array(latencies) * 1000, [50, 99])
            loads.append(Load(clients, elapsed, len(latencies), len(errors), p50, p99))
            print(f"load, {clients} clients: {len(latencies)} requests, {len(errors)} errors")
        rss_end = _rss(server.pid)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
    tally.tracebacks += _tracebacks((root / "server.log").read_text(errors="replace"))
    return tally, {"loads": loads, "rss_start": rss_start, "rss_end": rss_end}


def _post_corpus(url: str, corpus: Path, tried: list[str]) -> Tally:
    tally = Tally()
    started = time.perf_counter()
    with httpx.Client(base_url=url, timeout=600) as client:
        for name in tried:
            path = corpus / name
            try:
                data = path.read_bytes() if path.is_file() and not path.is_symlink() else None
            except OSError:
                data = None
            if data is None:
                continue  # a link, FIFO, socket, folder or unreadable file: nothing to upload
            tally.tried += 1
            filename = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            try:
                response = client.post(
                    "/api/models/probe/inspect?pictures=true",
                    files=[("files", (Path(filename).name, data))],
                )
            except httpx.HTTPError as error:
                tally.tracebacks.append(f"{name}: {type(error).__name__}: {error}")
                continue
            if response.status_code == 200:
                tally.inspected += 1
            elif 400 <= response.status_code < 500:
                tally.errors += 1
            else:
                tally.tracebacks.append(f"{name}: HTTP {response.status_code}")
    print(f"server on every file: {_since(started)}: {tally}")
    return tally


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for(url: str) -> None:
    for _ in range(240):
        try:
            if httpx.get(f"{url}/api/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url}: the server did not start")


def _rss(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return float("nan")


# -- report ------------------------------------------------------------------------------------


def report(cli: Tally, api: Tally, server: Tally, memory, kills: Kills, load: dict) -> None:
    print()
    print(f"{'':24}{'CLI':>10}{'API':>10}{'server':>10}")
    for label, key in (
        ("files tried", "tried"),
        ("inspected", "inspected"),
        ("clean per-file errors", "errors"),
        ("skipped, with a reason", "skipped"),
    ):
        print(f"{label:24}" + "".join(f"{getattr(t, key):>10}" for t in (cli, api, server)))
    print(f"{'tracebacks':24}" + "".join(f"{len(t.tracebacks):>10}" for t in (cli, api, server)))
    print(f"{'skipped without a word':24}{len(cli.silent):>10}{'-':>10}{'-':>10}")
    for tally, channel in ((cli, "CLI"), (api, "API"), (server, "server")):
        for problem in tally.tracebacks[:3]:
            print(f"  {channel} traceback: {problem.strip()[-300:]}")
    for name in cli.silent[:5]:
        print(f"  skipped without a word: {name!r}")
    worst = max(memory, key=lambda item: item[2])
    print(
        f"peak memory per image, worst input ({worst[0]}): {worst[2]:.0f} MB over a small "
        f"image (process peak {worst[1]:.0f} MB)"
    )
    print(
        f"kill -9 during fit/save: {kills.fit_kills} kills, {kills.models_lost} models lost, "
        f"{kills.stray_after_kill} stray folders after the kills, {kills.stray_after_load} "
        "after the next load"
    )
    print(
        f"kill -9 during predict: {kills.predict_kills} kills, {kills.outputs_on_disk} masks and "
        f"overlays on disk, results lost: {kills.results_lost}"
    )
    for run_ in load["loads"]:
        print(
            f"server, {run_.clients} clients for {run_.seconds:.0f} s: {run_.requests} requests, "
            f"{run_.errors} errors, p50 {run_.p50_ms:.0f} ms, p99 {run_.p99_ms:.0f} ms"
        )
    print(
        f"server RSS: {load['rss_start']:.0f} MB at the start, {load['rss_end']:.0f} MB at the end"
    )
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")


# -- helpers -----------------------------------------------------------------------------------

QUIET = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}


def _check(done: subprocess.CompletedProcess, allowed: tuple[int, ...] = (0,)) -> None:
    if done.returncode not in allowed:
        raise SystemExit(f"{' '.join(map(str, done.args))}: exit {done.returncode}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _tracebacks(text: str) -> list[str]:
    return [part[:300] for part in text.split("Traceback (most recent call last):")[1:]]


def _since(started: float) -> str:
    return f"{time.perf_counter() - started:.0f} s"


if __name__ == "__main__":
    main()
