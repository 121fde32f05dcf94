"""One table-driven test over the op table.

Every op in `tracegrad.ops.OPS` has a row here (the coverage test fails otherwise). For each op,
on hypothesis-drawn shapes (broadcasting, size-1 and zero-size dims) and memory layouts
(C-contiguous, Fortran-ordered, strided slices):

* the forward equals an independent numpy reference, in float32 and float64;
* the shape/dtype rule (`abstract`) predicts the forward's shape and dtype;
* the VJP equals finite differences (`tg.gradcheck`, float64) at order 1 and order 2.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from op_cases import CASES, EXAMPLES, SETTINGS

import tracegrad as tg
from tracegrad.ops import OPS, Aval


def test_every_op_has_a_case():
    missing = sorted(set(OPS) - set(CASES))
    extra = sorted(set(CASES) - set(OPS))
    assert not missing, f"ops without a row in tests/op_cases.py: {missing}"
    assert not extra, f"rows for ops that do not exist: {extra}"


def _as_inputs(arrays: tuple, dtype: Any) -> list:
    out = []
    for a in arrays:
        if isinstance(a, np.ndarray):
            if a.dtype.kind == "f":
                a = a.astype(dtype)
            out.append(tg.from_numpy(a))
        else:
            out.append(a)
    return out


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@SETTINGS
@given(data=st.data())
def test_forward_matches_numpy_and_shape_rule(name: str, dtype: Any, data: Any) -> None:
    case = CASES[name]
    op = OPS[name]
    arrays, params = case.draw(data.draw)
    inputs = _as_inputs(arrays, dtype)
    out = op(*inputs, **params)
    ref_args = [a.numpy() if isinstance(a, tg.Tensor) else a for a in inputs]
    expected = np.asarray(case.ref(*ref_args, **params))
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(
        out.numpy().astype(np.float64) if out.dtype.kind == "f" else out.numpy(),
        expected,
        rtol=tol,
        atol=tol,
    )
    assert out.shape == expected.shape
    avals = [Aval(a.shape, a.dtype) if isinstance(a, tg.Tensor) else a for a in inputs]
    assert op.abstract(*avals, **params) == Aval(out.shape, out.dtype)
    if out.dtype.kind == "f" and name not in ("astype", "full", "const", "uniform"):
        # float ops keep the float input's dtype (PyTorch promotion: a number never widens it)
        assert out.dtype == dtype


def _differentiable_inputs(op: Any, arrays: tuple) -> list[int]:
    idx = []
    for i, a in enumerate(arrays):
        rule = op.vjp[0] if op.variadic else (op.vjp[i] if i < len(op.vjp) else None)
        if isinstance(a, np.ndarray) and a.dtype.kind == "f" and rule is not None:
            idx.append(i)
    return idx


@pytest.mark.parametrize("name", sorted(n for n, c in CASES.items() if c.grad))
@SETTINGS
@given(data=st.data())
def test_vjp_matches_finite_differences(name: str, data: Any) -> None:
    case = CASES[name]
    op = OPS[name]
    arrays, params = case.draw(data.draw)
    inputs = _as_inputs(arrays, np.float64)
    wrt = _differentiable_inputs(op, arrays)
    for i in wrt:
        inputs[i].requires_grad_(True)
    assert tg.gradcheck(
        lambda *xs: op(*xs, **params), tuple(inputs), atol=case.atol, rtol=case.rtol
    )


@pytest.mark.parametrize("name", sorted(n for n, c in CASES.items() if c.grad and c.order2))
@settings(
    max_examples=max(EXAMPLES // 2, 1), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(data=st.data())
def test_vjp_of_vjp_matches_finite_differences(name: str, data: Any) -> None:
    case = CASES[name]
    op = OPS[name]
    arrays, params = case.draw(data.draw)
    inputs = _as_inputs(arrays, np.float64)
    for i in _differentiable_inputs(op, arrays):
        inputs[i].requires_grad_(True)
    assert tg.gradgradcheck(lambda *xs: op(*xs, **params), tuple(inputs), atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("name", sorted(n for n, c in CASES.items() if not c.grad))
def test_ops_without_gradient_say_so(name: str) -> None:
    assert not OPS[name].differentiable


def test_vjp_rules_are_written_with_tracegrad_ops():
    # a VJP run under create_graph records nodes: no rule escaped to numpy
    x = tg.tensor([0.5, 1.5], dtype=tg.float64, requires_grad=True)
    for name in ["exp", "log", "sin", "tanh", "sigmoid", "gelu", "sqrt", "silu", "erf"]:
        (g,) = tg.autograd.grad(OPS[name](x).sum(), x, create_graph=True)
        assert g.grad_fn is not None, name
