"""Options and helpers shared by several commands."""

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from anomalens.data.dataset import list_images
from anomalens.errors import AnomalensError
from anomalens.features import NATIVE
from anomalens.methods import METHODS
from anomalens.progress import say
from anomalens.threads import DEFAULT_THREADS, THREADS_ENV


def add_detector_options(parser: argparse.ArgumentParser) -> None:
    """--method, --backbone, --weights, --resolution and repeatable --param KEY=VALUE."""
    parser.add_argument(
        "--method",
        default="ensemble",
        choices=sorted(METHODS),
        help="detection method: %(choices)s (default: %(default)s)",
    )
    parser.add_argument(
        "--backbone",
        help="feature backbone, one of `anomalens weights list` (default: the method's, "
        "efficientnet_lite0)",
    )
    parser.add_argument(
        "--weights",
        action=WeightsAction,
        metavar="PATH",
        help="the backbone's weights file or Hugging Face folder (default: found as `anomalens "
        "weights list` shows; same as --param weights=PATH)",
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


class WeightsAction(argparse.Action):
    """--weights PATH: adds weights=PATH to the --param list, so that every command passing
    `detector_params(args.param)` to the detector passes it on."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, "param", default=argparse.SUPPRESS, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        value: Any,
        option_string: str | None = None,
    ) -> None:
        namespace.param = [*namespace.param, f"weights={json.dumps(value)}"]


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


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    """--threads N: threads of torch, faiss and OpenMP (see `anomalens.threads`)."""
    parser.add_argument(
        "--threads",
        type=positive_int,
        metavar="N",
        help=f"threads to compute with (default: ${THREADS_ENV}, else {DEFAULT_THREADS}, "
        "measured fastest on a busy machine)",
    )


def positive_int(text: str) -> int:
    """argparse type of a whole number of at least 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def plural(count: int, noun: str) -> str:
    """ "1 reference", "2 references"."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def report_error(path: Path | str, error: Exception) -> None:
    """Print one failed file to stderr, above any progress bar, in a form people and scripts
    can read."""
    say(f"error: {error}" if str(path) in str(error) else f"error: {path}: {error}")
