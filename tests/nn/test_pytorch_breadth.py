"""Names PyTorch's tutorials use, against closed forms (numpy) and finite differences."""

from __future__ import annotations

import math
import os

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import tracegrad as tg
import tracegrad.nn.functional as F
from tracegrad import nn

r = np.random.default_rng(0)


def _t(shape, grad=True):
    return tg.tensor(r.standard_normal(shape), requires_grad=grad)


def test_t_type_masked_fill_tril_triu():
    a = r.standard_normal((3, 4))
    x = tg.tensor(a)
    assert x.t().tolist() == a.T.tolist()
    assert tg.ones(3).t().shape == (3,)
    with pytest.raises(ValueError, match="<= 2 dimensions"):
        tg.ones(2, 2, 2).t()
    assert tg.ones(2).type() == "tracegrad.FloatTensor"
    assert tg.ones(2).type(tg.float64).dtype == tg.float64
    assert tg.ones(2).type("torch.LongTensor").dtype == tg.int64
    np.testing.assert_array_equal(x.masked_fill(x > 0, 7.0).numpy(), np.where(a > 0, 7.0, a))
    with pytest.raises(TypeError, match="boolean masks"):
        x.masked_fill(x, 1.0)
    y = tg.tensor(a.copy())
    y.masked_fill_(y < 0, 0.0)
    np.testing.assert_array_equal(y.numpy(), np.maximum(a, 0))
    for k in (-1, 0, 2):
        np.testing.assert_array_equal(tg.tril(x, k).numpy(), np.tril(a, k))
        np.testing.assert_array_equal(x.triu(k).numpy(), np.triu(a, k))
    b = r.standard_normal((2, 3, 3))
    np.testing.assert_array_equal(tg.tensor(b).tril().numpy(), np.tril(b))
    assert tg.gradcheck(lambda x: x.tril(1).masked_fill(x > 0.5, 2.0), [_t((3, 4))])


@pytest.mark.parametrize("p", [2, "fro", 1, 3, math.inf, -math.inf, 0])
def test_norm(p):
    a = r.standard_normal((3, 4))
    x = tg.tensor(a)
    pn = 2 if p == "fro" else p
    want = np.linalg.norm(a.ravel(), ord=pn)
    assert x.norm(p).item() == pytest.approx(want)
    np.testing.assert_allclose(
        tg.norm(x, p, dim=1).numpy(), np.linalg.norm(a, ord=pn, axis=1), rtol=1e-12
    )
    if p not in (0,):
        assert tg.gradcheck(lambda x: x.norm(p, dim=0, keepdim=True), [_t((3, 4))])


def test_norm_gradient_at_zero_is_zero():
    z = tg.zeros(3, requires_grad=True, dtype=tg.float64)
    z.norm().backward()
    assert z.grad.tolist() == [0.0, 0.0, 0.0]


def test_softmax_modules_and_containers():
    x = _t((2, 5), grad=False)
    np.testing.assert_allclose(nn.Softmax(dim=1)(x).numpy(), F.softmax(x, 1).numpy())
    np.testing.assert_allclose(nn.LogSoftmax(dim=-1)(x).numpy(), F.log_softmax(x, -1).numpy())
    with pytest.warns(UserWarning, match="Implicit dimension"):
        nn.Softmax()(x)
    d = nn.ModuleDict({"a": nn.Linear(2, 3), "b": nn.ReLU()})
    d["c"] = nn.Tanh()
    assert list(d) == ["a", "b", "c"] and "a" in d and len(d) == 3
    assert [n for n, _ in d.named_parameters()] == ["a.weight", "a.bias"]
    pl = nn.ParameterList([tg.ones(2), nn.Parameter(tg.zeros(3))])
    pl.append(tg.ones(1))
    assert len(pl) == 3 and all(isinstance(p, nn.Parameter) for p in pl)
    assert [n for n, _ in pl.named_parameters()] == ["0", "1", "2"]
    pd = nn.ParameterDict({"w": tg.ones(2)})
    assert list(pd.state_dict()) == ["w"]


def test_clip_grad_norm_and_value():
    ps = [nn.Parameter(tg.zeros(3, dtype=tg.float64)), nn.Parameter(tg.zeros(2, dtype=tg.float64))]
    g = [r.standard_normal(3) * 10, r.standard_normal(2) * 10]
    for p, gi in zip(ps, g):
        p.grad = tg.tensor(gi)
    total = nn.utils.clip_grad_norm_(ps, max_norm=1.0)
    want = np.sqrt(sum((gi**2).sum() for gi in g))
    assert total.item() == pytest.approx(want)
    coef = 1.0 / (want + 1e-6)
    for p, gi in zip(ps, g):
        np.testing.assert_allclose(p.grad.numpy(), gi * coef)
    small = nn.Parameter(tg.zeros(2, dtype=tg.float64))
    small.grad = tg.tensor([0.1, 0.1], dtype=tg.float64)
    nn.utils.clip_grad_norm_([small], 5.0)
    assert small.grad.tolist() == [0.1, 0.1]  # under max_norm: unchanged
    nn.utils.clip_grad_value_(ps, 0.01)
    assert max(abs(v) for p in ps for v in p.grad.tolist()) <= 0.01
    vec = nn.utils.parameters_to_vector(ps)
    assert vec.shape == (5,)


def test_clip_grad_norm_inside_a_jitted_step_equals_eager():
    def run(compiled):
        tg.manual_seed(0)
        model = nn.Linear(4, 2).double()
        opt = tg.optim.SGD(model.parameters(), lr=0.5)

        def step(x, y):
            opt.zero_grad()
            loss = ((model(x) - y) ** 2).sum() * 100
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 0.5)
            opt.step()
            return loss

        f = tg.jit(step) if compiled else step
        x, y = tg.tensor(np.ones((3, 4))), tg.tensor(np.zeros((3, 2)))
        return [f(x, y).item() for _ in range(4)]

    np.testing.assert_allclose(run(True), run(False), rtol=1e-10)


def test_one_hot():
    t = tg.tensor([0, 2, 1])
    assert F.one_hot(t).tolist() == [[1, 0, 0], [0, 0, 1], [0, 1, 0]]
    assert F.one_hot(t, 4).shape == (3, 4) and F.one_hot(t).dtype == tg.int64
    with pytest.raises(RuntimeError, match="smaller than num_classes"):
        F.one_hot(t, 2)
    with pytest.raises(TypeError, match="LongTensor"):
        F.one_hot(tg.ones(2), 3)


@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate", "circular"])
def test_pad_modes_against_numpy(mode):
    a = r.standard_normal((2, 3, 5))
    npmode = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}
    got = F.pad(tg.tensor(a), (2, 1, 1, 2), mode=mode).numpy()
    np.testing.assert_allclose(got, np.pad(a, ((0, 0), (1, 2), (2, 1)), mode=npmode[mode]))
    assert tg.gradcheck(lambda x: F.pad(x, (2, 1, 1, 2), mode=mode), [_t((2, 3, 5))])


def test_pad_value_crop_and_errors():
    a = r.standard_normal((3, 4))
    got = F.pad(tg.tensor(a), (1, -2), value=9.0).numpy()
    np.testing.assert_allclose(got, np.pad(a[:, :2], ((0, 0), (1, 0)), constant_values=9.0))
    with pytest.raises(ValueError, match="divisible by 2"):
        F.pad(tg.tensor(a), (1,))
    with pytest.raises(ValueError, match="less than the corresponding input dimension"):
        F.pad(tg.tensor(a), (4, 0), mode="reflect")


def _sdpa_reference(q, k, v, mask=None, causal=False, scale=None):
    s = q @ np.swapaxes(k, -2, -1) * (1 / math.sqrt(q.shape[-1]) if scale is None else scale)
    if causal:
        mask = np.tri(q.shape[-2], k.shape[-2], dtype=bool)
    if mask is not None:
        s = np.where(mask, s, -np.inf) if mask.dtype == bool else s + mask
    w = np.exp(s - s.max(-1, keepdims=True))
    return (w / w.sum(-1, keepdims=True)) @ v


def test_scaled_dot_product_attention():
    q, k, v = (r.standard_normal((2, 3, 4, 8)) for _ in range(3))
    tq, tk, tv = (tg.tensor(a) for a in (q, k, v))
    np.testing.assert_allclose(
        F.scaled_dot_product_attention(tq, tk, tv).numpy(), _sdpa_reference(q, k, v), rtol=1e-10
    )
    np.testing.assert_allclose(
        F.scaled_dot_product_attention(tq, tk, tv, is_causal=True).numpy(),
        _sdpa_reference(q, k, v, causal=True),
        rtol=1e-10,
    )
    m = r.standard_normal((4, 4))
    np.testing.assert_allclose(
        F.scaled_dot_product_attention(tq, tk, tv, attn_mask=tg.tensor(m), scale=0.3).numpy(),
        _sdpa_reference(q, k, v, mask=m, scale=0.3),
        rtol=1e-10,
    )
    with pytest.raises(ValueError, match="is_causal"):
        F.scaled_dot_product_attention(tq, tk, tv, attn_mask=tg.tensor(m), is_causal=True)
    assert tg.gradcheck(
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
        [_t((1, 2, 3, 4)), _t((1, 2, 3, 4)), _t((1, 2, 3, 4))],
    )


def test_save_under_any_name_and_load_weights_only(tmp_path):
    model = nn.Linear(3, 2)
    path = os.path.join(tmp_path, "model.pth")
    tg.save(model.state_dict(), path)
    assert os.path.exists(path)
    sd = tg.load(path, weights_only=True, map_location="cpu")
    assert list(sd) == ["weight", "bias"]
    np.testing.assert_array_equal(sd["weight"].numpy(), model.weight.detach().numpy())


def test_linear_without_bias_and_contiguous_under_jit_in_a_model():
    model = nn.Sequential(nn.Linear(4, 6, bias=False), nn.ReLU(), nn.Linear(6, 2))

    @tg.jit
    def f(x):
        return model(x.transpose(0, 1).contiguous()).sum()

    with tg.no_grad():
        x = tg.randn(4, 5)
        assert f(x).item() == pytest.approx(model(x.t()).sum().item(), rel=1e-5)


def test_size_prints_as_pytorchs():
    s = tg.ones(2, 3).size()
    assert repr(s) == "tracegrad.Size([2, 3])" and str(s) == repr(s)
    assert s == (2, 3) and isinstance(s, tuple) and s.numel() == 6
    assert isinstance(s[1:], tg.Size) and s[0] == 2
    assert tg.ones(2, 3).shape == (2, 3)


def test_sort_argsort_topk():
    a = np.array([[3.0, 1.0, np.nan, 2.0, 1.0], [0.0, 5.0, 5.0, -1.0, 2.0]])
    x = tg.tensor(a)
    v, i = x.sort()
    assert i.tolist() == [[1, 4, 3, 0, 2], [3, 0, 4, 1, 2]]  # stable; NaN last
    v, i = x.sort(dim=1, descending=True)
    assert i.tolist() == [[2, 0, 3, 1, 4], [1, 2, 4, 0, 3]]  # NaN first, ties in order
    np.testing.assert_array_equal(v.numpy()[1], [5, 5, 2, 0, -1])
    assert tg.argsort(tg.tensor([3, 1, 2])).tolist() == [1, 2, 0]
    vals, idx = tg.topk(tg.tensor([4.0, 2.0, 7.0, 1.0]), 2)
    assert vals.tolist() == [7.0, 4.0] and idx.tolist() == [2, 0]
    assert tg.topk(tg.tensor([4.0, 2.0, 7.0, 1.0]), 3, largest=False).indices.tolist() == [3, 1, 0]
    with pytest.raises(RuntimeError, match="out of range"):
        tg.topk(tg.ones(3), 4)
    assert tg.gradcheck(lambda x: x.sort(0, descending=True).values * 2, [_t((4, 3))])
    assert tg.gradcheck(lambda x: tg.topk(x, 2, dim=1).values, [_t((3, 5))])
    f = tg.jit(lambda x: x.topk(2).values.sum() + x.sort(0).values[0].sum())
    x = tg.tensor(r.standard_normal((4, 3)))
    assert f(x).item() == pytest.approx((x.topk(2).values.sum() + x.sort(0).values[0].sum()).item())


def test_multinomial():
    g = tg.Generator().manual_seed(0)
    draws = tg.multinomial(tg.tensor([0.0, 1.0, 3.0]), 2000, replacement=True, generator=g)
    counts = np.bincount(draws.numpy(), minlength=3)
    assert counts[0] == 0 and 0.68 < counts[2] / 2000 < 0.82
    rows = tg.multinomial(tg.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 2.0, 0.0, 1.0]]), 2)
    assert rows.shape == (2, 2) and rows.dtype == tg.int64
    assert sorted(rows[1].tolist()) == [1, 3] and len(set(rows[0].tolist())) == 2
    with pytest.raises(RuntimeError, match="without replacement"):
        tg.multinomial(tg.tensor([0.0, 1.0]), 2)
    with pytest.raises(RuntimeError, match="element < 0"):
        tg.multinomial(tg.tensor([-1.0, 1.0]), 1)
    with pytest.raises(tg.TracerError, match="multinomial"):
        tg.jit(lambda p: tg.multinomial(p, 1))(tg.ones(3))


def test_default_device_and_accelerator():
    assert tg.get_default_device() == "cpu"
    tg.set_default_device("cpu")
    try:
        assert tg.zeros(2).device == "cpu"
    finally:
        tg.set_default_device(None)
    device = tg.accelerator.current_accelerator() if tg.accelerator.is_available() else "cpu"
    assert tg.ones(1, device=device).device == device
    assert tg.cuda.is_available() == tg.accelerator.is_available()


def test_linear_on_a_batch_of_sequences_is_one_matrix_product():
    x = _t((2, 3, 4))
    w, b = _t((5, 4)), _t((5,))
    out = F.linear(x, w, b)
    assert out.shape == (2, 3, 5)
    want = np.einsum("btc,oc->bto", x.detach().numpy(), w.detach().numpy()) + b.detach().numpy()
    np.testing.assert_allclose(out.detach().numpy(), want, rtol=1e-12)
    assert tg.gradcheck(F.linear, [_t((2, 3, 4)), _t((5, 4)), _t((5,))])
    tape = str(tg.make_tape(lambda x: F.linear(x, w.detach()))(x.detach()))
    assert tape.count("matmul") == 1 and "f64[6,4]" in tape  # one (B*T, C) product


def test_out_keyword():
    a, b = tg.ones(3), tg.full((3,), 2.0)
    c = tg.empty(3)
    assert tg.add(a, b, alpha=2, out=c) is c and c.tolist() == [5.0, 5.0, 5.0]
    m = tg.zeros(2, 2)
    tg.matmul(tg.ones(2, 3), tg.ones(3, 2), out=m)
    assert m.tolist() == [[3.0, 3.0], [3.0, 3.0]]
    s = tg.zeros(2, dtype=tg.float64)
    tg.sum(tg.ones(2, 3), 1, out=s)  # float32 result cast into float64 out
    assert s.tolist() == [3.0, 3.0] and s.dtype == tg.float64
    grown = tg.zeros(1)
    with pytest.warns(UserWarning, match="was resized"):
        tg.cat([a, b], out=grown)
    assert grown.shape == (6,)
    with pytest.raises(RuntimeError, match="don't support automatic differentiation"):
        tg.exp(tg.ones(2, requires_grad=True), out=tg.zeros(2))
    with pytest.raises(RuntimeError, match="can't be cast"):
        tg.add(tg.ones(2), 0.5, out=tg.zeros(2, dtype=tg.int64))
    acc = tg.zeros(3)

    @tg.jit
    def f(x):
        tg.mul(x, 2.0, out=acc)  # into captured state: written back after the call
        return x

    f(tg.ones(3))
    assert acc.tolist() == [2.0, 2.0, 2.0]


@pytest.mark.parametrize("p", [2, 3, 1, math.inf])
def test_norm_of_nan_is_nan(p):
    # a NaN is not a zero vector: the norm is NaN, as PyTorch's (a sum of |x|^p that is NaN)
    x = tg.tensor([1.0, float("nan"), 2.0])
    assert math.isnan(x.norm(p).item())
    assert tg.tensor([0.0, 0.0]).norm(p).item() == 0.0


def test_clip_grad_norm_of_nan_gradients_raises_or_spreads_nan():
    p = nn.Parameter(tg.tensor([1.0, 2.0]))
    p.grad = tg.tensor([float("nan"), 1.0])
    with pytest.raises(RuntimeError, match="non-finite"):
        nn.utils.clip_grad_norm_([p], 1.0, error_if_nonfinite=True)
    total = nn.utils.clip_grad_norm_([p], 1.0)
    assert math.isnan(total.item()) and np.isnan(p.grad.numpy()).all()  # as PyTorch


_grads = st.lists(
    hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5), min_size=1, max_size=5
)


@settings(max_examples=60, deadline=None)
@given(
    shapes=_grads,
    dtype=st.sampled_from([np.float32, np.float64]),
    scale=st.sampled_from([0.0, 1e-3, 1.0, 1e3, 1e30]),
    max_norm=st.sampled_from([0.5, 1.0, 1e6]),
    norm_type=st.sampled_from([2.0, math.inf]),
    special=st.sampled_from([None, np.nan, np.inf]),
    seed=st.integers(0, 2**16),
)
def test_clip_grad_norm_on_arrays_equals_the_tensor_form_bit_for_bit(
    shapes, dtype, scale, max_norm, norm_type, special, seed
):
    # eager CPU gradients take a path over the arrays (nn/utils.py _clip_arrays); it must
    # give exactly the tensor form's results (the same op forwards in the same order)
    # (the inf-norm of an empty gradient raises in both forms, as PyTorch's vector_norm)
    assume(norm_type != math.inf or all(int(np.prod(s)) > 0 for s in shapes))
    rng = np.random.default_rng(seed)
    arrays = [(rng.standard_normal(s) * scale).astype(dtype) for s in shapes]
    if special is not None and arrays[0].size:
        arrays[0].flat[0] = special

    def clipped(array_path: bool) -> tuple:
        ps = [nn.Parameter(tg.zeros(a.shape, dtype=dtype)) for a in arrays]
        for p, a in zip(ps, arrays):
            p.grad = tg.tensor(a.copy())
        with np.errstate(all="ignore"), _array_path(array_path):
            total = nn.utils.clip_grad_norm_(ps, max_norm, norm_type)
        return total.numpy(), [p.grad.numpy() for p in ps]

    (fast_total, fast_grads), (total, grads) = clipped(True), clipped(False)
    assert fast_total.dtype == total.dtype
    np.testing.assert_array_equal(fast_total, total)
    for got, want in zip(fast_grads, grads):
        assert got.dtype == want.dtype == dtype
        np.testing.assert_array_equal(got, want)


class _array_path:
    """Leaves clip_grad_norm_'s array path on, or switches it off (the tensor form runs)."""

    def __init__(self, on: bool):
        self.on = on

    def __enter__(self):
        import tracegrad.nn.utils as U

        self.saved = U._plain_arrays
        if not self.on:
            U._plain_arrays = lambda grads: False

    def __exit__(self, *exc):
        import tracegrad.nn.utils as U

        U._plain_arrays = self.saved
