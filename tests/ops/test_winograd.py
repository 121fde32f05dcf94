"""Winograd F(2x2, 3x3) (ops/winograd.py) against the direct definition of a convolution, and
the conv2d lowering rule that uses it (ops/nn.py `use_winograd`)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tracegrad as tg
import tracegrad.nn.functional as F
from tracegrad.ops import nn as conv_ops
from tracegrad.ops import winograd
from tracegrad.ops.nn import use_winograd


def direct(x: np.ndarray, w: np.ndarray, p: tuple) -> np.ndarray:
    """The definition: out[n, k, r, q] = sum_c,i,j xpad[n, c, r + i, q + j] w[k, c, i, j]."""
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])))
    oh, ow = xp.shape[2] - 2, xp.shape[3] - 2
    out = np.zeros((x.shape[0], w.shape[0], max(oh, 0), max(ow, 0)))
    for i in range(3):
        for j in range(3):
            patch = xp[:, :, i : i + oh, j : j + ow]
            out += np.einsum("nchw,kc->nkhw", patch, w[:, :, i, j].astype(np.float64))
    return out


shapes = st.tuples(
    st.integers(1, 3),  # batch
    st.integers(1, 4),  # input channels
    st.integers(1, 11),  # height
    st.integers(1, 11),  # width
    st.integers(1, 4),  # output channels
    st.integers(0, 2),  # padding (rows)
    st.integers(0, 2),  # padding (columns)
)


@settings(max_examples=60, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**16))
def test_winograd_equals_the_definition(shape, seed):
    n, c, h, w, k, ph, pw = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w))
    wt = rng.standard_normal((k, c, 3, 3))
    want = direct(x, wt, (ph, pw))
    got = winograd.conv3x3(x, wt, (ph, pw))
    assert got.shape == want.shape and got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    got32 = winograd.conv3x3(x.astype(np.float32), wt.astype(np.float32), (ph, pw))
    assert got32.dtype == np.float32
    scale = max(np.abs(want).max(initial=0.0), 1.0)
    assert np.abs(got32 - want).max(initial=0.0) <= 1e-4 * scale


def test_strided_and_odd_inputs_are_read_as_given():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 6, 13, 11))[:, ::2, :, ::-1]  # non-contiguous, negative strides
    wt = rng.standard_normal((3, 3, 3, 3))
    np.testing.assert_allclose(winograd.conv3x3(x, wt, (1, 1)), direct(x, wt, (1, 1)), atol=1e-10)


def test_the_lowering_rule():
    big = (16, 64, 16, 16)  # ResNet-18's layer1 at batch 16: 1024 tiles >= 64 channels
    assert use_winograd(big, (64, 64, 3, 3), (1, 1), (1, 1), (1, 1), 1)
    assert not use_winograd(big, (64, 64, 3, 3), (2, 2), (1, 1), (1, 1), 1)  # stride 2
    assert not use_winograd(big, (64, 64, 1, 1), (1, 1), (0, 0), (1, 1), 1)  # 1x1
    assert not use_winograd(big, (64, 32, 3, 3), (1, 1), (1, 1), (1, 1), 2)  # groups
    assert not use_winograd(big, (64, 64, 3, 3), (1, 1), (1, 1), (2, 2), 1)  # dilation
    assert not use_winograd(big, (64, 64, 3, 3), (1, 1), (3, 3), (1, 1), 1)  # padding > 2
    # tiles against input channels (and at least MIN_WINOGRAD_TILES): layer2 at batch 16 (256
    # tiles, 128 channels) yes, at batch 1 (16 tiles) no; layer3 at batch 16 (64 tiles, 256
    # channels) no; layer1 at batch 1 (64 tiles, 64 channels) no
    assert use_winograd((16, 128, 8, 8), (128, 128, 3, 3), (1, 1), (1, 1), (1, 1), 1)
    assert not use_winograd((1, 128, 8, 8), (128, 128, 3, 3), (1, 1), (1, 1), (1, 1), 1)
    assert not use_winograd((16, 256, 4, 4), (256, 256, 3, 3), (1, 1), (1, 1), (1, 1), 1)
    assert not use_winograd((1, 64, 16, 16), (64, 64, 3, 3), (1, 1), (1, 1), (1, 1), 1)
    assert not use_winograd((0, 1, 8, 8), (1, 1, 3, 3), (1, 1), (1, 1), (1, 1), 1)  # empty


@pytest.mark.parametrize("padding", [0, 1, 2])
def test_gradients_through_winograd_layers(padding, monkeypatch):
    monkeypatch.setattr(conv_ops, "MIN_WINOGRAD_TILES", 1)  # small shapes, still Winograd
    rng = np.random.default_rng(padding)
    shape = (2, 3, 7 - 2 * padding, 8 - 2 * padding)
    assert use_winograd(shape, (2, 3, 3, 3), (1, 1), (padding,) * 2, (1, 1), 1)
    x = tg.tensor(rng.standard_normal(shape), requires_grad=True)
    w = tg.tensor(rng.standard_normal((2, 3, 3, 3)), requires_grad=True)

    def f(a, b):
        return F.conv2d(a, b, padding=padding)

    assert tg.gradcheck(f, (x, w))
    assert tg.gradgradcheck(f, (x, w))
    # eager gradients = jitted gradients (the jitted input gradient is a Winograd conv too)
    out = (f(x, w) ** 2).sum()
    out.backward()
    step = tg.jit(tg.grad(lambda a, b: (f(a, b) ** 2).sum(), argnums=(0, 1)))
    gx, gw = step(x.detach(), w.detach())
    np.testing.assert_allclose(gx.numpy(), x.grad.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(gw.numpy(), w.grad.numpy(), rtol=1e-10, atol=1e-10)


def test_the_per_layer_benchmark_checks_winograd_against_im2col():
    # benchmarks/conv2d.py asserts the two lowerings agree before timing them (batch 1, once)
    from benchmarks import conv2d

    table = conv2d.main(["--batch", "1", "--repeats", "1"])
    assert len(table) == len(conv2d.LAYERS)
    assert all("fwd winograd" in row for (c, hw, o, s), row in table.items() if s == 1)
