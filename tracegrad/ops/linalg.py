"""matmul, with numpy/PyTorch semantics: 1-D operands, batch dims that broadcast.

On the CPU it is a library call (BLAS, called by numpy between compiled segments); fusion puts
elementwise prologues and epilogues in the neighbouring loops.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .core import Aval, Call, broadcast_shapes, defop, shape_error, unbroadcast
from .elementwise import mul
from .shape import permute, reshape


def _matmul_dtype(x: Any, y: Any) -> np.dtype:
    # PyTorch refuses mixed dtypes here rather than promoting: a silent float64 copy of a
    # float32 weight matrix is a performance bug that is hard to find.
    if x.dtype != y.dtype:
        raise TypeError(
            f"matmul: both arguments must have the same dtype, got {x.dtype} and {y.dtype} "
            f"(shapes {tuple(x.shape)}, {tuple(y.shape)}). Convert one: .float() or .double()"
        )
    return x.dtype


def _matmul_abstract(x: Any, y: Any) -> Aval:
    xs, ys = tuple(x.shape), tuple(y.shape)
    if not xs or not ys:
        raise shape_error(
            "matmul", "both arguments need at least 1 dim", xs, ys, fix="Use mul for scalars"
        )
    _matmul_dtype(x, y)
    k1 = xs[-1]
    k2 = ys[0] if len(ys) == 1 else ys[-2]
    if k1 != k2:
        raise shape_error(
            "matmul",
            f"inner dims do not match: {k1} (last dim of the first) vs {k2} "
            f"({'the' if len(ys) == 1 else 'second-to-last dim of the'} second)",
            xs,
            ys,
            fix="Transpose one operand (x.T or x.transpose(-1, -2)) so they agree",
        )
    batch = broadcast_shapes("matmul", xs[:-2], ys[:-2])
    shape = batch + (xs[-2:-1] if len(xs) > 1 else ()) + (ys[-1:] if len(ys) > 1 else ())
    return Aval(shape, x.dtype)


def _mT(a: Any) -> Any:
    dims = tuple(range(a.ndim - 2)) + (a.ndim - 1, a.ndim - 2)
    return permute(a, dims=dims)


def _unsqueeze(a: Any, dim: int) -> Any:
    shape = list(a.shape)
    shape.insert(dim if dim >= 0 else len(shape) + dim + 1, 1)
    return reshape(a, shape=tuple(shape))


def _squeeze_last(a: Any) -> Any:
    return reshape(a, shape=tuple(a.shape[:-1]))


def _matmul_vjp_x(g: Any, out: Any, x: Any, y: Any) -> Any:
    if x.ndim == 1 and y.ndim == 1:  # dot product: g is a scalar
        return mul(g, y)
    if y.ndim == 1:  # out (..., n) = x (..., n, k) @ y (k,)
        gx = mul(_unsqueeze(g, -1), y)
    elif x.ndim == 1:  # out (..., m) = x (k,) @ y (..., k, m)
        gx = _squeeze_last(matmul(y, _unsqueeze(g, -1)))
    else:
        gx = matmul(g, _mT(y))
    return unbroadcast(gx, tuple(x.shape))


def _matmul_vjp_y(g: Any, out: Any, x: Any, y: Any) -> Any:
    if x.ndim == 1 and y.ndim == 1:
        return mul(g, x)
    if x.ndim == 1:  # gy (..., k, m) = x (k, 1) * g (..., 1, m)
        gy = mul(reshape(x, shape=(x.shape[0], 1)), _unsqueeze(g, -2))
    elif y.ndim == 1:  # gy (k,) = sum over batch of x^T (..., k, n) @ g (..., n, 1)
        gy = _squeeze_last(matmul(_mT(x), _unsqueeze(g, -1)))
    else:
        gy = matmul(_mT(x), g)
    return unbroadcast(gy, tuple(y.shape))


def _blas_call(x: Any, y: Any) -> bool:
    return x.dtype.kind == "f" and x.dtype == y.dtype and min(x.size, y.size) > 0


def _matmul_into(out: np.ndarray, x: np.ndarray, y: np.ndarray) -> None:
    np.matmul(x, y, out=out)


matmul = defop(
    "matmul",
    forward=np.matmul,
    forward_into=_matmul_into,
    abstract=_matmul_abstract,
    out_dtype=_matmul_dtype,
    vjp=(_matmul_vjp_x, _matmul_vjp_y),
    saves=(0, 1),
    grad_name=lambda args, params: (
        "DotBackward0"
        if args[0].ndim == 1 and args[1].ndim == 1
        else ("MmBackward0" if args[0].ndim == 2 and args[1].ndim == 2 else "MatmulBackward0")
    ),
    kind="matmul",
    # numpy's BLAS between compiled segments (runtime/executor.py says why), into a pooled array
    call=Call(applies=lambda e: _blas_call(*e.inputs)),
    new_array=True,
    uses_blas=True,
)
