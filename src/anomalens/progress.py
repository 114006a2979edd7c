"""Progress people can see: a spinner with the elapsed time for steps that count nothing, and
messages written above the progress bars instead of onto their line."""

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm import tqdm

TICK_SECONDS = 0.5
"""How often a spinner redraws its elapsed time."""


@contextmanager
def spinner(description: str, enabled: bool = True) -> Iterator[None]:
    """Show `description` with a spinning mark and the elapsed time while the block runs; the
    line stays, with the time it took, when it ends."""
    if not enabled:
        yield
        return
    bar = tqdm(desc=description, bar_format="{desc}: {elapsed}{postfix}", postfix="|")
    stop = threading.Event()
    ticker = threading.Thread(target=_tick, args=(bar, stop), daemon=True)
    ticker.start()
    try:
        yield
    finally:
        stop.set()
        ticker.join()
        bar.set_postfix_str("done", refresh=False)
        bar.close()


def _tick(bar: tqdm, stop: threading.Event) -> None:
    marks = "|/-\\"
    turn = 0
    while not stop.wait(TICK_SECONDS):
        turn += 1
        bar.set_postfix_str(marks[turn % len(marks)])  # redraws, with the new elapsed time


def say(message: str) -> None:
    """Write one line to stderr above any progress bar, which is then redrawn below it."""
    tqdm.write(message, file=sys.stderr)
