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

The array helpers `take_rows`, `add_rows`, `check_index` are defined in ops/kernels.py and
re-exported here; a change to them also bumps HELPERS_VERSION.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

HELPERS_VERSION = 4

_HI = np.float32(88.72283)  # exp(_HI) is the largest finite float32
_LO = np.float32(-103.97208)  # below it exp underflows to 0 even as a subnormal


@intrinsic
def _float32_from_bits(typingctx, bits):  # noqa: ANN001, ANN202
    """Reinterpret an int32 as a float32 (to build 2**n from its exponent bits)."""
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


@njit(inline="always")
def exp_f32(x):  # noqa: ANN001, ANN201
    xc = min(max(x, _LO), _HI)
    n = np.floor(xc * np.float32(1.44269504) + np.float32(0.5))
    r = xc - n * np.float32(0.693359375) - n * np.float32(-2.12194440e-4)
    p = np.float32(1.9875691500e-4)
    p = p * r + np.float32(1.3981999507e-3)
    p = p * r + np.float32(8.3334519073e-3)
    p = p * r + np.float32(4.1665795894e-2)
    p = p * r + np.float32(1.6666665459e-1)
    p = p * r + np.float32(5.0000001201e-1)
    y = p * (r * r) + r + np.float32(1.0)
    # 2**n in two factors, so that n = 128 (near the top) and n < -126 (subnormal results)
    # stay representable
    k = np.int32(n)
    k1 = k >> np.int32(1)
    k2 = k - k1
    y = y * _float32_from_bits((k1 + np.int32(127)) << np.int32(23))
    y = y * _float32_from_bits((k2 + np.int32(127)) << np.int32(23))
    y = np.float32(np.inf) if x > _HI else y
    y = np.float32(0.0) if x < _LO else y
    return x if x != x else y  # NaN stays NaN


@njit(inline="always")
def tanh_f32(x):  # noqa: ANN001, ANN201
    a = abs(x)
    # |x| >= 0.625: 1 - 2 / (exp(2|x|) + 1), which is 1 in float32 beyond |x| = 9
    big = np.float32(1.0) - np.float32(2.0) / (
        exp_f32(min(a, np.float32(44.0)) * np.float32(2.0)) + np.float32(1.0)
    )
    big = big if x >= 0 else -big
    # |x| < 0.625: x + x * z * P(z), z = x * x
    z = x * x
    p = np.float32(-5.70498872745e-3)
    p = p * z + np.float32(2.06390887954e-2)
    p = p * z - np.float32(5.37397155531e-2)
    p = p * z + np.float32(1.33314422036e-1)
    p = p * z - np.float32(3.33332819422e-1)
    small = p * z * x + x
    y = small if a < np.float32(0.625) else big
    return x if x != x else y  # NaN stays NaN


@njit(inline="always")
def erf_f32(x):  # noqa: ANN001, ANN201
    c = min(max(x, np.float32(-4.0)), np.float32(4.0))
    x2 = c * c
    p = np.float32(-2.72614225801306e-10)
    p = p * x2 + np.float32(2.77068142495902e-08)
    p = p * x2 + np.float32(-2.10102402082508e-06)
    p = p * x2 + np.float32(-5.69250639462346e-05)
    p = p * x2 + np.float32(-7.34990630326855e-04)
    p = p * x2 + np.float32(-2.95459980854025e-03)
    p = p * x2 + np.float32(-1.60960333262415e-02)
    q = np.float32(-1.45660718464996e-05)
    q = q * x2 + np.float32(-2.13374055278905e-04)
    q = q * x2 + np.float32(-1.68282697438203e-03)
    q = q * x2 + np.float32(-7.37332916720468e-03)
    q = q * x2 + np.float32(-1.42647390514189e-02)
    y = c * p / q
    return x if x != x else y  # NaN stays NaN


# the array helpers live beside the ops whose eager forwards use them (ops/ imports nothing
# above it); generated code imports them from here, under HELPERS_VERSION
from ..ops.kernels import add_rows, check_index, take_rows  # noqa: E402

__all__ = ["add_rows", "check_index", "erf_f32", "exp_f32", "take_rows", "tanh_f32"]
