"""What a batch inspects: image files, folders, lists of files and URIs, each with the name its
outputs get; and reading one of them, wherever it lies."""

import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TypeVar

import numpy as np

from anomalens.errors import AnomalensError, ImageError
from anomalens.io.images import is_image_file, load_image

LIST_SUFFIX = ".txt"
"""An input with this suffix lists inputs, one path or URI a line ('#' starts a comment;
relative paths are relative to the list's folder)."""
Source = TypeVar("Source")

OUTPUT_FILE = "inside the output folder"
"""Why a prediction's own files (results, masks, overlays) are not read as inputs."""
URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
"""A URI (s3://, gs://, hdfs://, file://): read through pyarrow's filesystems."""


@dataclass(frozen=True)
class Item:
    """One image to inspect.

    Attributes:
        source: a local path, or a URI that pyarrow's filesystems read.
        name: its outputs' name, the path relative to the folder given (the file name for a
            file given directly) without its suffix, unique among the batch's names.
    """

    source: str
    name: str


def is_uri(text: str) -> bool:
    """Whether `text` is a URI rather than a local path."""
    return bool(URI.match(text))


def discover(inputs: Iterable[str], outputs: Sequence[Path] = ()) -> tuple[list[Item], list]:
    """The items of `inputs` (image files, folders searched recursively, `.txt` lists of either,
    URIs of files or folders), and the paths skipped (`cli.options.Skipped`): those `image_files`
    passes over, and files inside the `outputs` folders (a prediction's own masks and overlays
    are not inputs).

    Local inputs get the names `cli.options.image_files` gives; a folder that cannot be read is
    an AnomalensError naming it.
    """
    from anomalens.cli.options import Skipped, image_files  # the cli package imports this one

    local, remote = [], []
    for given in _expanded(inputs):
        (remote if is_uri(given) else local).append(given)
    try:
        images = image_files([Path(p) for p in local])
    except OSError as error:
        raise AnomalensError(f"{error.filename}: cannot be read ({error.strerror})") from None
    found = [(str(path), name) for path, name in images]
    found += unique_names(
        [pair for uri in remote for pair in _uri_files(uri)], {name for _, name in found}
    )
    excluded = [folder.resolve() for folder in outputs]
    items, skipped = (
        [],
        [
            Skipped(passed.path, OUTPUT_FILE) if _inside(passed.path, excluded) else passed
            for passed in images.skipped
        ],
    )
    for source, name in found:
        if not is_uri(source) and _inside(Path(source), excluded):
            skipped.append(Skipped(Path(source), OUTPUT_FILE))
        else:
            items.append(Item(source, name))
    return items, skipped


def _inside(path: Path, folders: list[Path]) -> bool:
    real = Path(os.path.realpath(path))  # a link loop resolves to itself, not an error
    return any(map(real.is_relative_to, folders))


def unique_names(pairs: list[tuple[Source, str]], taken: set[str]) -> list[tuple[Source, str]]:
    """(source, name) pairs with "-2", "-3", ... appended to each name already in `taken` or
    given earlier in `pairs`, so that no output overwrites another."""
    taken = set(taken)
    unique = []
    for source, name in pairs:
        candidate, copy = name, 1
        while candidate in taken:
            copy += 1
            candidate = f"{name}-{copy}"
        taken.add(candidate)
        unique.append((source, candidate))
    return unique


def read_image(source: str) -> np.ndarray:
    """The RGB uint8 array of a local image file or of an image at a URI; ImageError names the
    source for anything unreadable."""
    if not is_uri(source):
        return load_image(source)
    filesystem, path = _filesystem(source)
    try:
        with filesystem.open_input_stream(path) as stream:
            data = stream.read()
    except Exception as error:  # pyarrow raises OSError, ArrowInvalid or its own types
        raise ImageError(source, f"cannot be read ({error})") from None
    with tempfile.NamedTemporaryFile(suffix=PurePosixPath(path).suffix) as copy:
        copy.write(data)
        copy.flush()
        try:
            return load_image(copy.name)
        except ImageError as error:
            raise ImageError(source, error.problem) from None


def _expanded(inputs: Iterable[str]) -> Iterator[str]:
    """The inputs, each `.txt` list replaced by the entries it lists."""
    for given in inputs:
        if is_uri(given) or Path(given).suffix.lower() != LIST_SUFFIX:
            yield given
            continue
        listing = Path(given)
        try:
            lines = listing.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise AnomalensError(f"{listing}: cannot read the list of inputs ({error})") from None
        for line in lines:
            entry = line.split("#", 1)[0].strip()
            if entry:
                yield entry if is_uri(entry) else str(listing.parent / entry)


def _uri_files(uri: str) -> Iterator[tuple[str, str]]:
    """(URI, name) of the image at `uri`, or of each image under it, sorted; hidden files and
    folders left out."""
    from pyarrow import fs

    filesystem, root = _filesystem(uri)
    prefix = uri[: uri.index("://") + 3]
    info = filesystem.get_file_info(root)
    if info.type == fs.FileType.File:
        yield uri, PurePosixPath(root).stem
        return
    if info.type != fs.FileType.Directory:
        raise AnomalensError(f"{uri}: not found")
    entries = filesystem.get_file_info(fs.FileSelector(root, recursive=True))
    for entry in sorted(entries, key=lambda entry: entry.path):
        relative = PurePosixPath(entry.path).relative_to(PurePosixPath(root))
        hidden = any(part.startswith(".") for part in relative.parts)
        if entry.type == fs.FileType.File and is_image_file(Path(entry.path)) and not hidden:
            yield prefix + entry.path, relative.with_suffix("").as_posix()


def _filesystem(uri: str):  # -> (pyarrow.fs.FileSystem, path): pyarrow is an optional extra
    try:
        from pyarrow import fs
    except ImportError:
        raise AnomalensError(
            f"{uri}: reading URIs needs pyarrow (pip install 'anomalens[ray]')"
        ) from None
    try:
        return fs.FileSystem.from_uri(uri)
    except Exception as error:  # an unknown scheme, or a filesystem not built into pyarrow
        raise AnomalensError(f"{uri}: no filesystem for this URI ({error})") from None
