"""`tg.nn.utils`: gradient clipping and parameter/vector conversions, as `torch.nn.utils`.

The clipping functions are tensor ops with no Python branch on values (the clip coefficient
is clamped, not tested), so they compile inside a jitted training step; only
`error_if_nonfinite=True` needs the norm's value and so runs eagerly only."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from .. import creation, ops
from .. import functions as F
from ..autograd.grad_mode import no_grad
from ..tensor import Tensor, eager_forward, tracing


def _params(parameters: Any) -> list[Tensor]:
    return [parameters] if isinstance(parameters, Tensor) else list(parameters)


def clip_grad_norm_(
    parameters: Any,
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
    foreach: Any = None,
) -> Tensor:
    """Scale the `.grad`s in place so that their joint `norm_type`-norm is at most `max_norm`
    (by max_norm / (norm + 1e-6) when larger); returns the norm before clipping."""
    grads = [p.grad for p in _params(parameters) if p.grad is not None]
    if not grads:
        return creation.tensor(0.0)
    norm_type = float(norm_type)
    if norm_type in (2.0, math.inf) and _plain_arrays(grads):
        return _clip_arrays(grads, max_norm, norm_type, error_if_nonfinite)
    with no_grad():
        norms = F.stack([F.norm(g, norm_type) for g in grads])
        total = F.amax(norms, ()) if norm_type == math.inf else F.norm(norms, norm_type)
        _check_finite(error_if_nonfinite, total.item, norm_type)
        coef = F.clamp(max_norm / (total + 1e-6), max=1.0)
        for g in grads:
            g.mul_(coef.astype(g.dtype))
    return total


def _check_finite(error_if_nonfinite: bool, value: Any, norm_type: float) -> None:
    if error_if_nonfinite and not math.isfinite(value()):
        raise RuntimeError(
            f"The total norm of order {norm_type} for gradients from `parameters` is "
            "non-finite, so it cannot be clipped. To disable this error and scale the "
            "gradients by the non-finite norm anyway, set `error_if_nonfinite=False`"
        )


def _plain_arrays(grads: list) -> bool:
    """Eager CPU gradients of one floating dtype, writeable, not being traced."""
    if tracing.tracer is not None:
        return False
    dtype = grads[0]._data.dtype if type(grads[0]._data) is np.ndarray else None
    return (
        dtype is not None
        and dtype.kind == "f"
        and all(
            type(g._data) is np.ndarray and g._data.dtype == dtype and g._data.flags.writeable
            for g in grads
        )
    )


def _run(op: Any, *inputs: Any, **params: Any) -> np.ndarray:
    return eager_forward(op, list(inputs), params)


def _reduce_array(x: np.ndarray, norm_type: float) -> np.ndarray:
    """The reduction of `F.norm(x, norm_type)` (2 or inf) as the same op forwards on the
    array: the norm itself for inf, the sum of squares for 2 (`_root` finishes it)."""
    dims = tuple(range(x.ndim))
    if norm_type == math.inf:
        return _run(ops.amax, _run(ops.abs, x), dims=dims, keepdim=False)
    return _run(ops.sum, _run(ops.mul, x, x), dims=dims, keepdim=False)


def _root(s: np.ndarray, norm_type: float) -> np.ndarray:
    """The rest of `F.norm` after `_reduce_array`: elementwise, so one call on the stacked
    sums gives each norm's bits (four array ops in all, not four scalar ops per parameter)."""
    if norm_type == math.inf:
        return s
    nonzero = _run(ops.ne, s, 0)
    return _run(ops.where, nonzero, _run(ops.pow, _run(ops.where, nonzero, s, 1), 0.5), 0)


def _norm_array(x: np.ndarray, norm_type: float) -> np.ndarray:
    """`F.norm(x, norm_type)` (2 or inf) as the same op forwards on the array."""
    return _root(_reduce_array(x, norm_type), norm_type)


def _clip_arrays(grads: list, max_norm: float, norm_type: float, error: bool) -> Tensor:
    """`clip_grad_norm_`'s tensor form on the arrays: the same op forwards in the same order,
    so the same bits (tests/nn), without about six tensor ops per parameter (a GPT's 29
    parameters: 3.5 ms of its eager step against PyTorch's 0.9 ms)."""
    with np.errstate(all="ignore"):  # as the ops run
        norms = _root(np.stack([_reduce_array(g._data, norm_type) for g in grads]), norm_type)
        total = _norm_array(norms, norm_type)
        _check_finite(error, total.item, norm_type)
        coef = _run(
            ops.clamp, _run(ops.div, max_norm, _run(ops.add, total, 1e-6)), min=None, max=1.0
        )
        for g in grads:
            c = coef if coef.dtype == g.dtype else _run(ops.astype, coef, dtype=g.dtype)
            g.mul_(Tensor._wrap(c))  # (not recorded: the in-place fast path, as the tensor form)
    return Tensor._wrap(total)


def clip_grad_value_(parameters: Any, clip_value: float, foreach: Any = None) -> None:
    """Clamp every `.grad` in place to [-clip_value, clip_value]."""
    with no_grad():
        for p in _params(parameters):
            if p.grad is not None:
                p.grad.clamp_(-clip_value, clip_value)


def parameters_to_vector(parameters: Iterable[Tensor]) -> Tensor:
    """The parameters flattened and concatenated."""
    return F.cat([F.reshape(p, -1) for p in parameters])


def vector_to_parameters(vec: Tensor, parameters: Iterable[Tensor]) -> None:
    """Copy consecutive slices of `vec` into the parameters (in place)."""
    if not isinstance(vec, Tensor):
        raise TypeError(f"expected a Tensor, but got: {type(vec).__name__}")
    offset = 0
    with no_grad():
        for p in parameters:
            n = p.numel()
            p.copy_(F.reshape(vec[offset : offset + n], *p.shape))
            offset += n


__all__ = ["clip_grad_norm_", "clip_grad_value_", "parameters_to_vector", "vector_to_parameters"]
