"""numpy's BLAS thread count, lowered by one while a jitted function's eager calls run beside
the compile worker (runtime/compile_worker.py), so that the worker has a core of its own.

On a machine whose cores all go to OpenBLAS, the eager steps of the first tier (their GEMMs
and OpenBLAS's threads spinning after them) and the compile worker competed for the same
cores: the MLP step's compile took 7.8-11 s beside the eager steps instead of 4.7 s alone
(docs/jit.md, "Tiers"). `leave_one_core()` sets OpenBLAS to one thread fewer than this
process's CPUs around such a call and restores the count after it, so nothing outside those
calls sees a change. The library is found as threadpoolctl finds it: the OpenBLAS that numpy
loaded, through its own `openblas_set_num_threads` (numpy's wheels: the `scipy_openblas`
prefix and `64_` suffix). Where there is none (another BLAS, no /proc), nothing changes.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any

_NAMES = (
    ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
    ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
    ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
    ("openblas_get_num_threads", "openblas_set_num_threads"),
)
_api: Any = None  # (get, set), False when there is none


def _find() -> Any:
    global _api
    if _api is not None:
        return _api
    _api = False
    try:
        import ctypes

        import numpy  # noqa: F401 - its BLAS is loaded with it

        with open("/proc/self/maps") as f:
            paths = sorted(
                {
                    line.split()[-1]
                    for line in f
                    if "openblas" in line.lower() and line.split()[-1].startswith("/")
                }
            )
        for path in paths:
            lib = ctypes.CDLL(path)
            for get_name, set_name in _NAMES:
                if hasattr(lib, get_name) and hasattr(lib, set_name):
                    get, set_ = getattr(lib, get_name), getattr(lib, set_name)
                    get.restype = ctypes.c_int
                    set_.argtypes = [ctypes.c_int]
                    _api = (get, set_)
                    return _api
    except (OSError, AttributeError, ImportError):
        pass
    return _api


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextmanager
def leave_one_core():
    """OpenBLAS limited to (this process's CPUs - 1) threads inside the block, when it would
    use them all; the previous count afterwards."""
    api = _find()
    if not api:
        yield
        return
    get, set_ = api
    before = get()
    cpus = _cpus()
    if cpus < 2 or before < cpus:
        yield
        return
    set_(cpus - 1)
    try:
        yield
    finally:
        set_(before)


def threads() -> int | None:
    """OpenBLAS's thread count now (None without one): for tests."""
    api = _find()
    return api[0]() if api else None
