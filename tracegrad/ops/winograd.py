"""Winograd F(2x2, 3x3): a 3x3 stride-1 convolution in 16 batched GEMMs instead of one im2col
GEMM 2.25x larger (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016).

Each 2x2 block of outputs ("tile") is computed from the 4x4 input patch around it:

    Y = A^T [ (G g G^T)  .*  (B^T d B) ] A          (per tile, per input/output channel pair)

    B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
    G   = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]
    A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]

The sum over input channels of the elementwise products is, for each of the 16 positions of
the 4x4 transformed tile, a matrix product: M[e] = V[e] @ U[e] with V[e] (tiles, C) the
transformed input and U[e] (C, K) the transformed weights. So:

1. `_input_transform`: V[16, P, C] from the (zero-padded) input, P = N * tiles_h * tiles_w;
2. `_weight_transform`: U[16, C, K];
3. `np.matmul(V, U)`: 16 GEMMs (P, C) x (C, K) in BLAS (this orientation: 2.2x faster than
   (K, C) x (C, P) in OpenBLAS at ResNet's first layer, 64 channels x 1024 tiles);
4. `_output_transform`: the 2x2 outputs of each tile from M[16, P, K].

The 16 planes of V, U and M are laid out `PLANE_PAD` elements apart beyond their size: with
power-of-two plane sizes (ResNet's) the 16 streams a transform writes or reads would otherwise
fall into the same cache sets. V and M are scratch buffers kept per thread between calls (a
fresh allocation of megabytes is page faults at every call).

The transforms are serial Numba loops (compiled once, cached on disk), so they do not compete
with BLAS's threads (docs/compiler.md). Multiplications: 16 per tile and channel pair against
36 for the direct 2x2 block (2.25x fewer); the transforms add additions and memory passes.
Accuracy: the transforms only add, subtract and halve, so float64 results agree with the direct
convolution to ~1e-15 relative and float32 to ~1e-6 (docs/nn.md has the measured errors).
"""

from __future__ import annotations

import threading

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .lazy_numba import njit  # Numba is imported at the first kernel call


def eligible(x_shape: tuple, w_shape: tuple, stride: tuple, dilation: tuple, groups: int) -> bool:
    """Whether `conv2d` runs as Winograd F(2x2, 3x3): 3x3 kernels, stride 1, no dilation, one
    group (ResNet's 3x3 layers), and an output of at least 2x2 (docs/nn.md, measured rule)."""
    return (
        tuple(w_shape[2:]) == (3, 3)
        and tuple(stride) == (1, 1)
        and tuple(dilation) == (1, 1)
        and groups == 1
        and x_shape[0] > 0
    )


def conv3x3(x: np.ndarray, w: np.ndarray, padding: tuple) -> np.ndarray:
    """`conv2d(x, w, padding=padding)` for a 3x3 kernel, stride 1, one group: (N, K, OH, OW)."""
    n, c, h, wd = x.shape
    k = w.shape[0]
    ph, pw = padding
    oh, ow = h + 2 * ph - 2, wd + 2 * pw - 2
    dtype = np.result_type(x.dtype, w.dtype)
    if oh <= 0 or ow <= 0 or k == 0 or c == 0:
        return np.zeros((n, k, max(oh, 0), max(ow, 0)), dtype=dtype)
    th, tw = (oh + 1) // 2, (ow + 1) // 2
    p = n * th * tw
    v = _planes("v", p, c, dtype)
    _input_transform(np.ascontiguousarray(x, dtype=dtype), v, ph, pw, th, tw)
    u = weight_transform(w.astype(dtype, copy=False))
    m = _planes("m", p, k, dtype)
    np.matmul(v, u, out=m)  # 16 GEMMs (P, C) x (C, K) in BLAS
    out = np.empty((n, k, oh, ow), dtype=dtype)
    _output_transform(m, out, th, tw)
    return out


def weight_transform(w: np.ndarray) -> np.ndarray:
    """U[16, C, K] = G g G^T for every (K, C) filter."""
    k, c = w.shape[:2]
    u = _planes(None, c, k, w.dtype)
    _weight_transform(np.ascontiguousarray(w), u)
    return u


PLANE_PAD = 32  # elements between consecutive planes beyond their size (see the docstring)

_scratch = threading.local()


def _planes(slot: str | None, rows: int, cols: int, dtype: np.dtype) -> np.ndarray:
    """A (16, rows, cols) array whose planes lie PLANE_PAD elements apart: a per-thread scratch
    buffer reused between calls (`slot`), or a new one (None)."""
    stride = rows * cols + PLANE_PAD
    size = 16 * stride
    if slot is None:
        buf = np.empty(size, dtype=dtype)
    else:
        key = (slot, np.dtype(dtype))
        table = getattr(_scratch, "buffers", None)
        if table is None:
            table = _scratch.buffers = {}
        buf = table.get(key)
        if buf is None or buf.size < size:
            buf = table[key] = np.empty(size, dtype=dtype)
    item = buf.itemsize
    return as_strided(buf, (16, rows, cols), (stride * item, cols * item, item))


@njit(cache=True, fastmath={"contract"})
def _weight_transform(w, u):  # noqa: ANN001, ANN202
    k, c = w.shape[:2]
    s = np.zeros((4, 3), dtype=w.dtype)
    for ci in range(c):
        for ki in range(k):
            # s = G g (rows), then U = s G^T (columns)
            for j in range(3):
                g0 = w[ki, ci, 0, j]
                g1 = w[ki, ci, 1, j]
                g2 = w[ki, ci, 2, j]
                s[0, j] = g0
                s[1, j] = 0.5 * (g0 + g1 + g2)
                s[2, j] = 0.5 * (g0 - g1 + g2)
                s[3, j] = g2
            for i in range(4):
                u[4 * i + 0, ci, ki] = s[i, 0]
                u[4 * i + 1, ci, ki] = 0.5 * (s[i, 0] + s[i, 1] + s[i, 2])
                u[4 * i + 2, ci, ki] = 0.5 * (s[i, 0] - s[i, 1] + s[i, 2])
                u[4 * i + 3, ci, ki] = s[i, 2]


def _input_transform_py(x, v, ph, pw, th, tw):  # noqa: ANN001, ANN202
    n, c, h, w = x.shape
    for b in range(n):
        d = np.zeros((4, 4), dtype=x.dtype)
        t = np.zeros((4, 4), dtype=x.dtype)
        for ty in range(th):
            r0 = 2 * ty - ph
            for tx in range(tw):
                c0 = 2 * tx - pw
                p = (b * th + ty) * tw + tx
                for ci in range(c):
                    # the 4x4 input patch of this tile (zero outside the image: padding)
                    for i in range(4):
                        r = r0 + i
                        for j in range(4):
                            q = c0 + j
                            if 0 <= r < h and 0 <= q < w:
                                d[i, j] = x[b, ci, r, q]
                            else:
                                d[i, j] = 0
                    # t = B^T d (rows), then V = t B (columns)
                    for j in range(4):
                        t[0, j] = d[0, j] - d[2, j]
                        t[1, j] = d[1, j] + d[2, j]
                        t[2, j] = d[2, j] - d[1, j]
                        t[3, j] = d[1, j] - d[3, j]
                    for i in range(4):
                        v[4 * i + 0, p, ci] = t[i, 0] - t[i, 2]
                        v[4 * i + 1, p, ci] = t[i, 1] + t[i, 2]
                        v[4 * i + 2, p, ci] = t[i, 2] - t[i, 1]
                        v[4 * i + 3, p, ci] = t[i, 1] - t[i, 3]


def _output_transform_py(m, out, th, tw):  # noqa: ANN001, ANN202
    n, k, oh, ow = out.shape
    for b in range(n):
        s = np.zeros((2, 4), dtype=m.dtype)
        for ty in range(th):
            for tx in range(tw):
                p = (b * th + ty) * tw + tx
                for ki in range(k):
                    # s = A^T M (rows), then Y = s A (columns)
                    for j in range(4):
                        m0 = m[j, p, ki]
                        m1 = m[4 + j, p, ki]
                        m2 = m[8 + j, p, ki]
                        m3 = m[12 + j, p, ki]
                        s[0, j] = m0 + m1 + m2
                        s[1, j] = m1 - m2 - m3
                    for i in range(2):
                        r = 2 * ty + i
                        if r < oh:
                            out[b, ki, r, 2 * tx] = s[i, 0] + s[i, 1] + s[i, 2]
                            if 2 * tx + 1 < ow:
                                out[b, ki, r, 2 * tx + 1] = s[i, 1] - s[i, 2] - s[i, 3]


# serial: between BLAS calls, a parallel transform (prange over images) was no faster here and
# would compete with BLAS's threads (docs/nn.md)
_options = {"cache": True, "fastmath": {"contract"}}
_input_transform = njit(**_options)(_input_transform_py)
_output_transform = njit(**_options)(_output_transform_py)
