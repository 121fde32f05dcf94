"""glibc's malloc told to keep the memory an eager step frees, so that the next step reuses it
instead of faulting fresh pages in from the kernel.

An eager training step allocates its activations and gradients (numpy arrays of 0.1-10 MB)
and frees most of them together at the end of the backward pass. glibc's malloc serves such
sizes from the heap once its adaptive rule has seen one freed (`M_MMAP_THRESHOLD` rises to
the largest size freed, at most 32 MiB), but gives the heap's top back to the kernel whenever
more than `M_TRIM_THRESHOLD` (twice the former) is free there: the end of every step. The
next step then touches every page again, one minor page fault each. Measured on a 2-core VM
(a nanoGPT step, benchmarks/gpt.py): 1,222 faults per eager step, 14-22 ms a step, against
1 fault and 11-12 ms with the thresholds below; PyTorch's own step makes 11. A plain
pattern shows it as well (tests/runtime/test_heap.py): forty 512 KiB arrays made and freed
in a loop fault 5,100 pages every round under glibc's defaults and none after the first with
these settings.

`tune()` (called by `import tracegrad`) sets both thresholds to where glibc's own rule ends:
`M_MMAP_THRESHOLD` 32 MiB (its `DEFAULT_MMAP_THRESHOLD_MAX` on 64-bit) and `M_TRIM_THRESHOLD`
twice that. Up to 64 MiB of freed memory stays with the process instead of going back to
the kernel; arrays over 32 MiB are mapped and unmapped as before. This is the process's
malloc, not tracegrad's alone, so it is left alone where someone chose otherwise:
`TRACEGRAD_MALLOC=system`, glibc's own `MALLOC_*_` variables or `GLIBC_TUNABLES` with a
`glibc.malloc.` entry, another malloc in `LD_PRELOAD` (jemalloc, tcmalloc, mimalloc), or a C
library other than glibc (macOS, musl). `STATE` says which (docs/layout.md).
"""

from __future__ import annotations

import os

M_TRIM_THRESHOLD = -1  # glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's DEFAULT_MMAP_THRESHOLD_MAX for 64-bit processes
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD  # glibc's adaptive rule keeps trim at twice mmap

_GLIBC_VARIABLES = (
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "MALLOC_MMAP_MAX_",
)
_OTHER_MALLOCS = ("jemalloc", "tcmalloc", "mimalloc")

STATE = "not tuned yet"


def _reason_to_leave_alone() -> str | None:
    env = os.environ
    if env.get("TRACEGRAD_MALLOC", "").lower() == "system":
        return "left alone: TRACEGRAD_MALLOC=system"
    chosen = [k for k in _GLIBC_VARIABLES if k in env]
    if chosen or "glibc.malloc." in env.get("GLIBC_TUNABLES", ""):
        named = ", ".join(chosen) or "GLIBC_TUNABLES"
        return f"left alone: the environment sets glibc's malloc ({named})"
    preload = env.get("LD_PRELOAD", "").lower()
    if any(name in preload for name in _OTHER_MALLOCS):
        return "left alone: LD_PRELOAD replaces malloc"
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError, AttributeError):  # not a glibc system, or no confstr
        libc = ""
    if not libc.startswith("glibc"):
        return "left alone: the C library is not glibc"
    return None


def tune() -> str:
    """Set glibc's thresholds as the module docstring says, once; return `STATE`."""
    global STATE
    if STATE != "not tuned yet":
        return STATE
    reason = _reason_to_leave_alone()
    if reason is None:
        import ctypes

        try:
            mallopt = ctypes.CDLL(None).mallopt
            mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
            ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
            ok = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok
        except (OSError, AttributeError):
            ok = False
        reason = "tuned" if ok else "left alone: mallopt refused"
    STATE = reason
    return STATE
