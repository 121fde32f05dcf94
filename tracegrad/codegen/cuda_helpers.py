"""What generated CUDA modules import (`from tracegrad.codegen.cuda_helpers import ...`): the
launch configuration, result allocation (`empty`, pooled), a zero-fill kernel for
accumulators, and the tiled matmul.

Bump HELPERS_VERSION when something here changes what a kernel computes: it is written into
every generated module, so the module's hash (its cache key) changes with it.

Launch configuration (runtime values, never written into a generated module):

* `THREADS` threads per block: 256 on a GPU (8 warps), 16 under the simulator, where every
  thread is a Python thread. Shared-memory arrays in generated kernels have `TPB = 256`
  elements, the largest block the tree reductions are written for; a block must be a power of
  two for them.
* `grid(n)`: (blocks, threads) for a grid-stride loop over n elements, at most
  `max_blocks()` blocks (32 per multiprocessor: enough resident warps to hide memory latency;
  the loop strides over the rest, so any n runs).
* `reduce_grid(m)`: one block per output element of a reduction, at most `max_blocks()`.
"""

from __future__ import annotations

import math
import sys
import threading
from typing import Any

import numba
import numpy as np
from numba import cuda as _cuda  # importing numba.cuda needs no GPU

from ..devices import cuda, simulated

HELPERS_VERSION = 4

TPB = 256
THREADS = 16 if simulated() else TPB


class _SimulatorMath:
    """`math` for generated kernels under the simulator, with the GPU's IEEE behaviour: on a
    GPU `log(-1)` is NaN and `exp(1000)` is inf, where Python's math raises -- and a thread that
    raises in the simulator leaves the others of its block waiting at a barrier forever."""

    def __init__(self) -> None:
        import math as _math

        import scipy.special

        self._math = _math
        self._erf = scipy.special.erf

    def __getattr__(self, name: str) -> Any:
        fn = getattr(np, name, None) if name != "erf" else self._erf
        if fn is None or not callable(fn):
            return getattr(self._math, name)  # constants (inf, pi) and the rest

        def ieee(*args: Any) -> Any:
            with np.errstate(all="ignore"):
                return fn(*(np.float64(a) for a in args))

        return ieee


if simulated():
    math_for_kernels: Any = _SimulatorMath()
else:  # the real module: numba.cuda compiles math.* calls to libdevice
    math_for_kernels = math
_max_blocks: list[int] = []


def max_blocks() -> int:
    """At most 32 blocks per multiprocessor (4 under the simulator)."""
    if not _max_blocks:
        if simulated():
            _max_blocks.append(4)
        else:  # pragma: no cover - needs a GPU
            sms = cuda().get_current_device().MULTIPROCESSOR_COUNT
            _max_blocks.append(32 * int(sms))
    return _max_blocks[0]


def grid(n: int) -> tuple[int, int]:
    """(blocks, threads) for a grid-stride loop over `n` elements."""
    return max(1, min(max_blocks(), -(-int(n) // THREADS))), THREADS


def reduce_grid(m: int) -> tuple[int, int]:
    """(blocks, threads) for a reduction with `m` output elements, one block per element."""
    return max(1, min(max_blocks(), int(m))), THREADS


@_cuda.jit
def _fill_zero(a):  # noqa: ANN001, ANN202
    i = _cuda.grid(1)
    while i < a.size:
        a[i] = 0
        i += _cuda.gridsize(1)


class DevicePool:
    """Device arrays for kernel results, reused between calls once nothing else holds them.

    A fresh allocation is a cuMemAlloc (and later a free): for a 400 MB gradient that costs
    more than the kernel that fills it. An array is reused when neither it nor its memory is
    referenced beyond what the pool saw when it made the array (reference counts taken right
    after allocation; views of an array hold its memory object, so a view a user keeps also
    blocks reuse). Small arrays are not pooled; under the simulator nothing is."""

    SMALL = 1 << 20

    def __init__(self, per_shape: int = 4) -> None:
        self._arrays: dict[tuple, list[tuple[Any, int, int]]] = {}
        self._per_shape = per_shape
        self._lock = threading.Lock()

    def take(self, shape: Any, dtype: Any) -> Any:
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        dtype = np.dtype(dtype)
        nbytes = dtype.itemsize * math.prod(shape)
        if nbytes < self.SMALL or simulated():
            return _cuda.device_array(shape, dtype)
        key = (shape, dtype)
        with self._lock:
            entries = self._arrays.setdefault(key, [])
            for a, refs_a, refs_mem in entries:
                if sys.getrefcount(a) == refs_a and sys.getrefcount(a.gpu_data) == refs_mem:
                    return a
            a = _cuda.device_array(shape, dtype)
            if len(entries) < self._per_shape:
                # counted while held by the pool alone (+1 for getrefcount's argument, +1 for
                # the loop variable when it is checked above, as here for `a`)
                entries.append((a, sys.getrefcount(a) + 1, sys.getrefcount(a.gpu_data)))
            return a


_pool = DevicePool()


def empty(shape: Any, dtype: Any) -> Any:
    """An uninitialized device array for a kernel's result (from the pool when large)."""
    return _pool.take(shape, dtype)


def fill_zero(a: Any) -> None:
    """Set a device array to zeros (a kernel, no host-to-device copy)."""
    if a.size:
        flat = a.reshape(a.size)
        _fill_zero[grid(a.size)](flat)


def copy_of(a: Any) -> Any:
    """A device-to-device copy (for results built from an input: setitem, scatter_add)."""
    out = empty(a.shape, a.dtype)
    if a.size:
        out.copy_to_device(a)
    return out


def check_index(err: Any, op: str, dim: Any, shape: tuple, index_shape: tuple) -> None:
    """Raise the IndexError a kernel flagged (an index outside the dim it indexes)."""
    if err.copy_to_host()[0]:
        if dim is None:  # index_check: `op` says what the indices are
            raise IndexError(
                f"{op} out of range (index shape {tuple(int(s) for s in index_shape)})"
            )
        raise IndexError(
            f"{op}: index out of range for dim {dim} of size {shape[dim]} (input shape "
            f"{tuple(int(s) for s in shape)}, index shape {tuple(int(s) for s in index_shape)})"
        )


def zeros(n: int, dtype: Any) -> Any:
    """A zeroed device vector (an accumulator), without a host-to-device copy."""
    a = _cuda.device_array(int(n), dtype)
    fill_zero(a)
    return a


# matmul: C = A @ B with 16x16 tiles staged in shared memory -----------------------------------

TILE = 4 if simulated() else 16  # (the simulator runs each of the TILE**2 threads in Python)


def _make_matmul(acc_type: Any) -> Any:
    # (a Numba type: float64 tiles accumulate in float64, float32 ones in float32 as cuBLAS)

    @_cuda.jit
    def matmul_kernel(a, b, c):  # noqa: ANN001, ANN202
        # c[i, j] = sum_k a[i, k] * b[k, j]; each block computes one TILE x TILE tile of c,
        # stepping along k one tile at a time through shared memory
        sa = _cuda.shared.array((TILE, TILE), acc_type)
        sb = _cuda.shared.array((TILE, TILE), acc_type)
        tx = _cuda.threadIdx.x
        ty = _cuda.threadIdx.y
        m, k = a.shape
        n = b.shape[1]
        row0 = _cuda.blockIdx.y * TILE
        col0 = _cuda.blockIdx.x * TILE
        while row0 < m:  # grid-stride over tiles: any size runs with a capped grid
            col0 = _cuda.blockIdx.x * TILE
            while col0 < n:
                i = row0 + ty
                j = col0 + tx
                total = acc_type(0)
                for t0 in range(0, k, TILE):
                    sa[ty, tx] = a[i, t0 + tx] if i < m and t0 + tx < k else acc_type(0)
                    sb[ty, tx] = b[t0 + ty, j] if t0 + ty < k and j < n else acc_type(0)
                    _cuda.syncthreads()
                    for q in range(TILE):
                        total += sa[ty, q] * sb[q, tx]
                    _cuda.syncthreads()
                if i < m and j < n:
                    c[i, j] = total
                col0 += _cuda.gridDim.x * TILE
            row0 += _cuda.gridDim.y * TILE

    return matmul_kernel


_MATMUL = {
    np.dtype(np.float32): _make_matmul(numba.float32),
    np.dtype(np.float64): _make_matmul(numba.float64),
}


def matmul(a: Any, b: Any, out_ndim: int, out: Any = None) -> Any:
    """`a @ b` with numpy's rules: a 1-D left operand is a row, a 1-D right operand a column
    (that dimension is dropped from the result), leading dims broadcast as a batch (one tiled
    GEMM per batch element). A 0-d result is returned with shape (1,), as compiled CUDA code
    holds scalars. `out`: a 2-D result array to write into (a convolution's group slice)."""
    a2 = a.reshape(1, a.shape[0]) if a.ndim == 1 else a
    b2 = b.reshape(b.shape[0], 1) if b.ndim == 1 else b
    sa, sb = tuple(a2.shape), tuple(b2.shape)  # (tuples: the simulator's shapes misread [-1])
    m, n = sa[-2], sb[-1]
    batch = tuple(np.broadcast_shapes(sa[:-2], sb[:-2]))
    c = empty(batch + (m, n), a.dtype) if out is None else out
    for idx in np.ndindex(*batch):
        _gemm(
            _pick(a2, _batch_index(idx, sa[:-2])),
            _pick(b2, _batch_index(idx, sb[:-2])),
            _pick(c, idx),
        )
    if out_ndim == 0:
        return c.reshape(1)
    shape = batch + ((m,) if a.ndim > 1 else ()) + ((n,) if b.ndim > 1 else ())
    return c.reshape(shape) if tuple(c.shape) != shape else c


def _pick(a: Any, idx: tuple) -> Any:
    return a[idx] if idx else a


def _batch_index(idx: tuple, dims: tuple) -> tuple:
    """The element of a broadcast batch `idx` in an operand with batch dims `dims`."""
    idx = idx[len(idx) - len(dims) :] if dims else ()
    return tuple(0 if s == 1 else i for i, s in zip(idx, dims))


def _gemm(a: Any, b: Any, c: Any) -> None:
    """c = a @ b for 2-D device arrays (c preallocated)."""
    m, n = tuple(c.shape)
    if not (m and n):
        return
    if a.shape[1] == 0:
        fill_zero(c)
        return
    cap = max_blocks()
    tiles = max(1, min(cap, math.ceil(m / TILE))), max(1, min(cap, math.ceil(n / TILE)))
    _MATMUL[np.dtype(a.dtype)][(tiles[1], tiles[0]), (TILE, TILE)](a, b, c)
