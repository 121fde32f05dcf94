"""`uniform`: counter-based random numbers, the one source of tracegrad's random ops.

A draw is a pure function of a generator state `(seed, offset)` -- a captured int64 tensor of
two elements -- and the element's position: element i of a draw is SplitMix64's output number
`offset + i` of the stream seeded by `seed` (its finalizer applied to seed + (offset + i) *
golden ratio), its top 24 (float32) or 53 (float64) bits as a fraction in [0, 1). The random
functions (`tg.rand`, `randn`, `randint`, dropout) call it on the global state and then add the
count drawn to the state's offset in place. Eagerly that is ordinary tensor code; inside
`tg.jit` the state is captured state, read at every call and written back after it, so a
compiled step draws fresh numbers at every call without a retrace, the same numbers as the eager
code given the same `tg.manual_seed`. No gradient (the state is integer). Compiled CPU code runs
`ops/kernels.py`'s `uniform_f32`/`uniform_f64` (the same bits, tested; 4 ns per number against
the numpy forward's 12); the CUDA target runs the numpy forward as a host step.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .core import Aval, Call, defop, shape_error

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def splitmix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64's output function on uint64 values (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def _uniform_forward(state: np.ndarray, *, shape: tuple, dtype: Any) -> np.ndarray:
    seed, offset = np.asarray(state, dtype=np.int64).view(np.uint64)
    n = int(np.prod(shape, dtype=np.int64))
    with np.errstate(over="ignore"):
        counter = offset + np.arange(n, dtype=np.uint64)
        bits = splitmix64(seed + (counter + np.uint64(1)) * _GOLDEN)
    dtype = np.dtype(dtype)
    if dtype == np.float32:
        u = (bits >> np.uint64(40)).astype(np.float32) * np.float32(2.0**-24)
    else:
        u = (bits >> np.uint64(11)).astype(np.float64) * 2.0**-53
    return u.astype(dtype, copy=False).reshape(shape)


def _uniform_abstract(state: Any, *, shape: tuple, dtype: Any) -> Aval:
    if tuple(state.shape) != (2,) or state.dtype != np.int64:
        raise shape_error(
            "uniform",
            f"the generator state must be an int64 tensor of 2 elements (seed, offset), got "
            f"{state.dtype}",
            state.shape,
        )
    if np.dtype(dtype).kind != "f":
        raise TypeError(f"uniform: dtype must be floating, got {np.dtype(dtype)}")
    return Aval(tuple(shape), np.dtype(dtype))


uniform = defop(
    "uniform",
    forward=_uniform_forward,
    abstract=_uniform_abstract,
    vjp=(None,),
    kind="creation",
    call=Call(
        applies=lambda e: e.out.ndim > 0,
        source=lambda e, ins, out, dims: [
            f"{out} = uniform_{'f32' if e.out.dtype == np.float32 else 'f64'}("
            f"{ins[0]}, {' * '.join(dims)}).reshape(({', '.join(dims)},))"
        ],
    ),
    new_array=True,
)

__all__ = ["uniform", "splitmix64"]
