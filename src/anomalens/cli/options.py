"""Options and helpers shared by several commands."""

import argparse
import errno
import json
import os
import stat
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anomalens.batch.sources import unique_names
from anomalens.errors import AnomalensError
from anomalens.features import NATIVE
from anomalens.io.images import IMAGE_SUFFIXES, is_image_file
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


HIDDEN = "hidden (its name starts with a dot)"
NOT_AN_IMAGE = f"not an image suffix ({', '.join(sorted(IMAGE_SUFFIXES))})"
BROKEN_LINK = "broken link (its target does not exist)"
LINK_LOOP = "link loop, or a link to a folder already searched"
NOT_A_FILE = "not a regular file (a FIFO, socket or device)"
UNREADABLE = "folder or file that cannot be read"
SHOWN = 3
"""Paths named in each summary line; results.json lists them all."""


@dataclass(frozen=True)
class Skipped:
    """A path found in an input folder and not inspected, and why (one of the reasons above)."""

    path: Path
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"path": str(self.path), "reason": self.reason}


@dataclass
class ImageFiles:
    """What `image_files` found: the images to inspect and every path it passed over.

    Iterating gives the (image file, output name) pairs.
    """

    files: list[tuple[Path, str]] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def __iter__(self) -> Iterator[tuple[Path, str]]:
        return iter(self.files)

    def summary(self) -> list[str]:
        """One line per reason: how many paths were skipped for it, and the first few."""
        return skipped_summary(self.skipped)


def skipped_summary(skipped: list[Skipped]) -> list[str]:
    """One line per reason: how many paths were skipped for it, and the first few."""
    by_reason: dict[str, list[Path]] = defaultdict(list)
    for passed in skipped:
        by_reason[passed.reason].append(passed.path)
    lines = []
    for reason, paths in by_reason.items():
        shown = ", ".join(str(path) for path in paths[:SHOWN])
        more = f" and {len(paths) - SHOWN} more" if len(paths) > SHOWN else ""
        lines.append(f"skipped {len(paths)}: {reason}: {shown}{more}")
    return lines


def image_files(inputs: list[Path]) -> ImageFiles:
    """(image file, output name) for each file given and each image under each folder given,
    and every other path under those folders with why it was skipped.

    Folders are searched recursively, following links to folders once; hidden files and
    folders (a name starting with a dot) are skipped alike when found in a search and read when
    given. The output name is the path relative to the folder (or the file name for a file given
    directly), with its suffix removed, and "-2", "-3", ... appended when an earlier file already
    has that name (a.png and a.jpg, or two folders holding 000.png), so that no output
    overwrites another.
    """
    found = ImageFiles()
    named: list[tuple[Path, str]] = []
    for source in inputs:
        if source.is_dir():
            relative = [(path, path.relative_to(source)) for path in _search(source, found.skipped)]
        else:
            relative = [(source, Path(source.name))]
        named += [(path, part.with_suffix("").as_posix()) for path, part in relative]
    found.files = unique_names(named, set())
    return found


def _search(folder: Path, skipped: list[Skipped], seen: set[Path] | None = None) -> list[Path]:
    """Image files under `folder`, sorted, files of a folder before its subfolders; appends
    every other path to `skipped`."""
    seen = seen if seen is not None else {folder.resolve()}
    try:
        with os.scandir(folder) as listing:
            entries = sorted(listing, key=lambda entry: entry.name)
    except OSError as error:
        skipped.append(Skipped(folder, f"{UNREADABLE}: {error.strerror}"))
        return []
    images, folders = [], []
    for entry in entries:
        path = Path(entry.path)
        reason = _skip_reason(path)
        if reason is None and path.is_dir():
            if path.resolve() in seen:
                reason = LINK_LOOP
            else:
                seen.add(path.resolve())  # now, so that a link beside it is not searched again
                folders.append(path)
                continue
        if reason is None:
            images.append(path)
        else:
            skipped.append(Skipped(path, reason))
    return images + [image for path in folders for image in _search(path, skipped, seen)]


def _skip_reason(path: Path) -> str | None:
    """Why a path found in a search is not an image to read, or None (a folder or an image)."""
    if path.name.startswith("."):
        return HIDDEN
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return BROKEN_LINK
    except OSError as error:
        return LINK_LOOP if error.errno == errno.ELOOP else f"{UNREADABLE}: {error.strerror}"
    if stat.S_ISDIR(mode):
        return None
    if not stat.S_ISREG(mode):
        return NOT_A_FILE
    return None if is_image_file(path) else NOT_AN_IMAGE


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
