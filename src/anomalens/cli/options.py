"""Options and helpers shared by several commands."""

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from anomalens.data.dataset import list_images
from anomalens.errors import AnomalensError
from anomalens.features import NATIVE


def add_detector_options(parser: argparse.ArgumentParser) -> None:
    """--method, --backbone, --resolution and repeatable --param KEY=VALUE."""
    parser.add_argument("--method", default="ensemble", help="detection method (default: ensemble)")
    parser.add_argument(
        "--backbone", help="feature backbone (default: the method's, efficientnet_lite0)"
    )
    parser.add_argument(
        "--resolution",
        type=resolution_argument,
        help="image size in px, the shorter side for anomalydino, or 'native' for each image's "
        "own size (default: the method's)",
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra method parameter, VALUE read as JSON when it parses (repeatable)",
    )


def add_runtime_options(parser: argparse.ArgumentParser) -> None:
    """--runtime and --device: where a loaded model's backbones run."""
    from anomalens.runtime import DEVICES, RUNTIMES

    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        help="backbone runtime (default: for an exported model the fastest measured at export, "
        "else torch)",
    )
    parser.add_argument(
        "--device",
        choices=DEVICES,
        default="cpu",
        help="cuda runs torch, or ONNX Runtime's CUDA provider where installed (default: cpu)",
    )


def resolution_argument(text: str) -> int | str:
    """A --resolution value: a whole number of pixels, or "native"."""
    return text if text == NATIVE else int(text)


def detector_params(pairs: list[str]) -> dict[str, Any]:
    """KEY=VALUE strings as keyword arguments; values are JSON when they parse, else text."""
    params = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key:
            raise AnomalensError(f"--param {pair!r}: expected KEY=VALUE")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def image_files(inputs: list[Path]) -> Iterator[tuple[Path, str]]:
    """(image file, output name) for each file given and each image under each folder given.

    Folders are searched recursively; the output name is the path relative to the folder
    (or the file name for a file given directly), with its suffix removed, and "-2", "-3", ...
    appended when an earlier file already has that name (a.png and a.jpg, or two folders
    holding 000.png), so that no output overwrites another.
    """
    taken: set[str] = set()
    for path, name in _named_files(inputs):
        unique, copy = name, 1
        while unique in taken:
            copy += 1
            unique = f"{name}-{copy}"
        taken.add(unique)
        yield path, unique


def _named_files(inputs: list[Path]) -> Iterator[tuple[Path, str]]:
    for source in inputs:
        if source.is_dir():
            for folder in sorted({source, *(p for p in source.rglob("*") if p.is_dir())}):
                for path in list_images(folder):
                    yield path, path.relative_to(source).with_suffix("").as_posix()
        else:
            yield source, Path(source.name).stem


def report_error(path: Path | str, error: Exception) -> None:
    """Print one failed file to stderr, in a form people and scripts can read."""
    print(
        f"error: {error}" if str(path) in str(error) else f"error: {path}: {error}", file=sys.stderr
    )
