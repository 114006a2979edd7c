"""Which good images serve as references: a seeded k-shot draw, or a fixed list from a file."""

from pathlib import Path

import numpy as np

from anomalens.data.dataset import DatasetError, relative_name
from anomalens.errors import ConfigError
from anomalens.io.atomic import write_text

FULL = "full"
"""Shots value meaning every image of the reference pool."""
LISTED = "list"
"""Shots value of runs whose references come from a reference list file."""

Shots = int | str


def parse_shots(text: str) -> Shots:
    """A positive shot count, or "full"; ValueError otherwise (argparse reports it)."""
    if text == FULL:
        return FULL
    count = int(text)
    if count < 1:
        raise ConfigError(f"shots must be a positive number or {FULL!r}, got {text!r}")
    return count


def seeded_order(pool: list[Path], seed: int) -> list[Path]:
    """The sorted `pool` shuffled by `seed`: the first k images are the k-shot references.

    Deterministic across machines (numpy's PCG64), so a shot count and seed name a reference set.
    """
    ordered = sorted(pool)
    permutation = np.random.default_rng(seed).permutation(len(ordered))
    return [ordered[index] for index in permutation]


def shot_count(shots: Shots, pool: list[Path]) -> int:
    """How many references `shots` asks for from `pool`; DatasetError if the pool is too small."""
    if shots == FULL:
        return len(pool)
    if shots > len(pool):
        folder = pool[0].parent if pool else "the reference pool"
        raise DatasetError(f"{folder}: {shots} shots asked but it has only {len(pool)} images")
    return int(shots)


def read_reference_list(list_file: Path, root: Path) -> list[Path]:
    """Image paths listed in `list_file`, one per line, relative to `root` or absolute.

    Blank lines and lines starting with "#" are ignored. DatasetError names the list file and
    line of a path that is not a file.
    """
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"{list_file}: cannot read the reference list ({error})") from None
    references = []
    for number, line in enumerate(lines, start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        path = root / entry
        if not path.is_file():
            raise DatasetError(f"{list_file}, line {number}: {path} is not a file")
        references.append(path)
    if not references:
        raise DatasetError(f"{list_file}: the reference list names no images")
    return references


def write_reference_list(list_file: Path, references: list[Path], root: Path) -> Path:
    """Write `references` relative to `root`, in the format `read_reference_list` reads."""
    lines = [relative_name(path, root) for path in references]
    return write_text(list_file, "\n".join(lines) + "\n")
