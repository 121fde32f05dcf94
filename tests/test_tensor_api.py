"""The Tensor API of API.md: creation, attributes, methods, indexing, and the composite
functions (softmax, logsumexp, var, std, stack, split, ...) against numpy and finite
differences."""

import numpy as np
import pytest

import tracegrad as tg

RNG = np.random.default_rng(0)
A = RNG.standard_normal((3, 4))


def f64(a):
    return tg.tensor(a, dtype=tg.float64, requires_grad=True)


# --------------------------------------------------------------------------------------------
# creation and attributes


def test_creation_functions():
    assert tg.zeros(2, 3).shape == (2, 3) and tg.zeros((2, 3)).dtype == tg.float32
    assert tg.ones([2]).tolist() == [1.0, 1.0]
    assert tg.full((2,), 7).dtype == tg.int64 and tg.full((2,), 7.0).dtype == tg.float32
    assert tg.arange(3).tolist() == [0, 1, 2] and tg.arange(3).dtype == tg.int64
    assert tg.arange(0, 1, 0.5).tolist() == [0.0, 0.5]
    assert tg.linspace(0, 1, 3).tolist() == [0.0, 0.5, 1.0]
    assert tg.eye(2).tolist() == [[1.0, 0.0], [0.0, 1.0]]
    assert tg.empty(2, 2).shape == (2, 2)
    assert tg.zeros_like(tg.ones(2, dtype=tg.float64)).dtype == tg.float64
    assert tg.ones_like(tg.ones(2), requires_grad=True).requires_grad
    assert tg.full_like(tg.ones(2), 3.0).tolist() == [3.0, 3.0]
    assert tg.tensor(3).dtype == tg.int64 and tg.tensor(True).dtype == tg.bool
    assert tg.tensor([[1, 2]], dtype=tg.float64).dtype == tg.float64


def test_random_functions_are_seeded():
    tg.manual_seed(3)
    a = tg.rand(4)
    b = tg.randn(2, 2)
    c = tg.randint(0, 10, (5,))
    tg.manual_seed(3)
    assert tg.rand(4).tolist() == a.tolist()
    assert tg.randn(2, 2).tolist() == b.tolist()
    assert tg.randint(0, 10, (5,)).tolist() == c.tolist()
    assert a.dtype == tg.float32 and c.dtype == tg.int64
    assert ((a >= 0) & (a < 1)).all().item()
    assert tg.rand_like(b).shape == (2, 2) and tg.randn_like(b).dtype == tg.float32


def test_from_numpy_shares_memory():
    a = np.arange(3.0)
    t = tg.from_numpy(a)
    a[0] = 10
    assert t[0].item() == 10 and t.dtype == tg.float64
    assert np.asarray(t) is a


def test_attributes_and_conversions():
    t = tg.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert t.shape == (2, 2) and t.size() == (2, 2) and t.size(1) == 2
    assert t.ndim == 2 and t.dim() == 2 and t.numel() == 4 and len(t) == 2
    assert t.device == "cpu" and str(t.device) == "cpu" and repr(t.device) == "device(type='cpu')"
    assert t.T.tolist() == [[1.0, 3.0], [2.0, 4.0]]
    assert t.to("cpu") is t and t.to(tg.float64).dtype == tg.float64
    assert t.double().dtype == tg.float64 and t.double().float().dtype == tg.float32
    assert t.astype(tg.int64).dtype == tg.int64
    assert t[0, 1].item() == 2.0 and float(t[1, 1]) == 4.0 and int(t[1, 0]) == 3
    assert f"{t[0, 0]:.2f}" == "1.00"
    assert [row.tolist() for row in t] == [[1.0, 2.0], [3.0, 4.0]]
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(t)
    with pytest.raises(RuntimeError, match="cannot be converted to Scalar"):
        t.item()
    with pytest.raises(RuntimeError, match="unknown device 'mps'"):
        t.to("mps")


def test_clone_and_contiguous():
    x = f64(A)
    c = x.clone()
    assert c.grad_fn.name() == "CloneBackward0"
    c.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.ones((3, 4)))
    t = tg.tensor(A).T
    assert not t.is_contiguous() and t.contiguous().is_contiguous()
    np.testing.assert_array_equal(t.contiguous().numpy(), A.T)


# --------------------------------------------------------------------------------------------
# indexing


@pytest.mark.parametrize(
    "index",
    [
        0,
        -1,
        (1, 2),
        slice(1, None),
        (slice(None), slice(None, None, 2)),
        (Ellipsis, 1),
        (None, 0),
        np.array([2, 0, 2]),
        (np.array([0, 1]), np.array([3, 3])),
        A > 0,
        (slice(None), [1, 3]),
    ],
)
def test_getitem_forward_and_gradient(index):
    x = f64(A)
    idx = (
        tuple(tg.tensor(i) if isinstance(i, np.ndarray) else i for i in index)
        if isinstance(index, tuple)
        else (tg.tensor(index) if isinstance(index, np.ndarray) else index)
    )
    np.testing.assert_array_equal(x[idx].detach().numpy(), A[index])
    assert tg.gradcheck(lambda t: t[idx], (x,))


def test_index_select_gather_split_chunk():
    x = f64(A)
    idx = tg.tensor([2, 0])
    np.testing.assert_array_equal(tg.index_select(x, 1, idx).detach().numpy(), A[:, [2, 0]])
    gi = tg.tensor([[0, 0], [1, 0], [3, 2]])
    np.testing.assert_array_equal(
        x.gather(1, gi).detach().numpy(), np.take_along_axis(A, gi.numpy(), 1)
    )
    assert [p.shape for p in x.split(3, dim=1)] == [(3, 3), (3, 1)]
    assert [p.shape for p in x.split([1, 3], dim=1)] == [(3, 1), (3, 3)]
    assert [p.shape for p in x.chunk(2, dim=0)] == [(2, 4), (1, 4)]
    for fn in [
        lambda t: tg.index_select(t, 1, idx),
        lambda t: t.gather(1, gi),
        lambda t: t.split([1, 3], dim=1)[1],
        lambda t: t.chunk(2)[1],
        lambda t: tg.stack([t, 2 * t], dim=1),
        lambda t: tg.cat([t, t[:1]], dim=0),
        lambda t: t.unbind(1)[2],
    ]:
        assert tg.gradcheck(fn, (x,))


def test_scatter_add_repeats_add_up_and_dtypes_must_match():
    out = tg.scatter_add(tg.zeros(2, 3), 1, tg.tensor([[1, 1, 2], [0, -1, 0]]), tg.ones(2, 3))
    assert out.tolist() == [[0.0, 2.0, 1.0], [2.0, 0.0, 1.0]]  # repeats add, -1 wraps (numpy's)
    with pytest.raises(IndexError, match="index 3 is out of bounds for dim 1 with size 3"):
        tg.scatter_add(tg.zeros(2, 3), 1, tg.tensor([[3], [0]]), tg.ones(2, 1))
    with pytest.raises(TypeError, match="scatter_add: src must have the input's dtype"):
        tg.scatter_add(tg.zeros(2, 3, dtype=tg.int64), 1, tg.tensor([[1], [0]]), tg.ones(2, 1))


def test_setitem_with_tensor_index_and_mask():
    t = tg.zeros(4)
    t[tg.tensor([1, 3])] = tg.tensor([5.0, 6.0])
    assert t.tolist() == [0.0, 5.0, 0.0, 6.0]
    t[t > 5.5] = 0.0
    assert t.tolist() == [0.0, 5.0, 0.0, 0.0]


# --------------------------------------------------------------------------------------------
# shapes


def test_shape_functions():
    x = tg.tensor(A)
    assert x.reshape(-1, 2).shape == (6, 2) and x.view(2, 6).shape == (2, 6)
    assert x.flatten().shape == (12,) and tg.ones(2, 3, 4).flatten(1).shape == (2, 12)
    assert x.unsqueeze(0).shape == (1, 3, 4) and x.unsqueeze(-1).shape == (3, 4, 1)
    assert tg.ones(1, 3, 1).squeeze().shape == (3,) and tg.ones(1, 3, 1).squeeze(0).shape == (3, 1)
    assert x.transpose(0, 1).shape == (4, 3) and x.permute(1, 0).shape == (4, 3)
    assert tg.ones(3, 1).expand(3, 4).shape == (3, 4)
    assert tg.ones(3, 1).expand(-1, 4).shape == (3, 4)
    assert tg.ones(1, 4).expand_as(x).shape == (3, 4)
    with pytest.raises(RuntimeError, match="only one dimension can be inferred"):
        x.reshape(-1, -1)
    with pytest.raises(ValueError, match="expand"):
        tg.ones(3, 2).expand(3, 4)
    with pytest.raises(IndexError, match="out of range"):
        x.sum(dim=2)


# --------------------------------------------------------------------------------------------
# reductions and composites against numpy, and their gradients


def np_softmax(a, axis):
    e = np.exp(a - a.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (lambda t: t.sum(), lambda a: a.sum()),
        (lambda t: t.sum(dim=(0, 1), keepdim=True), lambda a: a.sum((0, 1), keepdims=True)),
        (lambda t: t.mean(1), lambda a: a.mean(1)),
        (lambda t: t.var(), lambda a: a.var(ddof=1)),
        (lambda t: t.var(0, unbiased=False), lambda a: a.var(0)),
        (lambda t: t.std(1, keepdim=True), lambda a: a.std(1, ddof=1, keepdims=True)),
        (lambda t: t.prod(1), lambda a: a.prod(1)),
        (lambda t: t.max(), lambda a: a.max()),
        (lambda t: t.max(1).values, lambda a: a.max(1)),
        (lambda t: t.min(0, keepdim=True)[0], lambda a: a.min(0, keepdims=True)),
        (lambda t: t.amax((0, 1)), lambda a: a.max()),
        (lambda t: t.softmax(1), lambda a: np_softmax(a, 1)),
        (lambda t: tg.softmax(t, 0), lambda a: np_softmax(a, 0)),
        (lambda t: t.log_softmax(-1), lambda a: np.log(np_softmax(a, -1))),
        (lambda t: t.logsumexp(1), lambda a: np.log(np.exp(a).sum(1))),
        (lambda t: t.clamp(-0.5, 0.5), lambda a: np.clip(a, -0.5, 0.5)),
        (lambda t: t.clamp(min=tg.zeros(4, dtype=tg.float64)), lambda a: np.maximum(a, 0)),
        (lambda t: tg.maximum(t, t.T[:, :3].T * 0 + 0.1), lambda a: np.maximum(a, 0.1)),
        (lambda t: tg.where(t > 0, t, 0.0), lambda a: np.where(a > 0, a, 0.0)),
        (lambda t: t.sigmoid(), lambda a: 1 / (1 + np.exp(-a))),
        (
            lambda t: tg.gelu(t, approximate="tanh"),
            lambda a: 0.5 * a * (1 + np.tanh(np.sqrt(2 / np.pi) * (a + 0.044715 * a**3))),
        ),
        (lambda t: t @ t.T, lambda a: a @ a.T),
        (lambda t: tg.mm(t, t.T), lambda a: a @ a.T),
        (lambda t: tg.bmm(t[None], t.T[None]), lambda a: (a @ a.T)[None]),
        (lambda t: t.square().rsqrt(), lambda a: 1 / np.abs(a)),
    ],
)
def test_reductions_and_composites(ours, theirs):
    x = f64(A)
    np.testing.assert_allclose(ours(x).detach().numpy(), theirs(A), rtol=1e-10, atol=1e-12)
    assert tg.gradcheck(ours, (x,))
    assert tg.gradgradcheck(ours, (x,), atol=1e-4)


def test_max_with_dim_returns_values_and_indices():
    x = tg.tensor([[1.0, 5.0, 2.0], [7.0, 0.0, 7.0]])
    values, indices = x.max(dim=1)
    assert values.tolist() == [5.0, 7.0] and indices.tolist() == [1, 0]
    assert tg.argmax(x).item() == 3 and x.argmin(1).tolist() == [0, 1]
    r = tg.max(x, 1, keepdim=True)
    assert r.values.shape == (2, 1) and r.indices.shape == (2, 1)


def test_max_ties_share_the_gradient_as_pytorch():
    x = tg.tensor([1.0, 3.0, 3.0], requires_grad=True)
    x.max().backward()
    assert x.grad.tolist() == [0.0, 0.5, 0.5]
    y = tg.tensor([[1.0, 3.0, 3.0]], requires_grad=True)
    y.max(dim=1).values.sum().backward()
    assert y.grad.tolist() == [[0.0, 1.0, 0.0]]


def test_softmax_is_stable_for_large_inputs():
    x = tg.tensor([1000.0, 0.0, -1000.0])
    assert np.isfinite(x.softmax(0).numpy()).all()
    assert x.log_softmax(0).tolist()[0] == 0.0
    assert tg.logsumexp(tg.tensor([-np.inf, -np.inf]), 0).item() == -np.inf


def test_relu_gradient_at_zero_is_zero():
    x = tg.tensor([-1.0, 0.0, 2.0], requires_grad=True)
    x.relu().sum().backward()
    assert x.grad.tolist() == [0.0, 0.0, 1.0]


def test_comparisons_and_logic():
    x = tg.tensor([1.0, 2.0, 3.0])
    assert (x > 1.5).tolist() == [False, True, True]
    assert ((x > 1.5) & (x < 2.5)).tolist() == [False, True, False]
    assert (~(x > 1.5)).tolist() == [True, False, False]
    assert (x == tg.tensor([1.0, 0.0, 3.0])).dtype == tg.bool
    assert tg.all(x > 0).item() and not tg.any(x > 5).item()
