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
from random_programs import programs, run_program

import tracegrad as tg
from tracegrad.tape import check, interpret
from tracegrad.tape.passes import optimize


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
