"""The CUDA target (tg.jit(device="cuda"), codegen/cuda.py) equals the CPU: every op of the
table (values and gradients) and hypothesis random programs, float32 and float64. Runs on
Numba's simulator unless NUMBA_ENABLE_CUDASIM=0 on a machine with a GPU (tests/conftest.py); the
simulator runs every GPU thread as a Python thread, so the shapes are small."""

from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from op_cases import CASES, EXAMPLES, differentiable_positions

import tracegrad as tg
from tracegrad import devices as cuda_device
from tracegrad.ops import OPS
from tracegrad.tape import interpret
from tracegrad.tape.passes import optimize

pytestmark = pytest.mark.skipif(not cuda_device.available(), reason="no CUDA GPU or simulator")

FEW = settings(
    max_examples=max(EXAMPLES // 6, 2), deadline=None, suppress_health_check=[HealthCheck.too_slow]
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


def _host(t: Any) -> np.ndarray:
    assert t.device == "cuda", "results of a CUDA function live on the GPU"
    return t.cpu().numpy()


def _close(got: Any, expected: Any, dtype: Any) -> None:
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    if got.dtype.kind == "f":
        tol = 10 * TOL[dtype]  # float32 sums accumulate in float64 on the GPU
        np.testing.assert_allclose(got, expected, rtol=tol, atol=tol)
    else:
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@FEW
@given(data=st.data())
def test_every_op_on_cuda_equals_eager_cpu(name: str, dtype: Any, data: Any) -> None:
    op = OPS[name]
    case = CASES[name]
    arrays, params = case.draw(data.draw)
    inputs = _inputs(arrays, dtype)
    tensors = [x for x in inputs if isinstance(x, tg.Tensor)]

    def f(*ts):
        it = iter(ts)
        return op(*[next(it) if isinstance(x, tg.Tensor) else x for x in inputs], **params)

    _close(_host(tg.jit(f, device="cuda")(*tensors)), f(*tensors).numpy(), dtype)
    diff = differentiable_positions(op, case, inputs)
    if not diff:
        return
    weights = np.random.default_rng(1).standard_normal(f(*tensors).shape)

    def loss(*ts):
        out = f(*ts)
        return (out * tg.tensor(weights, dtype=out.dtype)).sum()

    grad = tg.grad(loss, argnums=tuple(diff))
    for g, e in zip(tg.jit(grad, device="cuda")(*tensors), grad(*tensors)):
        _close(_host(g), e.numpy(), dtype)


from trace.test_random_programs import programs, run_program  # noqa: E402


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@settings(
    max_examples=max(EXAMPLES // 2, 4), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(program=programs(), data=st.data())
def test_random_programs_on_cuda_equal_interpreter(dtype: Any, program: tuple, data: Any) -> None:
    (sx, sy), steps = program
    x = data.draw(hnp.arrays(dtype, sx, elements=st.floats(-1.5, 1.5, width=32)))
    y = data.draw(hnp.arrays(dtype, sy, elements=st.floats(-1.5, 1.5, width=32)))
    f = tg.value_and_grad(lambda a, b: run_program(steps, a, b), argnums=(0, 1))
    value, (gx, gy) = tg.jit(f, device="cuda")(tg.tensor(x), tg.tensor(y))
    tape = optimize(tg.make_tape(f)(tg.tensor(x), tg.tensor(y)))
    (v, tx, ty), _ = interpret(tape, [x, y], [])
    tol = 10 * TOL[dtype]
    np.testing.assert_allclose(_host(value), v, rtol=tol, atol=tol)
    np.testing.assert_allclose(_host(gx), tx, rtol=tol, atol=tol)
    np.testing.assert_allclose(_host(gy), ty, rtol=tol, atol=tol)


def test_a_prologue_value_read_by_the_epilogue_is_stored():
    # found by the random programs: a 0-d value computed before a loop and read after it (in
    # the `_finish` kernel) must be stored by the main kernel
    steps = [
        ("unary", "neg", 0),
        ("reduce", "amax", 2, 0, False),
        ("binary", "safe_div", 3, 2),
        ("unary", "neg", 4),
        ("binary", "maximum", 4, 4),
    ]
    x, y = np.array([1.09354436]), np.array([[-0.19338143]])
    f = tg.value_and_grad(lambda a, b: run_program(steps, a, b), argnums=(0, 1))
    got = tg.jit(f, device="cuda")(tg.tensor(x), tg.tensor(y))
    want = f(tg.tensor(x), tg.tensor(y))
    np.testing.assert_allclose(_host(got[0]), want[0].numpy(), rtol=1e-12)
    for g, w in zip(got[1], want[1]):
        np.testing.assert_allclose(_host(g), w.numpy(), rtol=1e-12, atol=1e-15)


def test_ieee_results_not_exceptions():
    # NaN and inf as on a GPU (the simulator's math would raise and hang the block)
    x = tg.tensor([[-1.0, 2.0], [3.0, -4.0]])
    np.testing.assert_array_equal(
        _host(tg.jit(lambda t: t.log().sum(1), device="cuda")(x)), [np.nan, np.nan]
    )
    assert _host(tg.jit(lambda t: (t * 1000).exp().logsumexp(0), device="cuda")(x)).tolist() == [
        np.inf,
        np.inf,
    ]
