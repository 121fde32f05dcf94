"""runtime/heap.py: `import tracegrad` keeps freed memory for the next step (glibc only).

The pattern below is an eager step's: many arrays of a few hundred KiB made, then all freed
together. Under glibc's defaults every round faults its pages in again; tuned, only the first.
Page faults are counted by the kernel (`ru_minflt`), not timed.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

glibc = pytest.mark.skipif(
    not (hasattr(os, "confstr") and (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")),
    reason="glibc's malloc only",
)

PATTERN = """
import resource, sys
import numpy as np
import tracegrad
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
rounds = []
for _ in range(5):
    f0 = faults()
    arrays = [np.ones(128 * 1024, np.float32) for _ in range(40)]  # 40 x 512 KiB
    del arrays
    rounds.append(faults() - f0)
print(tracegrad._heap.STATE)
print(*rounds)
"""


def _run(**env: str) -> tuple[str, list[int]]:
    mine = ("MALLOC_", "TRACEGRAD_MALLOC", "GLIBC_TUNABLES")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(mine)}
    out = subprocess.run(
        [sys.executable, "-c", PATTERN],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    return out[0], [int(n) for n in out[1].split()]


@glibc
def test_freed_arrays_are_reused_without_page_faults() -> None:
    state, rounds = _run()
    assert state == "tuned"
    pages = 40 * 512 // 4  # the arrays' 4 KiB pages
    assert rounds[0] >= pages // 2  # the first round faults its memory in ...
    assert max(rounds[1:]) < pages // 20, rounds  # ... and later rounds reuse it


@glibc
@pytest.mark.parametrize(
    ("env", "why"),
    [
        ({"TRACEGRAD_MALLOC": "system"}, "TRACEGRAD_MALLOC=system"),
        ({"MALLOC_TRIM_THRESHOLD_": "131072"}, "MALLOC_TRIM_THRESHOLD_"),
        ({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=131072"}, "GLIBC_TUNABLES"),
    ],
)
def test_a_choice_of_the_user_is_left_alone(env: dict, why: str) -> None:
    state, rounds = _run(**env)
    assert state.startswith("left alone") and why in state
    # glibc's own thresholds: every round faults again (what tune() prevents)
    pages = 40 * 512 // 4
    assert min(rounds[1:]) >= pages // 2, rounds
