"""Hypothesis-generated random programs (compositions of elementwise ops, broadcasts,
reductions and reshapes on random shapes): trace + interpret == eager, for values and for
gradients, in float32 and float64; the type checker accepts every traced tape, and the
optimization passes change no result."""

from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from op_cases import EXAMPLES

import tracegrad as tg
from tracegrad.tape import check, interpret
from tracegrad.tape.passes import optimize

UNARY = {
    "tanh": lambda a: a.tanh(),
    "sin": lambda a: a.sin(),
    "sigmoid": lambda a: a.sigmoid(),
    "exp_small": lambda a: (a * 0.3).exp(),
    "softplus": lambda a: (a.exp() + 1).log(),
    "square": lambda a: a * a,
    "relu": lambda a: a.relu(),
    "neg": lambda a: -a,
    "gelu": lambda a: tg.gelu(a),
}
BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "safe_div": lambda a, b: a / (b * b + 1),
    "maximum": lambda a, b: tg.maximum(a, b),
    "where": lambda a, b: tg.where(a > b, a, b * 2),
}


@st.composite
def programs(draw: Any) -> tuple:
    """(input shapes, steps); every step names its operands by index into the values so far."""
    shapes = draw(
        hnp.mutually_broadcastable_shapes(
            num_shapes=2, min_dims=1, max_dims=3, min_side=1, max_side=3
        )
    )
    values = list(shapes.input_shapes)
    steps = []
    for _ in range(draw(st.integers(1, 7))):
        kind = draw(st.sampled_from(["unary", "binary", "reduce", "reshape", "scalar"]))
        i = draw(st.integers(0, len(values) - 1))
        shape = values[i]
        if kind == "unary":
            steps.append(("unary", draw(st.sampled_from(sorted(UNARY))), i))
        elif kind == "scalar":
            steps.append(
                (
                    "scalar",
                    draw(st.sampled_from(["add", "mul"])),
                    i,
                    draw(st.floats(-2, 2, width=32)),
                )
            )
        elif kind == "binary":
            partners = [j for j, s in enumerate(values) if _broadcasts(s, shape)]
            j = draw(st.sampled_from(partners))
            steps.append(("binary", draw(st.sampled_from(sorted(BINARY))), i, j))
            shape = np.broadcast_shapes(shape, values[j])
        elif kind == "reduce":
            if not shape:
                continue
            dim = draw(st.integers(0, len(shape) - 1))
            keep = draw(st.booleans())
            op = draw(st.sampled_from(["sum", "mean", "amax"]))
            steps.append(("reduce", op, i, dim, keep))
            shape = (
                tuple(1 if d == dim else s for d, s in enumerate(shape))
                if keep
                else tuple(s for d, s in enumerate(shape) if d != dim)
            )
        else:
            steps.append(("reshape", "flatten", i))
            shape = (int(np.prod(shape)),)
        values.append(tuple(shape))
    return tuple(shapes.input_shapes), steps


def _broadcasts(a: tuple, b: tuple) -> bool:
    try:
        np.broadcast_shapes(a, b)
        return True
    except ValueError:
        return False


def run_program(steps: list, x: Any, y: Any) -> Any:
    values = [x, y]
    for step in steps:
        kind, name, i = step[:3]
        a = values[i]
        if kind == "unary":
            values.append(UNARY[name](a))
        elif kind == "scalar":
            values.append(a + step[3] if name == "add" else a * step[3])
        elif kind == "binary":
            values.append(BINARY[name](a, values[step[3]]))
        elif kind == "reduce":
            dim, keep = step[3], step[4]
            if name == "amax":
                values.append(a.amax(dim, keepdim=keep))
            else:
                values.append(getattr(a, name)(dim, keepdim=keep))
        else:
            values.append(a.reshape(-1))
    total = values[0].sum() * 0
    for v in values:
        total = total + (v * v).sum()
    return total


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@settings(
    max_examples=max(EXAMPLES * 4, 10), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(program=programs(), data=st.data())
def test_random_program_traced_equals_eager(dtype: Any, program: tuple, data: Any) -> None:
    (sx, sy), steps = program
    x = data.draw(hnp.arrays(dtype, sx, elements=st.floats(-1.5, 1.5, width=32)))
    y = data.draw(hnp.arrays(dtype, sy, elements=st.floats(-1.5, 1.5, width=32)))
    f = tg.value_and_grad(lambda a, b: run_program(steps, a, b), argnums=(0, 1))
    value, (gx, gy) = f(tg.tensor(x), tg.tensor(y))
    tape = tg.make_tape(f)(tg.tensor(x), tg.tensor(y))
    check(tape)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for t in (tape, optimize(tape)):
        check(t)
        (v, tx, ty), _ = interpret(t, [x, y], [])
        np.testing.assert_allclose(v, value.numpy(), rtol=tol, atol=tol)
        np.testing.assert_allclose(tx, gx.numpy(), rtol=tol, atol=tol)
        np.testing.assert_allclose(ty, gy.numpy(), rtol=tol, atol=tol)
        assert tx.dtype == dtype and ty.dtype == dtype
