"""The vectorizable float32 helpers of generated loops against exact values."""

from __future__ import annotations

import numpy as np
import scipy.special
from numba import njit

import tracegrad as tg
import tracegrad.nn.functional as F
from tracegrad.codegen.numba_helpers import erf_f32


@njit
def _erf_all(x):
    out = np.empty_like(x)
    for i in range(x.size):
        out[i] = erf_f32(x[i])
    return out


def test_erf_f32_against_scipy():
    x = np.concatenate(
        [
            np.linspace(-6, 6, 200001, dtype=np.float32),
            np.float32([0.0, -0.0, 1e-30, -1e-20, 1e-8, 4.0, 100.0, -np.inf, np.inf, 3.9999]),
        ]
    )
    got = _erf_all(x)
    want = scipy.special.erf(x.astype(np.float64))
    assert np.abs(got - want).max() < 5e-7
    small = np.abs(x) < 1e-3
    np.testing.assert_allclose(got[small], want[small], rtol=1e-6, atol=0)  # relative near 0
    assert np.isnan(_erf_all(np.float32([np.nan]))[0])


def test_exact_gelu_compiled_in_float32_equals_eager():
    x = tg.tensor(np.random.default_rng(0).standard_normal(4096).astype(np.float32) * 3)
    f = lambda x: F.gelu(x).sum()  # noqa: E731
    v, g = tg.jit(tg.value_and_grad(f))(x)
    ev, eg = tg.value_and_grad(f)(x)
    np.testing.assert_allclose(v.item(), ev.item(), rtol=1e-5)
    np.testing.assert_allclose(g.numpy(), eg.numpy(), rtol=1e-5, atol=1e-6)
    assert "erf_f32" in tg.jit(tg.value_and_grad(f)).source(x)
