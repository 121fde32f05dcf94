"""im2col (`unfold2d`) and col2im (`fold2d`) have two CPU kernels each: row by row for outputs
wide enough to vectorize, through a table of window positions for narrow ones
(`ops.nn._long_rows`). The op table's small images mostly take the table; here both paths, on
widths around the switch, strides, dilations and paddings, against the plain-loop references."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from op_cases import _fold_ref, _positions, _unfold_ref

from tracegrad.ops.nn import _fold_forward, _long_rows, _unfold_forward

rng = np.random.default_rng(0)


@settings(max_examples=40, deadline=None)
@given(
    k=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    pad=st.tuples(st.integers(0, 1), st.integers(0, 1)),
    h=st.integers(5, 9),
    w=st.integers(5, 40),
    pad_value=st.sampled_from([0.0, -np.inf]),
)
def test_both_paths_match_the_references(k, stride, dilation, pad, h, w, pad_value):
    p = {"kernel": k, "stride": stride, "padding": pad, "dilation": dilation}
    x = rng.standard_normal((2, 3, h, w))
    oh, ow = _positions(x.shape, p)
    if oh < 1 or ow < 1:
        return
    cols = _unfold_forward(x, **p, pad_value=pad_value)
    np.testing.assert_array_equal(cols, _unfold_ref(x, **p, pad_value=pad_value))
    g = rng.standard_normal(cols.shape)
    np.testing.assert_allclose(_fold_forward(g, size=(h, w), **p), _fold_ref(g, size=(h, w), **p))


def test_the_switch_is_crossed():
    # the widths above take both kernels (a change of the rule must keep this true)
    assert not _long_rows(4, 1) and _long_rows(8, 1) and _long_rows(38, 1)
    assert not _long_rows(8, 2) and _long_rows(16, 2) and not _long_rows(13, 3)
