"""Freed memory is kept for reuse: prediction does not map and fault in its arrays anew every
image."""

import os
import subprocess
import sys

import pytest

from anomalens.allocator import RELEASE_ENV

FREED = """
import sys
import numpy as np
from anomalens.allocator import keep_freed_memory

def resident():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096

kept = keep_freed_memory() if sys.argv[1] == "keep" else False
array = np.ones(2**23)  # 64 MB, every page written
before = resident()
del array
print(kept, before - resident())
"""


def freed_bytes(mode: str, **env: str) -> tuple[str, int]:
    """(whether the thresholds were raised, bytes handed back when a 64 MB array is freed)."""
    output = subprocess.run(
        [sys.executable, "-c", FREED, mode],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return output[0], int(output[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_a_freed_array_stays_mapped_for_the_next_one():
    kept, returned = freed_bytes("keep")
    released, released_returned = freed_bytes("default")
    assert kept == "True" and released == "False"
    assert returned < 2**20 and released_returned > 60 * 2**20


def test_the_environment_keeps_the_c_library_behaviour():
    kept, _ = freed_bytes("keep", **{RELEASE_ENV: "1"})
    assert kept == "False"
