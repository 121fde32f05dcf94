"""tg.nn.functional against closed forms, loop references, finite differences and (when
installed) PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tracegrad as tg
import tracegrad.nn.functional as F

try:
    import torch
except ImportError:  # PyTorch is optional: the comparisons with it are skipped
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch not installed")
rng = np.random.default_rng(0)


def t64(a, grad=True):
    return tg.tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


def loop_avg_pool(x, k, s, p, include_pad):
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    mask = np.pad(np.ones((h, w)), ((p, p), (p, p)))
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    out = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            win = xp[:, :, i * s : i * s + k, j * s : j * s + k]
            cnt = k * k if include_pad else mask[i * s : i * s + k, j * s : j * s + k].sum()
            out[:, :, i, j] = win.sum(axis=(2, 3)) / cnt
    return out


@pytest.mark.parametrize("include_pad", [True, False])
def test_avg_pool2d_matches_loops_and_finite_differences(include_pad):
    x = rng.standard_normal((2, 3, 7, 6))
    out = F.avg_pool2d(t64(x, False), 3, stride=2, padding=1, count_include_pad=include_pad)
    np.testing.assert_allclose(out.numpy(), loop_avg_pool(x, 3, 2, 1, include_pad), atol=1e-12)
    assert tg.gradcheck(
        lambda a: F.avg_pool2d(a, 3, 2, 1, count_include_pad=include_pad), (t64(x),)
    )


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (3, 2), (4, 4), (None, 2)])
def test_adaptive_avg_pool2d_uses_pytorch_windows(size):
    x = rng.standard_normal((2, 2, 7, 5))
    h, w = x.shape[2:]
    oh, ow = (h if size[0] is None else size[0]), size[1]
    ref = np.zeros((2, 2, oh, ow))
    for i in range(oh):
        for j in range(ow):
            r0, r1 = (i * h) // oh, -((-(i + 1) * h) // oh)
            c0, c1 = (j * w) // ow, -((-(j + 1) * w) // ow)
            ref[:, :, i, j] = x[:, :, r0:r1, c0:c1].mean(axis=(2, 3))
    out = F.adaptive_avg_pool2d(t64(x, False), size)
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-12)
    assert tg.gradcheck(lambda a: F.adaptive_avg_pool2d(a, size), (t64(x),))


def test_conv2d_bias_unbatched_and_string_padding():
    x = rng.standard_normal((3, 6, 5))
    w = rng.standard_normal((4, 3, 3, 3))
    b = rng.standard_normal(4)
    batched = F.conv2d(t64(x[None], False), t64(w, False), t64(b, False), padding="same")
    single = F.conv2d(t64(x, False), t64(w, False), t64(b, False), padding=1)
    assert batched.shape == (1, 4, 6, 5)
    np.testing.assert_allclose(batched.numpy()[0], single.numpy())
    np.testing.assert_allclose(
        F.conv2d(t64(x, False), t64(w, False), padding="valid").shape, (4, 4, 3)
    )
    assert tg.gradcheck(
        lambda a, k, c: F.conv2d(a, k, c, stride=2, padding=1),
        (t64(x[None]), t64(w), t64(b)),
    )


def test_conv2d_errors_name_the_shapes():
    x = tg.zeros(1, 3, 5, 5)
    with pytest.raises(ValueError, match=r"conv2d: input has 3 channels.*\(1, 3, 5, 5\)"):
        F.conv2d(x, tg.zeros(4, 2, 3, 3))
    with pytest.raises(ValueError, match="larger than the padded input"):
        F.conv2d(x, tg.zeros(4, 3, 7, 7))
    with pytest.raises(TypeError, match="same dtype"):
        F.conv2d(x, tg.zeros(4, 3, 3, 3, dtype=tg.float64))
    with pytest.raises(ValueError, match="ceil_mode"):
        F.max_pool2d(x, 2, ceil_mode=True)


@needs_torch
@settings(max_examples=15, deadline=None)
@given(
    n=st.integers(1, 2),
    groups=st.sampled_from([1, 2]),
    k=st.integers(1, 4),
    stride=st.integers(1, 3),
    dilation=st.integers(1, 2),
    extra=st.integers(0, 4),
)
def test_conv_and_pools_match_pytorch(n, groups, k, stride, dilation, extra):
    pad = k // 2
    size = dilation * (k - 1) + 1 + extra
    x = rng.standard_normal((n, 2 * groups, size, size + 1)).astype(np.float32)
    w = rng.standard_normal((3 * groups, 2, k, k)).astype(np.float32)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    gx, gw = tg.tensor(x, requires_grad=True), tg.tensor(w, requires_grad=True)
    args = dict(stride=stride, padding=pad, dilation=dilation, groups=groups)
    ref = torch.nn.functional.conv2d(tx, tw, **args)
    out = F.conv2d(gx, gw, **args)
    np.testing.assert_allclose(out.detach().numpy(), ref.detach().numpy(), rtol=1e-4, atol=1e-4)
    g = rng.standard_normal(ref.shape).astype(np.float32)
    ref.backward(torch.tensor(g))
    out.backward(tg.tensor(g))
    np.testing.assert_allclose(gx.grad.numpy(), tx.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gw.grad.numpy(), tw.grad.numpy(), rtol=1e-4, atol=1e-4)
    for name in ("max_pool2d", "avg_pool2d"):
        pargs = dict(kernel_size=k, stride=stride, padding=pad)
        if name == "max_pool2d":
            pargs["dilation"] = dilation
        tx.grad, gx.grad = None, None
        ref = getattr(torch.nn.functional, name)(tx, **pargs)
        out = getattr(F, name)(gx, **pargs)
        np.testing.assert_allclose(out.detach().numpy(), ref.detach().numpy(), atol=1e-5)
        (ref * ref).sum().backward()
        (out * out).sum().backward()
        np.testing.assert_allclose(gx.grad.numpy(), tx.grad.numpy(), atol=1e-4)
    _, ref_index = torch.nn.functional.max_pool2d(tx, **pargs, return_indices=True)
    _, index = F.max_pool2d(gx, **pargs, return_indices=True)
    assert index.dtype == tg.int64 and not index.requires_grad
    np.testing.assert_array_equal(index.numpy(), ref_index.numpy())


def test_max_pool_gradient_goes_to_the_first_maximum():
    x = tg.tensor([[[[1.0, 3.0], [3.0, 2.0]]]], requires_grad=True)
    F.max_pool2d(x, 2).sum().backward()
    assert x.grad.numpy().tolist() == [[[[0.0, 1.0], [0.0, 0.0]]]]


def test_max_pool_indices():
    # positions in the input plane (h * W + w) of each window's first maximum; a NaN wins; a
    # window wholly in the padding (dilation 3) has none: H * W
    x = tg.tensor([[[[1.0, 3.0, 0.0], [3.0, 2.0, 5.0]]]])
    out, index = F.max_pool2d(x, 2, stride=1, return_indices=True)
    assert out.tolist() == [[[[3.0, 5.0]]]] and index.tolist() == [[[[1, 5]]]]
    x[0, 0, 1, 0] = float("nan")
    out, index = F.max_pool2d(x[0], 2, stride=1, return_indices=True)  # 3-D input
    assert index.tolist() == [[[3, 5]]] and np.isnan(out[0, 0, 0].item())
    y = tg.tensor(rng.standard_normal((1, 2, 2, 3)), requires_grad=True)
    out, index = F.max_pool2d(y, 2, stride=1, padding=1, dilation=3, return_indices=True)
    assert out.shape == (1, 2, 1, 2) and np.all(out.detach().numpy() == -np.inf)
    assert np.all(index.numpy() == 6)
    out.backward(tg.ones_like(out))  # the empty windows' cotangents go nowhere
    np.testing.assert_array_equal(y.grad.numpy(), np.zeros(y.shape))


def test_batch_norm_training_statistics_and_running_update():
    x = rng.standard_normal((4, 3, 5, 2)) * 3 + 1
    rm, rv = tg.zeros(3, dtype=tg.float64), tg.ones(3, dtype=tg.float64)
    w, b = rng.standard_normal(3), rng.standard_normal(3)
    out = F.batch_norm(
        t64(x, False), rm, rv, t64(w, False), t64(b, False), training=True, momentum=0.2, eps=1e-5
    )
    mean = x.mean(axis=(0, 2, 3))
    var = x.var(axis=(0, 2, 3))
    ref = (x - mean[:, None, None]) / np.sqrt(var[:, None, None] + 1e-5)
    ref = ref * w[:, None, None] + b[:, None, None]
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-12)
    n = x.size // 3
    np.testing.assert_allclose(rm.numpy(), 0.2 * mean, atol=1e-12)
    np.testing.assert_allclose(rv.numpy(), 0.8 + 0.2 * var * n / (n - 1), atol=1e-12)
    # evaluation uses the running statistics
    ev = F.batch_norm(t64(x, False), rm, rv, training=False)
    np.testing.assert_allclose(
        ev.numpy(), (x - rm.numpy()[:, None, None]) / np.sqrt(rv.numpy()[:, None, None] + 1e-5)
    )
    assert tg.gradcheck(
        lambda a, ww, bb: F.batch_norm(a, None, None, ww, bb, training=True),
        (t64(x[:2, :, :2]), t64(w), t64(b)),
    )
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        F.batch_norm(tg.zeros(1, 3), None, None, training=True)


def test_layer_norm_closed_form_and_gradient():
    x = rng.standard_normal((2, 3, 4))
    w, b = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    out = F.layer_norm(t64(x, False), (3, 4), t64(w, False), t64(b, False))
    mu = x.mean(axis=(1, 2), keepdims=True)
    sd = np.sqrt(x.var(axis=(1, 2), keepdims=True) + 1e-5)
    np.testing.assert_allclose(out.numpy(), (x - mu) / sd * w + b, atol=1e-12)
    assert tg.gradcheck(lambda a, ww: F.layer_norm(a, 4, ww[0]), (t64(x), t64(w)))
    with pytest.raises(ValueError, match="normalized_shape"):
        F.layer_norm(tg.zeros(2, 3), (4,))


def log_softmax(x, axis=1):
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


def test_cross_entropy_class_indices_weights_and_ignore_index():
    x = rng.standard_normal((6, 4))
    y = np.array([0, 3, 1, -100, 2, 3])
    w = np.array([1.0, 2.0, 0.5, 1.5])
    lp = log_softmax(x)
    keep = y != -100
    picked = -lp[np.arange(6)[keep], y[keep]]
    got = F.cross_entropy(t64(x, False), tg.tensor(y))
    np.testing.assert_allclose(got.item(), picked.mean(), rtol=1e-12)
    got = F.cross_entropy(t64(x, False), tg.tensor(y), weight=t64(w, False))
    ww = w[y[keep]]
    np.testing.assert_allclose(got.item(), (picked * ww).sum() / ww.sum(), rtol=1e-12)
    none = F.cross_entropy(t64(x, False), tg.tensor(y), reduction="none").numpy()
    np.testing.assert_allclose(none[keep], picked, rtol=1e-12)
    assert none[~keep].tolist() == [0.0]
    assert tg.gradcheck(lambda a: F.cross_entropy(a, tg.tensor(y), t64(w, False)), (t64(x),))
    with pytest.raises(IndexError, match="out of bounds for 4 classes"):
        F.cross_entropy(t64(x, False), tg.tensor([0, 1, 2, 3, 4, 0]))
    # compiled, the label is picked by comparison (fused, no gather): the same values, the same
    # gradient (ignore_index and weights included), and still an error for a bad label
    for kw in ({}, {"weight": t64(w, False)}, {"label_smoothing": 0.1}):
        f = lambda a, t, kw=kw: F.cross_entropy(a, t, **kw)  # noqa: E731
        jv, jg = tg.jit(tg.value_and_grad(f))(t64(x, False), tg.tensor(y))
        ev, eg = tg.value_and_grad(f)(t64(x, False), tg.tensor(y))
        np.testing.assert_allclose(jv.item(), ev.item(), rtol=1e-12)
        np.testing.assert_allclose(jg.numpy(), eg.numpy(), rtol=1e-12, atol=1e-15)
    with pytest.raises(IndexError, match="nll_loss: target 4 is out of bounds for size 4"):
        tg.jit(F.cross_entropy)(t64(x, False), tg.tensor([0, 1, 2, 3, 4, 0]))
    with pytest.raises(TypeError, match="integer tensor"):
        F.nll_loss(t64(x, False), t64(y, False))


def test_cross_entropy_probabilities_and_spatial_targets():
    x = rng.standard_normal((2, 3, 4, 5))
    y = rng.integers(0, 3, (2, 4, 5))
    lp = log_softmax(x)
    ref = -np.take_along_axis(lp, y[:, None], axis=1).mean()
    np.testing.assert_allclose(F.cross_entropy(t64(x, False), tg.tensor(y)).item(), ref)
    p = np.exp(log_softmax(rng.standard_normal((5, 3))))
    z = rng.standard_normal((5, 3))
    ref = -(log_softmax(z) * p).sum(axis=1).mean()
    np.testing.assert_allclose(F.cross_entropy(t64(z, False), t64(p, False)).item(), ref)


@needs_torch
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_label_smoothing_matches_pytorch(weighted, reduction):
    x = rng.standard_normal((6, 4))
    y = np.array([0, 3, 1, -100, 2, 3])
    w = np.array([1.0, 2.0, 0.5, 1.5]) if weighted else None
    ref = torch.nn.functional.cross_entropy(
        torch.tensor(x),
        torch.tensor(y),
        None if w is None else torch.tensor(w),
        reduction=reduction,
        label_smoothing=0.2,
    )
    got = F.cross_entropy(
        t64(x, False),
        tg.tensor(y),
        None if w is None else t64(w, False),
        reduction=reduction,
        label_smoothing=0.2,
    )
    np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=1e-10, atol=1e-12)


def test_regression_losses_closed_forms():
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    np.testing.assert_allclose(
        F.mse_loss(t64(a, False), t64(b, False)).item(), ((a - b) ** 2).mean()
    )
    np.testing.assert_allclose(
        F.l1_loss(t64(a, False), t64(b, False), reduction="sum").item(), np.abs(a - b).sum()
    )
    t = rng.uniform(0, 1, (3, 4))
    s = 1 / (1 + np.exp(-a))
    bce = -(t * np.log(s) + (1 - t) * np.log(1 - s))
    np.testing.assert_allclose(
        F.binary_cross_entropy_with_logits(t64(a, False), t64(t, False)).item(), bce.mean()
    )
    pw = np.array([1.0, 2.0, 3.0, 0.5])
    bce_pw = -(pw * t * np.log(s) + (1 - t) * np.log(1 - s))
    np.testing.assert_allclose(
        F.binary_cross_entropy_with_logits(
            t64(a, False), t64(t, False), pos_weight=t64(pw, False)
        ).item(),
        bce_pw.mean(),
    )
    # stable for large logits
    big = F.binary_cross_entropy_with_logits(tg.tensor([100.0, -100.0]), tg.tensor([0.0, 1.0]))
    np.testing.assert_allclose(big.item(), 100.0)
    assert tg.gradcheck(lambda x: F.binary_cross_entropy_with_logits(x, t64(t, False)), (t64(a),))
    with pytest.warns(UserWarning, match="different to the input size"):
        F.mse_loss(tg.zeros(3, 1), tg.zeros(3))


def test_dropout_is_seeded_scaled_and_off_in_eval():
    x = tg.ones(1000)
    tg.manual_seed(3)
    a = F.dropout(x, 0.25)
    tg.manual_seed(3)
    b = F.dropout(x, 0.25)
    assert (a == b).all()
    kept = a.numpy() != 0
    assert 0.65 < kept.mean() < 0.85
    np.testing.assert_allclose(a.numpy()[kept], 1 / 0.75)
    assert F.dropout(x, 0.25, training=False) is x
    tape = str(tg.make_tape(lambda v: F.dropout(v, 0.5))(x))
    assert "uniform" in tape  # traced: a new mask at every call of a compiled function


def test_embedding_rows_and_padding_idx_gets_no_gradient():
    w = t64(rng.standard_normal((5, 3)))
    idx = tg.tensor([[0, 2], [2, 4]])
    out = F.embedding(idx, w, padding_idx=2)
    np.testing.assert_allclose(out.detach().numpy(), w.detach().numpy()[idx.numpy()])
    out.sum().backward()
    assert w.grad.numpy()[:, 0].tolist() == [1.0, 0.0, 0.0, 0.0, 1.0]
    with pytest.raises(IndexError, match="out of range"):
        F.embedding(tg.tensor([5]), w)
