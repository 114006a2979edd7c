"""One thread count for everything that computes: torch (intra- and inter-op), faiss, the
OpenMP and BLAS pools already loaded, and the OpenMP/MKL settings child processes inherit.

Each library otherwise starts one thread per core on its own, and on a machine whose cores are
busy with other work those threads wait on each other: on a loaded 2-core machine one thread
made fit and predict faster (benchmarks/threads.py; docs/results.md, "Threads").

    from anomalens.threads import set_threads, current_threads
    set_threads(2)       # once, before the work; Detector(threads=2) and --threads 2 call it
    current_threads()    # what ONNX Runtime or OpenVINO sessions should use too
"""

import contextlib
import os

import faiss
import torch
from threadpoolctl import threadpool_limits

from anomalens.errors import ConfigError

DEFAULT_THREADS = 1
"""The default thread count: on a loaded 2-core machine two threads took over 1.6 times as long
as one (benchmarks/threads.py; docs/results.md, "Threads"), and the issue saw one thread make
fit and predict 3-4x faster on a busy machine."""
THREADS_ENV = "ANOMALENS_THREADS"
"""Environment variable that replaces DEFAULT_THREADS (a positive whole number)."""
CHILD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
"""Variables set for child processes, which read them when their libraries load."""

_current: int | None = None


def default_threads() -> int:
    """$ANOMALENS_THREADS when set, else DEFAULT_THREADS; never more than the usable cores."""
    text = os.environ.get(THREADS_ENV, "")
    count = int(text) if text.strip().isdigit() and int(text) > 0 else DEFAULT_THREADS
    return min(count, len(os.sched_getaffinity(0)))


def set_threads(count: int | None = None) -> int:
    """Use `count` threads in every library from now on; None keeps the count set before, or
    sets `default_threads()` the first time. Returns the count in force."""
    global _current
    if count is None and _current is not None:
        return _current
    if count is not None and count < 1:
        raise ConfigError(f"the thread count must be at least 1, got {count}")
    count = count or default_threads()
    torch.set_num_threads(count)
    if torch.get_num_interop_threads() != count:
        # torch allows it only before its first inter-op parallel work
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(count)
    faiss.omp_set_num_threads(count)
    threadpool_limits(count)  # OpenMP and BLAS pools loaded by numpy, scipy, torch and faiss
    os.environ.update(dict.fromkeys(CHILD_ENV, str(count)))
    _current = count
    return count


def current_threads() -> int:
    """The thread count in force (`set_threads` applies the default if nothing was set yet)."""
    return set_threads()
