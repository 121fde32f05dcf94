"""Compiled code (Numba, through tg.jit) equals eager and the reference interpreter: every op
of the table (values and gradients), and hypothesis-generated random programs, in float32
(1e-5 relative) and float64 (1e-12)."""

from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from op_cases import CASES, EXAMPLES, differentiable_positions

import tracegrad as tg
from tracegrad.ops import OPS
from tracegrad.tape import interpret
from tracegrad.tape.passes import optimize

FEW = settings(
    max_examples=max(EXAMPLES // 4, 3), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TOL = {np.float32: 1e-5, np.float64: 1e-12}


def _inputs(arrays: tuple, dtype: Any) -> list:
    out = []
    for a in arrays:
        if isinstance(a, np.ndarray):
            out.append(tg.tensor(a.astype(dtype) if a.dtype.kind == "f" else a))
        else:
            out.append(a)
    return out


def _close(got: Any, expected: Any, dtype: Any) -> None:
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    if got.dtype.kind == "f":
        np.testing.assert_allclose(got, expected, rtol=TOL[dtype], atol=TOL[dtype])
    else:
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@FEW
@given(data=st.data())
def test_every_op_compiled_equals_eager(name: str, dtype: Any, data: Any) -> None:
    op = OPS[name]
    case = CASES[name]
    arrays, params = case.draw(data.draw)
    inputs = _inputs(arrays, dtype)
    tensors = [x for x in inputs if isinstance(x, tg.Tensor)]

    def f(*ts):
        it = iter(ts)
        return op(*[next(it) if isinstance(x, tg.Tensor) else x for x in inputs], **params)

    _close(tg.jit(f, parallel=False)(*tensors).numpy(), f(*tensors).numpy(), dtype)
    diff = differentiable_positions(op, case, inputs)
    if not diff:
        return
    weights = np.random.default_rng(1).standard_normal(f(*tensors).shape)

    def loss(*ts):
        out = f(*ts)
        return (out * tg.tensor(weights, dtype=out.dtype)).sum()

    grad = tg.grad(loss, argnums=tuple(diff))
    for g, e in zip(tg.jit(grad, parallel=False)(*tensors), grad(*tensors)):
        _close(g.numpy(), e.numpy(), dtype)


from trace.test_random_programs import programs, run_program  # noqa: E402


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@settings(
    max_examples=max(EXAMPLES, 6), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(program=programs(), data=st.data())
def test_random_programs_compiled_equal_interpreter(dtype: Any, program: tuple, data: Any) -> None:
    (sx, sy), steps = program
    x = data.draw(hnp.arrays(dtype, sx, elements=st.floats(-1.5, 1.5, width=32)))
    y = data.draw(hnp.arrays(dtype, sy, elements=st.floats(-1.5, 1.5, width=32)))
    f = tg.value_and_grad(lambda a, b: run_program(steps, a, b), argnums=(0, 1))
    jf = tg.jit(f, parallel=False)
    value, (gx, gy) = jf(tg.tensor(x), tg.tensor(y))
    tape = optimize(tg.make_tape(f)(tg.tensor(x), tg.tensor(y)))
    (v, tx, ty), _ = interpret(tape, [x, y], [])
    tol = 10 * TOL[dtype]  # float32 sums accumulate in float64 when compiled
    np.testing.assert_allclose(value.numpy(), v, rtol=tol, atol=tol)
    np.testing.assert_allclose(gx.numpy(), tx, rtol=tol, atol=tol)
    np.testing.assert_allclose(gy.numpy(), ty, rtol=tol, atol=tol)


def test_reductions_over_inner_loops_and_the_batch_accumulate_per_row():
    # BatchNorm's statistics: sum over (0, 2, 3) of (N, C, H, W). The loops over H and W add
    # into a local per row, combined into the per-channel accumulator once per (n, c)
    x = tg.tensor(np.random.default_rng(0).standard_normal((3, 4, 5, 6)).astype(np.float32))

    def stats(x):
        return x.sum((0, 2, 3), keepdim=True), x.amax((0, 2, 3)), (x * x).mean((0, 3))

    f = tg.jit(stats)
    for got, want in zip(f(x), stats(x)):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-5)
    src = f.source(x)
    assert "row_" in src and "] += row_" in src and " > acc_" in src  # sums and maxima of rows


def test_sign_and_the_gradient_of_abs_at_zero_and_nan_match_eager():
    # (the op table's cases keep away from kinks; these are the kinks)
    x = tg.tensor([-2.0, -0.0, 0.0, 3.0, float("nan")], dtype=tg.float64)
    np.testing.assert_array_equal(tg.jit(lambda t: t.sign())(x).numpy(), x.sign().numpy())
    g = tg.grad(lambda t: t.abs().sum())
    np.testing.assert_array_equal(tg.jit(g)(x).numpy(), g(x).numpy())


def test_long_tapes_keep_every_name_distinct():
    # Tape names run a, b, ..., as, ..., asx, ...: the keyword `as` must not be renamed to a
    # name another var has (it was "asx", the 1194th var: a ResNet-18 step read the wrong
    # array). Here `as` is one of the kept products, read at the end, after `asx` is written.
    from tracegrad.codegen.common import Naming
    from tracegrad.codegen.driver import _safe
    from tracegrad.tape.ir import Var
    from tracegrad.tape.printer import _names

    gen = _names()
    names = [next(gen) for _ in range(20000)]
    renamed = [_safe(n) for n in names]
    assert len(set(renamed)) == len(renamed) and "as0" in renamed
    local = Naming([Var(tg.ops.Aval((), np.dtype(np.float32))) for _ in range(2000)]).names
    assert len(set(local.values())) == 2000

    def f(x, w):
        kept, h = [], x
        for i in range(1300):
            h = h @ w  # a rotation: no fixed point, every product differs
            if 30 <= i < 60:
                kept.append(h)
        return sum(k * h for k in kept)  # read after the 1194th var is written

    x = tg.randn(2, 3, dtype=tg.float64)
    w = tg.tensor(np.linalg.qr(np.random.default_rng(0).standard_normal((3, 3)))[0])
    np.testing.assert_allclose(tg.jit(f)(x, w).numpy(), f(x, w).numpy(), rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@FEW
@given(data=st.data())
def test_rows_picked_by_an_index_tensor_compiled_equal_eager(dtype: Any, data: Any) -> None:
    # `w[i]` / `w[i, :]` (an embedding's lookup) and its gradient run as checked compiled
    # loops (take_rows / add_rows): any index shape, negative and repeated indices, zero rows
    rows = data.draw(st.integers(0, 4))
    rest = data.draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=3))
    ishape = data.draw(hnp.array_shapes(min_dims=1, max_dims=2, min_side=0, max_side=3))
    if rows == 0:
        ishape = (0,) + ishape[1:]  # nothing to pick from
    index = data.draw(hnp.arrays(np.int64, ishape, elements=st.integers(-rows, max(rows - 1, 0))))
    w = tg.tensor(data.draw(hnp.arrays(dtype, (rows, *rest), elements=st.floats(-2, 2, width=32))))
    full = data.draw(st.booleans()) and len(rest) > 0
    scale = tg.tensor(
        np.linspace(0.5, 1.5, int(np.prod(ishape + rest))).reshape(ishape + rest).astype(dtype)
    )

    def f(w, i):
        picked = w[i, :] if full else w[i]
        return (picked * scale).sum(), picked

    compiled = tg.jit(tg.value_and_grad(f, has_aux=True), parallel=False)
    i = tg.tensor(index)
    (value, picked), grad = compiled(w, i)
    (evalue, epicked), egrad = tg.value_and_grad(f, has_aux=True)(w, i)
    _close(picked.numpy(), epicked.numpy(), dtype)
    _close(value.numpy(), evalue.numpy(), dtype)
    _close(grad.numpy(), egrad.numpy(), dtype)


def test_compiled_index_lookups_raise_for_out_of_range_indices() -> None:
    w = tg.randn(5, 3)
    lookup = tg.jit(lambda w, i: w[i] * 2, parallel=False)
    lookup(w, tg.tensor([0, 4, -5]))
    with pytest.raises(IndexError, match="index 5 is out of bounds for dim 0 with size 5"):
        lookup(w, tg.tensor([0, 5]))
    with pytest.raises(IndexError, match="index -6 is out of bounds"):
        lookup(w, tg.tensor([[-6]]))
    # the adjoint alone (as a gradient program would call it) checks too
    scatter = tg.jit(lambda g, i: tg.ops.unindex(g, i, shape=(5, 3), idx=(tg.ops.ARRAY,)))
    np.testing.assert_array_equal(
        scatter(tg.ones(2, 3), tg.tensor([1, 1])).numpy()[1], [2.0, 2.0, 2.0]
    )
    with pytest.raises(IndexError, match="out of bounds"):
        scatter(tg.ones(1, 3), tg.tensor([7]))
    # labels of a compiled loss: the compiled index check names the value and the size
    loss = tg.jit(tg.nn.functional.cross_entropy, parallel=False)
    loss(tg.randn(2, 4), tg.tensor([0, 3]))
    with pytest.raises(IndexError, match="target 4 is out of bounds for size 4"):
        loss(tg.randn(2, 4), tg.tensor([0, 4]))


@pytest.mark.parametrize("dim", [0, 1, 2])
def test_cat_compiles_to_one_helper_call_per_input(dim):
    # cat's lowering (ops/shape.py): `cat_into` per input, for any dim, for inputs that are
    # arguments, loop results, permuted views made inside the segment, and empty along dim
    rng = np.random.default_rng(dim)
    shape = [3, 4, 5]
    a = tg.tensor(rng.standard_normal(shape))
    b = tg.tensor(rng.standard_normal(shape[::-1]))
    empty = list(shape)
    empty[dim] = 0

    def f(a, b):
        parts = [a * 2, b.permute(2, 1, 0), tg.zeros(*empty, dtype=tg.float64), a.exp()]
        parts += [a[..., :1].expand(*shape) * k for k in range(20)]  # many inputs
        return (tg.cat(parts, dim=dim) + 1).sin()

    jf = tg.jit(f)
    got, want = jf(a, b), f(a, b)
    assert got.shape == want.shape
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12, atol=1e-12)
    source = jf.source(a, b)
    assert "cat_into(" in source and "np.concatenate" not in source
