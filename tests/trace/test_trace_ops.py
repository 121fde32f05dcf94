"""For every op in the table: tracing then interpreting equals eager, for values and for
gradients, and the type checker accepts the tape."""

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from op_cases import CASES, SETTINGS

import tracegrad as tg
from tracegrad.ops import OPS
from tracegrad.tape import check, interpret


def _inputs(arrays: tuple) -> list:
    return [tg.from_numpy(np.asarray(a)) if isinstance(a, np.ndarray) else a for a in arrays]


def _run(tape, tensors):
    return interpret(tape, [t.numpy() for t in tensors], [])


@pytest.mark.parametrize("name", sorted(CASES))
@SETTINGS
@given(data=st.data())
def test_trace_then_interpret_equals_eager(name: str, data: Any) -> None:
    op = OPS[name]
    arrays, params = CASES[name].draw(data.draw)
    inputs = _inputs(arrays)
    tensors = [x for x in inputs if isinstance(x, tg.Tensor)]

    def f(*ts):
        it = iter(ts)
        return op(*[next(it) if isinstance(x, tg.Tensor) else x for x in inputs], **params)

    expected = f(*tensors).numpy()
    tape = tg.make_tape(f)(*tensors)
    check(tape)
    (got,), _ = _run(tape, tensors)
    if op.decompose is None:
        np.testing.assert_array_equal(got, expected)  # the same numpy forwards
    else:  # a fused eager kernel, traced as its parts: equal up to rounding
        assert not any(e.op is op for e in tape.eqns)
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    assert got.dtype == expected.dtype


@pytest.mark.parametrize("name", sorted(n for n, c in CASES.items() if c.grad))
@SETTINGS
@given(data=st.data())
def test_traced_gradients_equal_eager(name: str, data: Any) -> None:
    op = OPS[name]
    arrays, params = CASES[name].draw(data.draw)
    inputs = _inputs(arrays)
    diff = [
        i
        for i, a in enumerate(arrays)
        if isinstance(a, np.ndarray)
        and a.dtype.kind == "f"
        and (op.vjp[0] if op.variadic else (op.vjp[i] if i < len(op.vjp) else None)) is not None
    ]
    if not diff:
        return
    tensors = [x for x in inputs if isinstance(x, tg.Tensor)]
    positions = [i for i, x in enumerate(inputs) if isinstance(x, tg.Tensor)]
    argnums = tuple(positions.index(i) for i in diff)
    out_shape = op(*inputs, **params).shape
    weights = np.random.default_rng(0).standard_normal(out_shape)

    def loss(*ts):
        it = iter(ts)
        out = op(*[next(it) if isinstance(x, tg.Tensor) else x for x in inputs], **params)
        return (out * tg.tensor(weights, dtype=out.dtype)).sum()

    grad_fn = tg.grad(loss, argnums=argnums)
    expected = [g.numpy() for g in grad_fn(*tensors)]
    tape = tg.make_tape(grad_fn)(*tensors)
    check(tape)
    got, _ = _run(tape, tensors)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12)
