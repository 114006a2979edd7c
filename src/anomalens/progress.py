"""Progress people can see: a spinner with the elapsed time for steps that count nothing, and
messages written above the progress bars instead of onto their line."""

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm import tqdm

TICK_SECONDS = 0.5
"""How often a spinner redraws its elapsed time."""
SHOW_AFTER = 1.0
"""Seconds a step or a loading loop runs before its spinner or bar appears: quicker ones would
only add lines."""


@contextmanager
def spinner(description: str, enabled: bool = True) -> Iterator[None]:
    """Show `description` with a spinning mark and the elapsed time while the block runs, once
    it has run SHOW_AFTER seconds; the line stays, with the time it took, when it ends."""
    if not enabled:
        yield
        return
    stop = threading.Event()
    shown: list[tqdm] = []
    ticker = threading.Thread(target=_spin, args=(description, stop, shown), daemon=True)
    ticker.start()
    try:
        yield
    finally:
        stop.set()
        ticker.join()
        for bar in shown:
            bar.set_postfix_str("done", refresh=False)
            bar.close()


def _spin(description: str, stop: threading.Event, shown: list[tqdm]) -> None:
    started = time.time()
    if stop.wait(SHOW_AFTER):
        return
    bar = tqdm(desc=description, bar_format="{desc}: {elapsed}{postfix}", postfix="|")
    bar.start_t = started  # the elapsed time counts from the step's start
    shown.append(bar)
    marks = "|/-\\"
    turn = 0
    while not stop.wait(TICK_SECONDS):
        turn += 1
        bar.set_postfix_str(marks[turn % len(marks)])  # redraws, with the new elapsed time


def say(message: str) -> None:
    """Write one line to stderr above any progress bar, which is then redrawn below it."""
    tqdm.write(message, file=sys.stderr)
