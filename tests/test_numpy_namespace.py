"""tracegrad.numpy: numpy's names and conventions, results equal to numpy's, differentiable."""

import numpy as np
import pytest

import tracegrad as tg
import tracegrad.numpy as tnp

A = np.arange(12.0).reshape(3, 4) / 7 - 0.5


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (lambda m, a: m.sum(a, axis=0), None),
        (lambda m, a: m.sum(a, axis=(0, 1), keepdims=True), None),
        (lambda m, a: m.mean(a, axis=1), None),
        (lambda m, a: m.max(a, axis=1), None),
        (lambda m, a: m.min(a), None),
        (lambda m, a: m.var(a, axis=0), None),
        (lambda m, a: m.std(a, ddof=1), None),
        (lambda m, a: m.prod(a, axis=1), None),
        (lambda m, a: m.argmax(a, axis=1), None),
        (lambda m, a: m.transpose(a), None),
        (lambda m, a: m.transpose(m.reshape(a, (2, 3, 2)), (1, 0, 2)), None),
        (lambda m, a: m.reshape(a, -1), None),
        (lambda m, a: m.concatenate([a, a], axis=1), None),
        (lambda m, a: m.stack([a, a], axis=2), None),
        (lambda m, a: m.expand_dims(a, 1), None),
        (lambda m, a: m.squeeze(m.expand_dims(a, 0)), None),
        (lambda m, a: m.dot(a, m.transpose(a)), None),
        (lambda m, a: m.matmul(a, m.transpose(a)), None),
        (lambda m, a: m.where(a > 0, a, -a), None),
        (lambda m, a: m.maximum(a, 0.1), None),
        (lambda m, a: m.clip(a, -0.2, 0.2), None),
        (lambda m, a: m.exp(a) + m.log(m.abs(a) + 1) + m.tanh(a) + m.sin(a) * m.cos(a), None),
        (lambda m, a: m.power(m.abs(a), 1.5), None),
        (lambda m, a: m.outer(a[0], a[1]), None),
        (lambda m, a: m.logaddexp(a, 2 * a), None),
        (lambda m, a: m.swapaxes(a, 0, 1), None),
    ],
)
def test_matches_numpy(ours, theirs):
    expected = ours(np, A)
    got = ours(tnp, tg.tensor(A))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-12)


def test_split_follows_numpy():
    parts = tnp.split(tg.tensor(A), [1, 3], axis=1)
    for p, q in zip(parts, np.split(A, [1, 3], axis=1)):
        np.testing.assert_array_equal(p.numpy(), q)


def test_numpy_code_differentiates():
    def loss(w, x, y):
        return tnp.mean((tnp.tanh(tnp.dot(x, w)) - y) ** 2)

    rng = np.random.default_rng(0)
    x, y, w = rng.standard_normal((5, 3)), rng.standard_normal(5), rng.standard_normal(3)
    g = tg.grad(loss)(w, x, y)
    # closed form: d/dw mean((tanh(xw) - y)^2) = 2/n x^T ((t - y)(1 - t^2))
    t = np.tanh(x @ w)
    np.testing.assert_allclose(g.numpy(), 2 / 5 * x.T @ ((t - y) * (1 - t**2)), rtol=1e-10)


def test_python_floats_are_float32_arrays_keep_dtype():
    assert tnp.array([1.0, 2.0]).dtype == np.float32
    assert tnp.asarray(np.ones(2)).dtype == np.float64


def test_dot_refuses_batches():
    with pytest.raises(ValueError, match="matmul"):
        tnp.dot(tg.ones(2, 2, 2), tg.ones(2, 2))
