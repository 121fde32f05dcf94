"""repr/str print exactly what PyTorch prints: fixed expected strings (always run), and a direct
comparison with PyTorch on many drawn values (when torch is installed)."""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tracegrad as tg

FIXED = [
    (lambda: tg.tensor(2.0, requires_grad=True), "tensor(2., requires_grad=True)"),
    (lambda: tg.tensor(9.0), "tensor(9.)"),
    (lambda: tg.tensor(75.66666412353516), "tensor(75.6667)"),
    (lambda: tg.tensor([1.0, 2.0]), "tensor([1., 2.])"),
    (lambda: tg.tensor([-12.0, 65.0]), "tensor([-12.,  65.])"),
    (
        lambda: tg.tensor([[3.0, 5.0, 7.0], [9.0, 11.0, 13.0]]),
        "tensor([[ 3.,  5.,  7.],\n        [ 9., 11., 13.]])",
    ),
    (
        lambda: tg.tensor([[2.0, 10 / 3, 14 / 3], [6.0, 22 / 3, 26 / 3]]),
        "tensor([[2.0000, 3.3333, 4.6667],\n        [6.0000, 7.3333, 8.6667]])",
    ),
    (lambda: tg.tensor([1e-5, 1.0]), "tensor([1.0000e-05, 1.0000e+00])"),
    (lambda: tg.tensor([1e9, 1.0]), "tensor([1.0000e+09, 1.0000e+00])"),
    (lambda: tg.tensor([0.1, 1000.5]), "tensor([1.0000e-01, 1.0005e+03])"),
    (lambda: tg.tensor([1.5], dtype=tg.float64), "tensor([1.5000], dtype=tracegrad.float64)"),
    (lambda: tg.tensor([1, 2, 3]), "tensor([1, 2, 3])"),
    (lambda: tg.tensor([1, 2], dtype=tg.int32), "tensor([1, 2], dtype=tracegrad.int32)"),
    (lambda: tg.tensor([True, False]), "tensor([ True, False])"),
    (lambda: tg.tensor([float("nan"), float("inf"), 1.0]), "tensor([nan, inf, 1.])"),
    (lambda: tg.tensor([0.0, -0.0]), "tensor([0., -0.])"),
    (lambda: tg.zeros(0), "tensor([])"),
    (lambda: tg.zeros(2, 0), "tensor([], size=(2, 0))"),
    (lambda: tg.zeros(0, dtype=tg.int64), "tensor([], dtype=tracegrad.int64)"),
    (lambda: tg.tensor(2.0, requires_grad=True) * 2, "tensor(4., grad_fn=<MulBackward0>)"),
    (
        lambda: tg.arange(12.0).reshape(2, 2, 3),
        "tensor([[[ 0.,  1.,  2.],\n         [ 3.,  4.,  5.]],\n\n"
        "        [[ 6.,  7.,  8.],\n         [ 9., 10., 11.]]])",
    ),
    (
        lambda: tg.arange(2000.0),
        "tensor([0.0000e+00, 1.0000e+00, 2.0000e+00,  ..., 1.9970e+03, 1.9980e+03,\n"
        "        1.9990e+03])",
    ),
]


@pytest.mark.parametrize("make, expected", FIXED)
def test_fixed_strings(make, expected):
    t = make()
    assert repr(t) == expected
    assert str(t) == expected


def test_long_rows_wrap_at_80_columns():
    t = tg.arange(20.0) / 3
    expected = (
        "tensor([0.0000, 0.3333, 0.6667, 1.0000, 1.3333, 1.6667, 2.0000, 2.3333, 2.6667,\n"
        "        3.0000, 3.3333, 3.6667, 4.0000, 4.3333, 4.6667, 5.0000, 5.3333, 5.6667,\n"
        "        6.0000, 6.3333])"
    )
    assert repr(t) == expected


def test_suffix_moves_to_next_line_when_long():
    x = (tg.arange(8.0) / 3).requires_grad_()
    y = x * 1
    assert repr(y).endswith(",\n       grad_fn=<MulBackward0>)")


# --------------------------------------------------------------------------------------------
# against PyTorch itself

try:  # not a module-level skip: the fixed strings above must run without torch
    import torch
except ImportError:
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")


def same_as_torch(ours: str, theirs: str) -> bool:
    """Equal up to the module name in `dtype=`: "tracegrad.float64" is 4 characters longer than
    "torch.float64", which can move a suffix to the next line in one and not the other."""
    theirs = theirs.replace("torch.", "tracegrad.")

    def flat(s: str) -> str:
        return re.sub(r",\n *(dtype=|grad_fn=|requires_grad=)", r", \1", s)

    return flat(ours) == flat(theirs)


VALUES = st.one_of(
    st.floats(-10, 10),
    st.floats(-1e10, 1e10),
    st.floats(-1e-6, 1e-6),
    st.integers(-1000, 1000).map(float),
    st.sampled_from([0.0, -0.0, float("nan"), float("inf"), -float("inf"), 1e8, 123456789.0]),
)


@needs_torch
@settings(max_examples=300, deadline=None)
@given(
    arr=hnp.arrays(
        st.sampled_from([np.float32, np.float64]),
        hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5),
        elements=VALUES,
    ),
    requires_grad=st.booleans(),
)
def test_float_repr_matches_pytorch(arr, requires_grad):
    t = tg.tensor(arr, requires_grad=requires_grad)
    r = torch.tensor(arr, requires_grad=requires_grad)
    assert same_as_torch(repr(t), repr(r))


@needs_torch
@settings(max_examples=100, deadline=None)
@given(
    arr=hnp.arrays(
        st.sampled_from([np.int64, np.int32, np.bool_]),
        hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5),
    )
)
def test_int_and_bool_repr_matches_pytorch(arr):
    assert same_as_torch(repr(tg.tensor(arr)), repr(torch.tensor(arr)))


@needs_torch
@pytest.mark.parametrize("n", [999, 1000, 1001, 5000])
def test_summarized_repr_matches_pytorch(n):
    a = np.random.default_rng(n).standard_normal(n).astype(np.float32) * 100
    assert repr(tg.tensor(a)) == repr(torch.tensor(a))
    b = a[: (n // 10) * 10].reshape(-1, 10)
    assert repr(tg.tensor(b)) == repr(torch.tensor(b))


@needs_torch
def test_grad_fn_repr_matches_pytorch():
    for make in [
        lambda m: 2 * m.tensor(2.0, requires_grad=True) ** 2 + 1,
        lambda m: (2 * m.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], requires_grad=True) + 1) ** 2,
        lambda m: ((2 * m.tensor([[1.0, 2.0], [4.0, 5.0]], requires_grad=True) + 1) ** 2).mean(),
        lambda m: m.tensor([2.0, 3.0], requires_grad=True).sum(),
        lambda m: m.tensor([2.0, 3.0], requires_grad=True) - 1,
    ]:
        assert repr(make(tg)) == repr(make(torch))
