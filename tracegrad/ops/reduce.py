"""Reductions: sum, mean, amax, amin, prod, argmax, argmin.

Every reduction takes `dims` (a sorted tuple of non-negative axes; the Tensor layer normalizes
`dim=None|int|tuple`) and `keepdim`. VJPs put the reduced dims back with `expand_back`.
`mean` is a primitive rather than `sum / N` so that its backward node is `MeanBackward0`, as
PyTorch users read it, and so that fusion sees one reduction with a known divisor.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .core import DEFAULT_INT, Aval, Reduction, defop, shape_error
from .elementwise import div, eq, exp, logical_not, mul, quiet, sub, where
from .kernels import exp_array
from .shape import expand, reshape


def reduced_shape(shape: tuple, dims: tuple, keepdim: bool) -> tuple:
    if keepdim:
        return tuple(1 if i in dims else s for i, s in enumerate(shape))
    return tuple(s for i, s in enumerate(shape) if i not in dims)


def expand_back(g: Any, shape: tuple, dims: tuple, keepdim: bool) -> Any:
    """Broadcast a reduced cotangent back over the dims that were reduced."""
    # (a full reduction's scalar broadcasts as it is: no reshape needed)
    if not keepdim and dims and len(dims) < len(shape):
        g = reshape(g, shape=reduced_shape(shape, dims, True))
    return expand(g, shape=tuple(shape))


def _count(shape: tuple, dims: tuple) -> int:
    n = 1
    for d in dims:
        n *= shape[d]
    return n


def _reduce_abstract(name: str, dtype_rule: Any, nonempty: bool = False) -> Any:
    def abstract(x: Any, *, dims: tuple, keepdim: bool) -> Aval:
        if nonempty and any(x.shape[d] == 0 for d in dims):
            raise shape_error(
                name,
                f"cannot reduce over a zero-size dim (dims {dims}) : the result has no identity",
                x.shape,
                fix="Reduce over non-empty dims, or handle the empty case before the call",
            )
        return Aval(reduced_shape(x.shape, dims, keepdim), dtype_rule(x.dtype))

    return abstract


def _int_to_int64(dtype: np.dtype) -> np.dtype:
    return DEFAULT_INT if dtype.kind in "biu" else dtype


def _float_only(name: str) -> Any:
    def rule(dtype: np.dtype) -> np.dtype:
        if dtype.kind != "f":
            raise TypeError(
                f"{name}(): input dtype must be floating point, got {dtype}. "
                "Convert first: x.float()"
            )
        return dtype

    return rule


# --------------------------------------------------------------------------------------------
# sum: the cotangent of every summed element is g

sum = defop(  # noqa: A001 - the op's name
    "sum",
    forward=lambda x, *, dims, keepdim: np.add.reduce(
        x, axis=dims, keepdims=keepdim, dtype=_int_to_int64(x.dtype)
    ),
    abstract=_reduce_abstract("sum", _int_to_int64),
    out_dtype=lambda x, *, dims, keepdim: _int_to_int64(x.dtype),
    vjp=(lambda g, out, x, *, dims, keepdim: expand_back(g, x.shape, dims, keepdim),),
    kind="reduce",
    reduction=Reduction(atomic=True),
)


# --------------------------------------------------------------------------------------------
# mean: sum / N, N the number of reduced elements (NaN for an empty reduction, as PyTorch)


@quiet
def _mean_forward(x: np.ndarray, *, dims: tuple, keepdim: bool) -> np.ndarray:
    # sum / N, as np.mean computes it (the empty mean is NaN, quietly)
    total = np.add.reduce(x, axis=dims, keepdims=keepdim)
    return np.true_divide(total, _count(x.shape, dims), dtype=x.dtype)


_mean_dtype = _float_only("mean")


mean = defop(
    "mean",
    forward=_mean_forward,
    abstract=_reduce_abstract("mean", _float_only("mean")),
    out_dtype=lambda x, *, dims, keepdim: _mean_dtype(x.dtype),
    # divide the reduced cotangent first, then broadcast it: N times fewer divisions
    vjp=(
        lambda g, out, x, *, dims, keepdim: expand_back(
            div(g, float(_count(x.shape, dims))), x.shape, dims, keepdim
        ),
    ),
    kind="reduce",
    reduction=Reduction(finish="{acc} / ({count})", atomic=True),
)


# --------------------------------------------------------------------------------------------
# amax / amin: the cotangent is shared evenly among the elements that attain the extreme (as
# PyTorch's amax and full max()); a unique maximum gets all of it.


def _extreme_vjp(g: Any, out: Any, x: Any, *, dims: tuple, keepdim: bool) -> Any:
    hit = eq(x, expand_back(out, x.shape, dims, keepdim))
    count = sum(hit, dims=dims, keepdim=True)
    share = div(expand_back(g, x.shape, dims, keepdim), expand(count, shape=x.shape))
    return where(hit, share, 0.0)


amax = defop(
    "amax",
    forward=lambda x, *, dims, keepdim: np.asarray(np.max(x, axis=dims, keepdims=keepdim)),
    abstract=_reduce_abstract("amax", lambda d: d, nonempty=True),
    vjp=(_extreme_vjp,),
    saves=(0,),
    saves_out=True,
    kind="reduce",
    reduction=Reduction(
        ("-np.inf", "-np.inf"),
        "{acc} = max({acc}, {x})",
        nan_ignored=True,
        fold="{acc} = {x} if ({x} > {acc} or {x} != {x}) else {acc}",
        floats_only=True,
    ),
)

amin = defop(
    "amin",
    forward=lambda x, *, dims, keepdim: np.asarray(np.min(x, axis=dims, keepdims=keepdim)),
    abstract=_reduce_abstract("amin", lambda d: d, nonempty=True),
    vjp=(_extreme_vjp,),
    saves=(0,),
    saves_out=True,
    kind="reduce",
    reduction=Reduction(
        ("np.inf", "np.inf"),
        "{acc} = min({acc}, {x})",
        nan_ignored=True,
        fold="{acc} = {x} if ({x} < {acc} or {x} != {x}) else {acc}",
        floats_only=True,
    ),
)


# --------------------------------------------------------------------------------------------
# prod: d(prod)/dx_i is the product of the other elements. out / x_i is that product only where
# x_i != 0. For a zero x_i: with one zero in the slice it is the product of the non-zeros; with
# two it is that product times the other zero (written as (sum of the zeros) - x_i, whose value
# is 0 but whose derivative is right, so second derivatives are exact too); with three or more
# it is 0 to second order.


def _prod_vjp(g: Any, out: Any, x: Any, *, dims: tuple, keepdim: bool) -> Any:
    def back(t: Any) -> Any:
        return expand_back(t, x.shape, dims, True)

    is_zero = eq(x, 0)
    zeros_in_slice = back(sum(is_zero, dims=dims, keepdim=True))
    x_nonzero = where(is_zero, 1.0, x)
    prod_nonzero = back(prod(x_nonzero, dims=dims, keepdim=True))
    other_zero = sub(back(sum(where(is_zero, x, 0.0), dims=dims, keepdim=True)), x)
    at_zero = where(
        eq(zeros_in_slice, 1),
        prod_nonzero,
        where(eq(zeros_in_slice, 2), mul(prod_nonzero, other_zero), 0.0),
    )
    out_b = expand_back(out, x.shape, dims, keepdim)
    others = where(logical_not(is_zero), div(out_b, x_nonzero), at_zero)
    return mul(expand_back(g, x.shape, dims, keepdim), others)


prod = defop(
    "prod",
    forward=lambda x, *, dims, keepdim: np.asarray(
        np.prod(x, axis=dims, keepdims=keepdim, dtype=_int_to_int64(x.dtype))
    ),
    abstract=_reduce_abstract("prod", _int_to_int64),
    out_dtype=lambda x, *, dims, keepdim: _int_to_int64(x.dtype),
    vjp=(_prod_vjp,),
    saves=(0,),
    saves_out=True,
    kind="reduce",
    reduction=Reduction(("1", "1.0"), "{acc} *= {x}"),
)


# --------------------------------------------------------------------------------------------
# argmax / argmin: int64 indices, no gradient. dim=None flattens, as PyTorch.


def _arg_abstract(name: str) -> Any:
    def abstract(x: Any, *, dim: Any, keepdim: bool) -> Aval:
        if dim is None:
            shape = (1,) * len(x.shape) if keepdim else ()
            if 0 in x.shape:
                raise shape_error(name, "cannot take the index of an empty tensor", x.shape)
        else:
            if x.shape and x.shape[dim] == 0:
                raise shape_error(name, f"cannot reduce over dim {dim} of size 0", x.shape)
            shape = reduced_shape(x.shape, (dim,) if x.shape else (), keepdim)
        return Aval(shape, DEFAULT_INT)

    return abstract


def _arg_forward(fn: Any) -> Any:
    def forward(x: np.ndarray, *, dim: Any, keepdim: bool) -> np.ndarray:
        if dim is None:
            i = np.asarray(fn(x), dtype=np.int64)
            return i.reshape((1,) * x.ndim) if keepdim else i
        if x.ndim == 0:
            return np.zeros((), dtype=np.int64)
        return np.asarray(fn(x, axis=dim, keepdims=keepdim), dtype=np.int64)

    return forward


argmax = defop(
    "argmax",
    forward=_arg_forward(np.argmax),
    abstract=_arg_abstract("argmax"),
    kind="reduce",
)
argmin = defop(
    "argmin",
    forward=_arg_forward(np.argmin),
    abstract=_arg_abstract("argmin"),
    kind="reduce",
)


# --------------------------------------------------------------------------------------------
# logsumexp: log(sum(exp(x))) over dims. A primitive, not a composite of amax/exp/sum/log,
# because one pass can compute it (the running maximum rescales the running sum), where the
# composite reads x twice (max, then sum of exp): softmax and cross-entropy move fewer bytes.
# The VJP is the softmax: g * exp(x - out).


@quiet
def _logsumexp_forward(x: np.ndarray, *, dims: tuple, keepdim: bool) -> np.ndarray:
    m = (
        np.max(x, axis=dims, keepdims=True)
        if x.size
        else np.zeros(reduced_shape(x.shape, dims, True), x.dtype)
    )
    m = np.where(np.isfinite(m), m, 0)
    shifted = np.asarray(x - m)
    e = exp_array(shifted) if shifted.dtype == np.float32 else np.exp(shifted)  # as the exp op
    s = np.sum(e, axis=dims, keepdims=True)
    out = np.log(s) + m
    if not keepdim:
        out = out.reshape(reduced_shape(x.shape, dims, False))
    return np.asarray(out, dtype=x.dtype)


def _logsumexp_vjp(g: Any, out: Any, x: Any, *, dims: tuple, keepdim: bool) -> Any:
    softmax = exp(sub(x, expand_back(out, x.shape, dims, keepdim)))
    return mul(expand_back(g, x.shape, dims, keepdim), softmax)


logsumexp = defop(
    "logsumexp",
    forward=_logsumexp_forward,
    abstract=_reduce_abstract("logsumexp", _float_only("logsumexp")),
    out_dtype=lambda x, *, dims, keepdim: _float_only("logsumexp")(x.dtype),
    vjp=(_logsumexp_vjp,),
    saves=(0,),
    saves_out=True,
    kind="reduce",
    reduction=Reduction(("-np.inf", "-np.inf"), floats_only=True, shifted=True),
)
