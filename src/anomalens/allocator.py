"""Keep freed memory for reuse instead of handing it back to the system (glibc's malloc).

glibc serves each allocation above a threshold (128 kB, rising with use up to 32 MB) with a
fresh memory map, unmaps it when it is freed, and trims the heap once 128 kB lie free at its top.
Prediction allocates and frees the same activations and distance matrices image after image, so
each image faulted its pages in anew: on a DeepPCB crop in the torch runtime, 20,000-60,000 page
faults and 50-130 ms of system time an image, a quarter of the prediction (docs/results.md,
"Freed memory kept"). With both thresholds raised those pages stay mapped, and a process's
resident memory stays at its peak rather than falling back between images.

    from anomalens.allocator import keep_freed_memory
    keep_freed_memory()   # once per process; every Detector calls it
"""

import ctypes
import os

THRESHOLD = 2**30
"""Allocations up to this size come from the heap, and up to this much free memory stays at its
top (1 GiB)."""
RELEASE_ENV = "ANOMALENS_RELEASE_MEMORY"
"""Set to 1 to keep the C library's own behaviour (memory handed back as soon as it is free)."""
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
"""glibc's mallopt parameters (malloc.h)."""

_kept: bool | None = None


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds to THRESHOLD, once per process. Returns whether
    they are raised: False where $ANOMALENS_RELEASE_MEMORY is 1 or the C library is not glibc."""
    global _kept
    if _kept is None:
        _kept = os.environ.get(RELEASE_ENV, "").strip() != "1" and _raise_thresholds()
    return _kept


def _raise_thresholds() -> bool:
    try:
        libc = ctypes.CDLL(None)
    except (OSError, TypeError):
        return False
    if not hasattr(libc, "gnu_get_libc_version"):  # other C libraries' mallopt differs or is a stub
        return False
    return all(libc.mallopt(option, THRESHOLD) for option in (_M_MMAP_THRESHOLD, _M_TRIM_THRESHOLD))
