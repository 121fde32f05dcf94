"""`where`'s eager forward: over arrays of one shape (>= 4096 elements) and scalars it runs the
select kernels of ops/kernels.py instead of np.where; the result must be np.where's, bit for
bit, for every dtype, special value and layout, and other inputs must still reach np.where."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import tracegrad as tg
from tracegrad import ops
from tracegrad.ops import elementwise

SPECIALS = [0.0, -0.0, 1.5, -np.inf, np.inf, np.nan, 3e38]


def _same_bits(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))


@settings(max_examples=60, deadline=None)
@given(
    shape=st.sampled_from([(4096,), (64, 65), (2, 3, 700), (5000, 1)]),
    dtype=st.sampled_from([np.float32, np.float64, np.int32, np.int64, np.bool_]),
    x_scalar=st.sampled_from([None, *SPECIALS, 2, True]),
    y_scalar=st.sampled_from([None, *SPECIALS, 0, False]),
    seed=st.integers(0, 2**16),
)
def test_select_equals_np_where_bit_for_bit(shape, dtype, x_scalar, y_scalar, seed) -> None:
    rng = np.random.default_rng(seed)
    c = rng.random(shape) < 0.5
    x = x_scalar if x_scalar is not None else (rng.standard_normal(shape) * 100).astype(dtype)
    y = y_scalar if y_scalar is not None else (rng.standard_normal(shape) * 100).astype(dtype)
    if isinstance(x, np.ndarray) and x.dtype.kind == "f":
        x.flat[::7] = np.nan  # payloads and signs go through unchanged
    with np.errstate(all="ignore"):
        got = tg.where(
            tg.tensor(c),
            x if np.ndim(x) == 0 else tg.tensor(x),
            y if np.ndim(y) == 0 else tg.tensor(y),
        )
        want = np.where(c, x, y).astype(got.numpy().dtype)
    _same_bits(got.numpy(), want)


def test_the_kernel_runs_where_it_applies_and_numpy_elsewhere(monkeypatch) -> None:
    calls = []
    real = elementwise.select_scalar_y_into
    monkeypatch.setattr(
        elementwise, "select_scalar_y_into", lambda *a: (calls.append(1), real(*a))[1]
    )
    g = np.linspace(-1, 1, 8192, dtype=np.float32).reshape(64, 128)
    c = g > 0
    _same_bits(elementwise._where_forward(c, g, 0.0), np.where(c, g, 0.0))
    assert calls == [1]
    # not applicable: broadcasting, a transposed view, a small array, an inexact scalar
    for args in [
        (c[:1], g, 0.0),
        (c.T, g.T, 0.0),
        (c[:2, :2].copy(), g[:2, :2].copy(), 0.0),
        (c, g, 1e39),
        (c, g.astype(np.float16), 0.0),
    ]:
        with np.errstate(all="ignore"):
            want = np.where(*args)
            got = elementwise._where_forward(*args)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    assert calls == [1]


def test_relu_gradient_through_the_kernel() -> None:
    x = tg.tensor(np.linspace(-3, 3, 6000).reshape(60, 100), requires_grad=True)
    (tg.relu(x) * 3).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.where(x.detach().numpy() > 0, 3.0, 0.0))
    assert ops.where.forward is elementwise._where_forward
