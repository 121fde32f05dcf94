"""Scalar helpers that generated kernels call (`from tracegrad.codegen.numba_helpers import
...`). Bump HELPERS_VERSION when one changes: it is written into every generated module, so a
changed helper changes the source hash and no stale cached kernel is reused.

`exp_f32` is a branch-free float32 exp (Cephes' expf: exp(x) = 2**n exp(r), |r| <= ln2/2, a
degree-6 polynomial). libm's `expf`, which `math.exp` calls, is an opaque call that stops LLVM
from vectorizing a loop; this one is plain arithmetic, so loops that use it vectorize: 7x faster
than `math.exp` per element here, within 2 ulp of it (float32 tests compare at 1e-5).

`tanh_f32` is Cephes' tanhf made branch-free: an odd polynomial for |x| < 0.625, and
1 - 2 / (exp(2|x|) + 1) with `exp_f32` above it; both are computed and one is selected, so the
loop still vectorizes (libm's `tanhf` does not).

`erf_f32` is Eigen's float32 erf: x * P(x^2) / Q(x^2) with the input clamped to [-4, 4] (erf
is +-1 in float32 beyond), odd degree 13 over even degree 8. Within 4.5e-7 of the exact erf
over the whole line (tests/codegen: against scipy in float64). `math.erf` in a float32 loop
is a float64 libm call per element, twice per element in exact GELU's forward and backward.

All of them are defined in ops/kernels.py, beside the eager forwards that use them too (ops/
imports nothing above it), and re-exported here: generated code imports them from this module,
under HELPERS_VERSION, so a change to any of them must bump it.
"""

from __future__ import annotations

from typing import Any

HELPERS_VERSION = 7

_HELPERS = (
    "add_rows",
    "cat_into",
    "check_index",
    "erf_f32",
    "exp_f32",
    "take_rows",
    "tanh_f32",
    "uniform_f32",
    "uniform_f64",
)


def __getattr__(name: str) -> Any:
    """The helpers, as Numba dispatchers (made on this first import from generated code: the
    kernels of ops/ are lazy, ops/lazy_numba.py), not their lazy stand-ins, which Numba cannot
    type; `codegen/cpu.py` reads HELPERS_VERSION without making them."""
    if name not in _HELPERS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from ..ops import kernels
    from ..ops.lazy_numba import materialize

    materialize()
    value = getattr(kernels, name)
    globals()[name] = value
    return value


__all__ = ["HELPERS_VERSION", *_HELPERS]
