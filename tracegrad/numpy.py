"""A numpy-style namespace over tracegrad's ops: `axis=`, `keepdims=`, numpy's names.

    >>> import tracegrad as tg
    >>> import tracegrad.numpy as tnp
    >>> tg.grad(lambda x: tnp.sum(tnp.sin(x) * x, axis=0))(tg.tensor([0.0, 1.0]))
    tensor([0.0000, 1.3818])

Code written for numpy (or HIPS autograd, or jax.numpy) runs here unchanged and
differentiates. Results are Tensors. Where numpy and PyTorch differ, this namespace follows
numpy: `var`/`std` default to ddof=0, `transpose` reverses all axes, `dot` is numpy's `dot`.
One deliberate difference: Python floats become float32 (as in jax.numpy and PyTorch), arrays
keep their dtype.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

import numpy as _np

from . import creation as _c
from . import functions as _F
from . import ops as _ops
from .ops.core import normalize_dims as _dims
from .tensor import Tensor, _as_tensor

# dtypes, as numpy spells them
float32 = _np.float32
float64 = _np.float64
int32 = _np.int32
int64 = _np.int64
bool_ = _np.bool_
pi = _np.pi
e = _np.e
inf = _np.inf
nan = _np.nan
newaxis = None
ndarray = Tensor

# elementwise
exp = _F.exp
log = _F.log
log1p = _F.log1p
expm1 = _F.expm1
sqrt = _F.sqrt
sin = _F.sin
cos = _F.cos
tan = _F.tan
tanh = _F.tanh
abs = absolute = _F.abs  # noqa: A001
sign = _F.sign
negative = _F.neg
square = _F.square
reciprocal = _F.reciprocal
add = _F.add
subtract = _F.sub
multiply = _F.mul
divide = true_divide = _F.div
power = _F.pow
maximum = _F.maximum
minimum = _F.minimum
equal = _F.eq
not_equal = _F.ne
less = _F.lt
less_equal = _F.le
greater = _F.gt
greater_equal = _F.ge
logical_and = _F.logical_and
logical_or = _F.logical_or
logical_not = _F.logical_not
isnan = _F.isnan
isfinite = _F.isfinite
matmul = _F.matmul


def where(condition: Any, x: Any, y: Any) -> Tensor:
    return _F.where(condition, x, y)


def clip(a: Any, a_min: Any, a_max: Any) -> Tensor:
    return _F.clamp(a, a_min, a_max)


# reductions: axis= and keepdims=


def _reduce(op: Any, a: Any, axis: Any, keepdims: bool) -> Tensor:
    x = _as_tensor(a)
    return op(x, dims=_dims(op.name, axis, x.ndim), keepdim=keepdims)


def sum(a: Any, axis: Any = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    return _reduce(_ops.sum, a, axis, keepdims)


def mean(a: Any, axis: Any = None, keepdims: bool = False) -> Tensor:
    x = _as_tensor(a)
    if x.dtype.kind != "f":
        x = x.astype(_np.float32)
    return _reduce(_ops.mean, x, axis, keepdims)


def prod(a: Any, axis: Any = None, keepdims: bool = False) -> Tensor:
    return _reduce(_ops.prod, a, axis, keepdims)


def max(a: Any, axis: Any = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    return _reduce(_ops.amax, a, axis, keepdims)


def min(a: Any, axis: Any = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    return _reduce(_ops.amin, a, axis, keepdims)


amax = max
amin = min


def var(a: Any, axis: Any = None, ddof: int = 0, keepdims: bool = False) -> Tensor:
    return _F.var(a, axis, keepdim=keepdims, correction=ddof)


def std(a: Any, axis: Any = None, ddof: int = 0, keepdims: bool = False) -> Tensor:
    return _F.std(a, axis, keepdim=keepdims, correction=ddof)


def argmax(a: Any, axis: Any = None, keepdims: bool = False) -> Tensor:
    return _F.argmax(a, axis, keepdims)


def argmin(a: Any, axis: Any = None, keepdims: bool = False) -> Tensor:
    return _F.argmin(a, axis, keepdims)


def all(a: Any, axis: Any = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    return _F.all(a, axis, keepdims)


def any(a: Any, axis: Any = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    return _F.any(a, axis, keepdims)


def logaddexp(x1: Any, x2: Any) -> Tensor:
    m = _F.maximum(x1, x2)
    return _F.add(m, _F.log1p(_F.exp(_F.neg(_F.abs(_F.sub(x1, x2))))))


# shapes


def reshape(a: Any, newshape: Any) -> Tensor:
    shape = (newshape,) if isinstance(newshape, (int, _np.integer)) else tuple(newshape)
    return _F.reshape(a, shape)


def ravel(a: Any) -> Tensor:
    return _F.reshape(a, (-1,))


def transpose(a: Any, axes: Sequence[int] | None = None) -> Tensor:
    x = _as_tensor(a)
    if axes is None:
        axes = tuple(reversed(range(x.ndim)))
    return _F.permute(x, *axes)


def swapaxes(a: Any, axis1: int, axis2: int) -> Tensor:
    return _F.transpose(a, axis1, axis2)


def expand_dims(a: Any, axis: int) -> Tensor:
    return _F.unsqueeze(a, axis)


def squeeze(a: Any, axis: Any = None) -> Tensor:
    return _F.squeeze(a, axis)


def broadcast_to(a: Any, shape: Any) -> Tensor:
    return _F.broadcast_to(a, shape)


def concatenate(arrays: Sequence[Any], axis: int = 0) -> Tensor:
    return _F.cat(arrays, axis)


def stack(arrays: Sequence[Any], axis: int = 0) -> Tensor:
    return _F.stack(arrays, axis)


def split(a: Any, indices_or_sections: Any, axis: int = 0) -> list:
    """numpy's split: an int is a number of equal sections; a list holds split points."""
    x = _as_tensor(a)
    n = x.shape[axis]
    if isinstance(indices_or_sections, (int, _np.integer)):
        k = int(indices_or_sections)
        if n % k:
            raise ValueError(f"split: array split does not result in an equal division ({n}/{k})")
        return list(_F.split(x, n // k, axis))
    points = [0, *indices_or_sections, n]
    return list(_F.split(x, [b - a for a, b in builtins.zip(points, points[1:])], axis))


def dot(a: Any, b: Any) -> Tensor:
    """numpy's dot for up to 2-D operands (scalars multiply); use matmul for batches."""
    x, y = _as_tensor(a), _as_tensor(b)
    if x.ndim == 0 or y.ndim == 0:
        return _F.mul(x, y)
    if x.ndim > 2 or y.ndim > 2:
        raise ValueError(
            f"dot: operands of {x.ndim} and {y.ndim} dims; tracegrad.numpy.dot takes up to 2-D "
            "operands, use matmul for stacks of matrices"
        )
    return _F.matmul(x, y)


def outer(a: Any, b: Any) -> Tensor:
    return _F.mul(_F.reshape(a, (-1, 1)), _F.reshape(b, (1, -1)))


def inner(a: Any, b: Any) -> Tensor:
    return _F.sum(_F.mul(a, b), -1)


# creation


def array(obj: Any, dtype: Any = None) -> Tensor:
    return _c.tensor(obj, dtype=dtype)


def asarray(obj: Any, dtype: Any = None) -> Tensor:
    return _c.as_tensor(obj, dtype=dtype)


def zeros(shape: Any, dtype: Any = None) -> Tensor:
    return _c.zeros(shape, dtype=dtype)


def ones(shape: Any, dtype: Any = None) -> Tensor:
    return _c.ones(shape, dtype=dtype)


def full(shape: Any, fill_value: Any, dtype: Any = None) -> Tensor:
    return _c.full(shape, fill_value, dtype=dtype)


def zeros_like(a: Any, dtype: Any = None) -> Tensor:
    return _c.zeros_like(_as_tensor(a), dtype=dtype)


def ones_like(a: Any, dtype: Any = None) -> Tensor:
    return _c.ones_like(_as_tensor(a), dtype=dtype)


def arange(start: Any, stop: Any = None, step: Any = 1, dtype: Any = None) -> Tensor:
    return _c.arange(start, stop, step, dtype=dtype)


def linspace(start: Any, stop: Any, num: int = 50, dtype: Any = None) -> Tensor:
    return _c.linspace(start, stop, num, dtype=dtype)


def eye(n: int, m: int | None = None, dtype: Any = None) -> Tensor:
    return _c.eye(n, m, dtype=dtype)


def shape(a: Any) -> tuple:
    return tuple(_as_tensor(a).shape)


def ndim(a: Any) -> int:
    return _as_tensor(a).ndim


def size(a: Any) -> int:
    return _as_tensor(a).numel()
