"""A NaN in the input reaches the compiled result exactly where eager mode (numpy, PyTorch) puts
it: elementwise max/min on either operand, max/min/log-sum-exp reductions (scalar accumulators
of parallel loops, per-row and per-column accumulators), softmax, max pooling. Numba's
`max(a, b)` returns `a` when `b` is NaN, and a `prange` loop only reduces a bare `max`, so each
of these needs its own care (ops/core.py `Reduction.nan_ignored`). Both the serial and the
parallel forms of the loops are compiled (the parallel grain is 0 for one copy)."""

from __future__ import annotations

from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tracegrad as tg
import tracegrad.nn.functional as F
from tracegrad import devices as cuda_device

FUNCTIONS = {
    "maximum": lambda x, y: tg.maximum(x * 1, y),
    "maximum_swapped": lambda x, y: tg.maximum(y, x * 1),
    "minimum": lambda x, y: tg.minimum(x * 1, y),
    "minimum_swapped": lambda x, y: tg.minimum(y, x * 1),
    "relu_clamp": lambda x, y: tg.relu(x * 1) + tg.clamp(y * 1, min=-0.5, max=0.5),
    "amax_all": lambda x, y: (x * 1).amax(),
    "amin_all": lambda x, y: (x * 1).amin(),
    "max_rows": lambda x, y: (x * 1).amax(dim=1),
    "min_columns": lambda x, y: (x * 1).amin(dim=0),
    "logsumexp_rows": lambda x, y: (x * 1).logsumexp(dim=1),
    "logsumexp_all": lambda x, y: (x * 1).logsumexp(dim=(0, 1)),
    "softmax": lambda x, y: F.softmax(x * 1, dim=1),
    "max_pool": lambda x, y: F.max_pool2d((x * 1).reshape(1, 1, *x.shape), 2, stride=1, padding=1),
}

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def with_nans(draw: Any) -> tuple:
    shape = draw(hnp.array_shapes(min_dims=2, max_dims=2, min_side=2, max_side=9))
    x = draw(hnp.arrays(np.float64, shape, elements=st.floats(-3, 3)))
    y = draw(hnp.arrays(np.float64, shape, elements=st.floats(-3, 3)))
    for a in (x, y):
        for _ in range(draw(st.integers(0, 3))):
            i = draw(st.integers(0, shape[0] - 1))
            j = draw(st.integers(0, shape[1] - 1))
            a[i, j] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    return x, y


def _compiled(grain: str) -> dict:
    import os

    before = os.environ.get("TRACEGRAD_PARALLEL_GRAIN")
    os.environ["TRACEGRAD_PARALLEL_GRAIN"] = grain
    try:
        jitted = {name: tg.jit(f) for name, f in FUNCTIONS.items()}
        x = tg.tensor(np.ones((3, 4)))
        for f in jitted.values():  # built (and the grain read) now
            f(x, x)
    finally:
        if before is None:
            del os.environ["TRACEGRAD_PARALLEL_GRAIN"]
        else:
            os.environ["TRACEGRAD_PARALLEL_GRAIN"] = before
    return jitted


@pytest.fixture(scope="module", params=["serial", "parallel"])
def compiled(request: Any) -> dict:
    return _compiled("1000000000" if request.param == "serial" else "0")


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
@SETTINGS
@given(data=with_nans())
def test_compiled_nan_and_inf_as_eager(compiled: dict, name: str, data: tuple) -> None:
    x, y = (tg.tensor(a) for a in data)
    expected = FUNCTIONS[name](x, y).numpy()
    got = compiled[name](x, y).numpy()
    # the same NaN positions and infinities; finite values as eager
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected), err_msg=name)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0, equal_nan=True, err_msg=name)


def test_a_nan_late_in_a_large_parallel_max_is_the_result() -> None:
    # a scalar max over a loop above the default grain: threads reduce separately; the NaN is in
    # one thread's share, after larger values (the case Numba's prange max drops)
    x = np.random.default_rng(0).random((300, 400))
    x[299, 399] = np.nan
    f = tg.jit(lambda t: ((t * 2).amax(), (t * 2).amin(), (t * 2).amax(dim=0)))
    top, low, columns = f(tg.tensor(x))
    assert np.isnan(top.item()) and np.isnan(low.item())
    assert np.isnan(columns.numpy()[399]) and not np.isnan(columns.numpy()[:399]).any()


@pytest.mark.skipif(not cuda_device.available(), reason="no CUDA GPU or simulator")
def test_cuda_reductions_propagate_nan() -> None:
    x = np.array([[1.0, np.nan, 2.0], [3.0, 4.0, 5.0]])
    y = np.array([[0.0, 0.0, np.nan], [1.0, 9.0, 2.0]])
    for name in ("maximum", "minimum_swapped", "max_rows", "min_columns", "logsumexp_rows"):
        f = tg.jit(FUNCTIONS[name], device="cuda")
        got = f(tg.tensor(x), tg.tensor(y)).cpu().numpy()
        expected = FUNCTIONS[name](tg.tensor(x), tg.tensor(y)).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-12, equal_nan=True, err_msg=name)
