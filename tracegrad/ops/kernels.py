"""Numba kernels shared by op forwards (eager mode) and generated code (which imports them
through codegen/numba_helpers.py: bump its HELPERS_VERSION when one changes).

Indexing by an integer tensor along dim 0 (`x[i]`, an embedding's lookup, and its gradient):
`take_rows` and `add_rows` check every index (numpy's bounds and negative wrap-around: compiled
code must not read or write outside the array); `add_rows` adds in index order, as `np.add.at`
does, 10-50x faster. `check_index` is `ops.index_check` compiled.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# --------------------------------------------------------------------------------------------
# rows picked by an integer array


@njit(cache=True)
def _row(i, n, what):  # noqa: ANN001, ANN202
    if i < -n or i >= n:
        raise IndexError(
            what + ": index " + str(i) + " is out of bounds for dim 0 with size " + str(n)
        )
    return i + n if i < 0 else i


@njit(cache=True)
def _inner(shape):  # noqa: ANN001, ANN202
    inner = 1
    for k in range(1, len(shape)):
        inner *= shape[k]
    return inner


@njit(cache=True)
def take_rows(x, index):  # noqa: ANN001, ANN201
    """x[index] for an integer array `index` (any shape): result (index.size, row size)."""
    n, inner = x.shape[0], _inner(x.shape)
    rows = np.ascontiguousarray(x).reshape((n, inner))
    flat = np.ascontiguousarray(index).ravel()
    out = np.empty((flat.size, inner), dtype=x.dtype)
    for p in range(flat.size):
        out[p, :] = rows[_row(flat[p], n, "getitem"), :]
    return out


@njit(cache=True)
def add_rows(out, index, g):  # noqa: ANN001, ANN201
    """out[index] += g, repeated indices adding up in index order (np.add.at); `out` is
    C-contiguous, g has shape index.shape + out.shape[1:]."""
    n, inner = out.shape[0], _inner(out.shape)
    rows = out.reshape((n, inner))
    flat = np.ascontiguousarray(index).ravel()
    gs = np.ascontiguousarray(g).reshape((flat.size, inner))
    for p in range(flat.size):
        r = _row(flat[p], n, "getitem backward")
        for j in range(inner):
            rows[r, j] += gs[p, j]
    return out


@njit(cache=True)
def check_index(x, size, what):  # noqa: ANN001, ANN201
    """x, after checking 0 <= x < size everywhere (`ops.index_check`)."""
    for v in np.ascontiguousarray(x).ravel():
        if v < 0 or v >= size:
            shape = ""
            for d in x.shape:
                shape += str(d) + ", "
            raise IndexError(
                what
                + " "
                + str(v)
                + " is out of bounds for size "
                + str(size)
                + " (index shape ("
                + shape[: len(shape) - 2 if x.ndim > 1 else len(shape) - 1]
                + "))"
            )
    return x
