"""Checking gradients against finite differences, in float64.

>>> import tracegrad as tg
>>> x = tg.tensor([0.5, -1.0], dtype=tg.float64, requires_grad=True)
>>> tg.gradcheck(lambda x: (x.sin() * x).sum(), (x,))
True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..tensor import Tensor
from . import engine
from .grad_mode import enable_grad, no_grad


class GradcheckError(RuntimeError):
    """A gradient differs from its finite-difference estimate."""


def _inputs(inputs: Any) -> tuple[list, list[int]]:
    if isinstance(inputs, (Tensor, np.ndarray)):
        inputs = (inputs,)
    converted = []
    for x in inputs:
        if isinstance(x, np.ndarray):
            x = Tensor._wrap(x)
        if isinstance(x, Tensor) and x.dtype.kind == "f":
            t = Tensor._wrap(np.array(x._data, dtype=np.float64, copy=True))
            t._requires_grad = x.requires_grad
            converted.append(t)
        else:
            converted.append(x)
    tensors = [i for i, x in enumerate(converted) if isinstance(x, Tensor) and x.dtype.kind == "f"]
    marked = [i for i in tensors if converted[i].requires_grad]
    check = marked or tensors
    for i in check:
        converted[i].requires_grad_(True)
    return converted, check


def _outputs(out: Any) -> list[Tensor]:
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    for o in outs:
        if not isinstance(o, Tensor):
            raise TypeError(f"gradcheck: the function must return Tensors, got {type(o).__name__}")
    return outs


def gradcheck(
    func: Callable,
    inputs: Any,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    raise_exception: bool = True,
) -> bool:
    """Compare the gradients of `func` at `inputs` with central finite differences.

    Floating inputs are copied to float64. The inputs checked are those with
    `requires_grad=True`, or every floating input when none is marked. Every output element's
    gradient is compared: |analytic - numeric| <= atol + rtol * |numeric|. Returns True, or
    raises `GradcheckError` naming the input, the element, the output and both values.
    """
    args, check = _inputs(inputs)
    with enable_grad():
        outs = _outputs(func(*args))
    float_outs = [(k, o) for k, o in enumerate(outs) if o.dtype.kind == "f"]

    # analytic Jacobian, one reverse sweep per output element
    analytic = {}
    for k, o in float_outs:
        flat_n = o.numel()
        for i in check:
            analytic[(k, i)] = np.zeros((flat_n, args[i].numel()))
        if not o.requires_grad:
            continue
        for e in range(flat_n):
            ct = np.zeros(flat_n, dtype=o.dtype)
            ct[e] = 1
            with enable_grad():
                gs = engine.grad(
                    [o],
                    [args[i] for i in check],
                    [Tensor._wrap(ct.reshape(o.shape))],
                    retain_graph=True,
                    allow_unused=True,
                )
            for i, g in zip(check, gs):
                if g is not None:
                    analytic[(k, i)][e] = g._data.reshape(-1)

    # numeric Jacobian, central differences
    for i in check:
        x = args[i]
        flat = x._data.reshape(-1)  # a view: perturbing it perturbs the input
        if not np.shares_memory(flat, x._data):
            x._data = np.ascontiguousarray(x._data)
            flat = x._data.reshape(-1)
        for j in range(flat.size):
            orig = flat[j]
            flat[j] = orig + eps
            with no_grad():
                plus = [o._data.astype(np.float64) for o in _outputs(func(*args))]
            flat[j] = orig - eps
            with no_grad():
                minus = [o._data.astype(np.float64) for o in _outputs(func(*args))]
            flat[j] = orig
            for k, _ in float_outs:
                numeric = ((plus[k] - minus[k]) / (2 * eps)).reshape(-1)
                got = analytic[(k, i)][:, j]
                bad = np.abs(got - numeric) > atol + rtol * np.abs(numeric)
                bad |= np.isnan(got) != np.isnan(numeric)
                if bad.any():
                    e = int(np.argmax(bad))
                    where = np.unravel_index(j, x.shape) if x.ndim else ()
                    msg = (
                        f"Jacobian mismatch for output {k} element {e} with respect to input {i} "
                        f"(shape {tuple(x.shape)}) at index {tuple(int(w) for w in where)}: "
                        f"analytic {got[e]!r} vs numerical {numeric[e]!r} "
                        f"(eps={eps}, atol={atol}, rtol={rtol})"
                    )
                    if raise_exception:
                        raise GradcheckError(msg)
                    return False
    return True


def gradgradcheck(
    func: Callable,
    inputs: Any,
    grad_outputs: Sequence[Any] | None = None,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    seed: int = 0,
) -> bool:
    """Check second derivatives: gradcheck of (inputs, v) -> vjp(func at inputs)(v), with the
    VJP computed by `create_graph=True` backward. `grad_outputs` defaults to random v."""
    args, check = _inputs(inputs)
    with enable_grad():
        outs = _outputs(func(*args))
    if grad_outputs is None:
        rng = np.random.default_rng(seed)
        grad_outputs = [rng.standard_normal(o.shape) for o in outs]
    gos = [
        Tensor._wrap(np.array(getattr(g, "_data", g), dtype=np.float64, copy=True))
        for g in grad_outputs
    ]
    n = len(args)

    def first_derivative(*xs: Any) -> tuple:
        primal = list(xs[:n])
        vs = xs[n:]
        with enable_grad():
            out = _outputs(func(*primal))
            pairs = [(o, v) for o, v in zip(out, vs) if o.requires_grad]
            if not pairs:
                return tuple(Tensor._wrap(np.zeros(primal[i].shape)) for i in check)
            gs = engine.grad(
                [o for o, _ in pairs],
                [primal[i] for i in check],
                [v for _, v in pairs],
                create_graph=True,
                allow_unused=True,
            )
        return tuple(
            Tensor._wrap(np.zeros(primal[i].shape)) if g is None else g for g, i in zip(gs, check)
        )

    for i, a in enumerate(args):
        if isinstance(a, Tensor):
            a.requires_grad_(i in check)
    for v in gos:
        v.requires_grad_(True)
    return gradcheck(first_derivative, tuple(args) + tuple(gos), eps=eps, atol=atol, rtol=rtol)
