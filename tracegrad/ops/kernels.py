"""Numba kernels shared by op forwards (eager mode) and generated code (which imports them
through codegen/numba_helpers.py: bump its HELPERS_VERSION when one changes).

Scalar float32 math that vectorizes (codegen/numba_helpers.py's docstring says how and how
exact): `exp_f32`, `tanh_f32`, `erf_f32`; eager float32 `erf` and exact `gelu` run them over
whole arrays (`erf_array`, `gelu_array`: scipy's float32 erf is a scalar call per element,
18x slower on 131k elements: 3.1 ms vs 0.16 ms).

Indexing by an integer tensor along dim 0 (`x[i]`, an embedding's lookup, and its gradient):
`take_rows` and `add_rows` check every index (numpy's bounds and negative wrap-around: compiled
code must not read or write outside the array); `add_rows` adds in index order, as `np.add.at`
does, 10-50x faster. `check_index` is `ops.index_check` compiled.
"""

from __future__ import annotations

import numpy as np

from .lazy_numba import intrinsic, njit  # Numba is imported at the first kernel call

_HI = np.float32(88.72283)  # exp(_HI) is the largest finite float32
_LO = np.float32(-103.97208)  # below it exp underflows to 0 even as a subnormal


@intrinsic
def _float32_from_bits(typingctx, bits):  # noqa: ANN001, ANN202
    """Reinterpret an int32 as a float32 (to build 2**n from its exponent bits)."""
    from llvmlite import ir
    from numba import types

    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


@njit(inline="always")
def exp_f32(x):  # noqa: ANN001, ANN201
    xc = min(max(x, _LO), _HI)
    n = np.floor(xc * np.float32(1.44269504) + np.float32(0.5))
    r = xc - n * np.float32(0.693359375) - n * np.float32(-2.12194440e-4)
    p = np.float32(1.9875691500e-4)
    p = p * r + np.float32(1.3981999507e-3)
    p = p * r + np.float32(8.3334519073e-3)
    p = p * r + np.float32(4.1665795894e-2)
    p = p * r + np.float32(1.6666665459e-1)
    p = p * r + np.float32(5.0000001201e-1)
    y = p * (r * r) + r + np.float32(1.0)
    # 2**n in two factors, so that n = 128 (near the top) and n < -126 (subnormal results)
    # stay representable
    k = np.int32(n)
    k1 = k >> np.int32(1)
    k2 = k - k1
    y = y * _float32_from_bits((k1 + np.int32(127)) << np.int32(23))
    y = y * _float32_from_bits((k2 + np.int32(127)) << np.int32(23))
    y = np.float32(np.inf) if x > _HI else y
    y = np.float32(0.0) if x < _LO else y
    return x if x != x else y  # NaN stays NaN


@njit(inline="always")
def tanh_f32(x):  # noqa: ANN001, ANN201
    a = abs(x)
    # |x| >= 0.625: 1 - 2 / (exp(2|x|) + 1), which is 1 in float32 beyond |x| = 9
    big = np.float32(1.0) - np.float32(2.0) / (
        exp_f32(min(a, np.float32(44.0)) * np.float32(2.0)) + np.float32(1.0)
    )
    big = big if x >= 0 else -big
    # |x| < 0.625: x + x * z * P(z), z = x * x
    z = x * x
    p = np.float32(-5.70498872745e-3)
    p = p * z + np.float32(2.06390887954e-2)
    p = p * z - np.float32(5.37397155531e-2)
    p = p * z + np.float32(1.33314422036e-1)
    p = p * z - np.float32(3.33332819422e-1)
    small = p * z * x + x
    y = small if a < np.float32(0.625) else big
    return x if x != x else y  # NaN stays NaN


@njit(inline="always")
def erf_f32(x):  # noqa: ANN001, ANN201
    c = min(max(x, np.float32(-4.0)), np.float32(4.0))
    x2 = c * c
    p = np.float32(-2.72614225801306e-10)
    p = p * x2 + np.float32(2.77068142495902e-08)
    p = p * x2 + np.float32(-2.10102402082508e-06)
    p = p * x2 + np.float32(-5.69250639462346e-05)
    p = p * x2 + np.float32(-7.34990630326855e-04)
    p = p * x2 + np.float32(-2.95459980854025e-03)
    p = p * x2 + np.float32(-1.60960333262415e-02)
    q = np.float32(-1.45660718464996e-05)
    q = q * x2 + np.float32(-2.13374055278905e-04)
    q = q * x2 + np.float32(-1.68282697438203e-03)
    q = q * x2 + np.float32(-7.37332916720468e-03)
    q = q * x2 + np.float32(-1.42647390514189e-02)
    y = c * p / q
    return x if x != x else y  # NaN stays NaN


# as the compiled loops: numpy's error model (no zero-division branch) and FMA contraction, so
# that the loop vectorizes
@njit(cache=True, error_model="numpy", fastmath={"contract"})
def exp_array(x):  # noqa: ANN001, ANN201
    """exp of a float32 array, elementwise (any layout; the result is C-contiguous): the
    compiled loops' `exp_f32`, 2x numpy's float32 exp on this project's x86 machines (65k
    elements: 107 vs 207 us), within 2 ulp of it."""
    flat = np.ascontiguousarray(x).ravel()
    out = np.empty_like(flat)
    for i in range(flat.size):
        out[i] = exp_f32(flat[i])
    return out.reshape(x.shape)


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def erf_array(x):  # noqa: ANN001, ANN201
    """erf of a float32 array, elementwise (any layout; the result is C-contiguous)."""
    flat = np.ascontiguousarray(x).ravel()
    out = np.empty_like(flat)
    for i in range(flat.size):
        out[i] = erf_f32(flat[i])
    return out.reshape(x.shape)


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def gelu_array(x):  # noqa: ANN001, ANN201
    """Exact GELU of a float32 array: 0.5 x (1 + erf(x / sqrt 2)), as compiled loops do."""
    flat = np.ascontiguousarray(x).ravel()
    out = np.empty_like(flat)
    for i in range(flat.size):
        v = flat[i]
        out[i] = np.float32(0.5) * v * (np.float32(1.0) + erf_f32(v * np.float32(0.70710677)))
    return out.reshape(x.shape)


# --------------------------------------------------------------------------------------------
# where(c, x, y) over flat arrays of one size: a select per element, no branch. numpy's where
# branches on each element, and a random mask (a ReLU's gradient) mispredicts half of them:
# 131k float32 took 460 us in np.where and 16 us here. x or y may be a scalar of out's dtype.


@njit(cache=True)
def select_into(c, x, y, out):  # noqa: ANN001, ANN201
    for i in range(out.size):
        out[i] = x[i] if c[i] else y[i]


@njit(cache=True)
def select_scalar_y_into(c, x, y, out):  # noqa: ANN001, ANN201
    for i in range(out.size):
        out[i] = x[i] if c[i] else y


@njit(cache=True)
def select_scalar_x_into(c, x, y, out):  # noqa: ANN001, ANN201
    for i in range(out.size):
        out[i] = x if c[i] else y[i]


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
def cat_into(out, x, at, dim):  # noqa: ANN001, ANN201
    """out[..., at:at + x.shape[dim], ...] = x, through (outer, size * inner) views of both;
    returns at + x.shape[dim]. `cat`'s compiled lowering calls this once per input: one call
    in the segment instead of a loop nest (the copy loops of 29 inputs, each vectorized with
    its own aliasing checks, took LLVM 4 s in one GPT segment; np.concatenate 6 s). `out` is
    C-contiguous."""
    outer = 1
    for d in range(dim):
        outer *= x.shape[d]
    inner = 1
    for d in range(dim + 1, x.ndim):
        inner *= x.shape[d]
    n = x.shape[dim]
    src = np.ascontiguousarray(x).reshape((outer, n * inner))
    dst = out.reshape((outer, out.shape[dim] * inner))
    start = at * inner
    for o in range(outer):
        for k in range(n * inner):
            dst[o, start + k] = src[o, k]
    return at + n


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


# --------------------------------------------------------------------------------------------
# counter-based uniform numbers (ops/random.py): the same bits as its numpy forward


@njit(cache=True)
def _splitmix64_at(seed, counter):  # noqa: ANN001, ANN202
    z = seed + (counter + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(cache=True)
def uniform_f32(state, n):  # noqa: ANN001, ANN201
    """n float32 numbers in [0, 1): the top 24 bits of SplitMix64 outputs offset, offset+1, ..."""
    seed, offset = np.uint64(state[0]), np.uint64(state[1])
    out = np.empty(n, dtype=np.float32)
    for i in range(n):
        bits = _splitmix64_at(seed, offset + np.uint64(i))
        out[i] = np.float32(bits >> np.uint64(40)) * np.float32(2.0**-24)
    return out


@njit(cache=True)
def uniform_f64(state, n):  # noqa: ANN001, ANN201
    """n float64 numbers in [0, 1): the top 53 bits of the same outputs."""
    seed, offset = np.uint64(state[0]), np.uint64(state[1])
    out = np.empty(n, dtype=np.float64)
    for i in range(n):
        bits = _splitmix64_at(seed, offset + np.uint64(i))
        out[i] = np.float64(bits >> np.uint64(11)) * 2.0**-53
    return out


# --------------------------------------------------------------------------------------------
# layer norm over the last axis of a (rows, m) array: eager mode's fused forward and input
# gradient (ops/nn.py `layer_norm`); float64 accumulators, as the compiled loops keep


@njit(cache=True, error_model="numpy", fastmath={"contract", "reassoc"})
def _row_stats(x, r, eps):  # noqa: ANN001, ANN202
    """Row r's mean and 1 / sqrt(biased variance + eps), two passes in float64."""
    m = x.shape[1]
    s = 0.0
    for j in range(m):
        s += x[r, j]
    mean = s / m
    q = 0.0
    for j in range(m):
        d = x[r, j] - mean
        q += d * d
    return mean, 1.0 / np.sqrt(q / m + eps)


@njit(cache=True, error_model="numpy", fastmath={"contract", "reassoc"})
def layer_norm_rows(x, w, b, eps):  # noqa: ANN001, ANN201
    """out[r] = (x[r] - mean) / sqrt(var + eps) * w + b (biased variance), per row."""
    rows, m = x.shape
    out = np.empty_like(x)
    for r in range(rows):
        mean, rstd = _row_stats(x, r, eps)
        for j in range(m):
            out[r, j] = (x[r, j] - mean) * rstd * w[j] + b[j]
    return out


@njit(cache=True, error_model="numpy", fastmath={"contract", "reassoc"})
def layer_norm_grad_rows(g, x, w, eps):  # noqa: ANN001, ANN201
    """The input gradient of layer_norm_rows: rstd * (gw - mean(gw) - xhat * mean(gw * xhat)),
    gw = g * w, per row."""
    rows, m = x.shape
    out = np.empty_like(x)
    for r in range(rows):
        mean, rstd = _row_stats(x, r, eps)
        a = 0.0
        c = 0.0
        for j in range(m):
            gw = g[r, j] * w[j]
            a += gw
            c += gw * (x[r, j] - mean) * rstd
        a /= m
        c /= m
        for j in range(m):
            xhat = (x[r, j] - mean) * rstd
            out[r, j] = rstd * (g[r, j] * w[j] - a - xhat * c)
    return out


# --------------------------------------------------------------------------------------------
# softmax over the last axis of a (rows, m) array, and its gradient (ops/nn.py `softmax`)


@njit(cache=True, error_model="numpy", fastmath={"contract", "reassoc"})
def softmax_rows(x):  # noqa: ANN001, ANN201
    """exp(x - max) / sum(exp(x - max)) per row, float64 (the shift 0 where the max is not
    finite, so that rows with +-inf or NaN give the composite's NaN and zeros)."""
    out = np.empty_like(x)
    for r in range(x.shape[0]):
        shift = _row_shift(x, r)
        s = 0.0
        for j in range(x.shape[1]):
            out[r, j] = np.exp(x[r, j] - shift)
            s += out[r, j]
        for j in range(x.shape[1]):
            out[r, j] = out[r, j] / s
    return out


@njit(cache=True, error_model="numpy", fastmath={"contract", "reassoc"})
def softmax_rows_f32(x):  # noqa: ANN001, ANN201
    """`softmax_rows` for float32, with the compiled loops' exp_f32 (vectorizes)."""
    out = np.empty_like(x)
    for r in range(x.shape[0]):
        shift = np.float32(_row_shift(x, r))
        s = 0.0
        for j in range(x.shape[1]):
            out[r, j] = exp_f32(x[r, j] - shift)
            s += out[r, j]
        for j in range(x.shape[1]):
            out[r, j] = out[r, j] / s
    return out


@njit(inline="always")
def _row_shift(x, r):  # noqa: ANN001, ANN201
    top = -np.inf
    for j in range(x.shape[1]):
        v = x[r, j]
        top = v if (v > top or v != v) else top
    return top if abs(top) < np.inf else 0.0


@njit(cache=True, error_model="numpy", fastmath={"contract", "reassoc"})
def softmax_grad_rows(g, y):  # noqa: ANN001, ANN201
    """The softmax's input gradient per row: y * (g - sum(g * y))."""
    rows, m = y.shape
    out = np.empty_like(y)
    for r in range(rows):
        dot = 0.0
        for j in range(m):
            dot += g[r, j] * y[r, j]
        for j in range(m):
            out[r, j] = y[r, j] * (g[r, j] - dot)
    return out


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def gelu_grad_array(g, x):  # noqa: ANN001, ANN201
    """Exact GELU's input gradient for float32, g * (Phi(x) + x phi(x)), in one pass (the
    composite was eleven numpy ops)."""
    gf = np.ascontiguousarray(g).ravel()
    xf = np.ascontiguousarray(x).ravel()
    out = np.empty_like(xf)
    for i in range(xf.size):
        v = xf[i]
        cdf = np.float32(0.5) * (np.float32(1.0) + erf_f32(v * np.float32(0.70710677)))
        pdf = exp_f32(v * v * np.float32(-0.5)) * np.float32(0.3989422804014327)
        out[i] = gf[i] * (cdf + v * pdf)
    return out.reshape(x.shape)


@njit(cache=True, error_model="numpy", fastmath={"contract", "reassoc"})
def log_softmax_rows(x):  # noqa: ANN001, ANN201
    """x - max - log(sum(exp(x - max))) per row (the composite x - logsumexp(x), one pass less)."""
    out = np.empty_like(x)
    for r in range(x.shape[0]):
        shift = _row_shift(x, r)
        s = 0.0
        for j in range(x.shape[1]):
            s += np.exp(x[r, j] - shift)
        lse = shift + np.log(s)
        for j in range(x.shape[1]):
            out[r, j] = x[r, j] - lse
    return out


@njit(cache=True, error_model="numpy", fastmath={"contract", "reassoc"})
def log_softmax_rows_f32(x):  # noqa: ANN001, ANN201
    """`log_softmax_rows` for float32, with the compiled loops' exp_f32."""
    out = np.empty_like(x)
    for r in range(x.shape[0]):
        shift = np.float32(_row_shift(x, r))
        s = 0.0
        for j in range(x.shape[1]):
            s += exp_f32(x[r, j] - shift)
        lse = np.float32(shift + np.log(s))
        for j in range(x.shape[1]):
            out[r, j] = x[r, j] - lse
    return out


@njit(cache=True, error_model="numpy", fastmath={"contract", "reassoc"})
def log_softmax_grad_rows(g, y):  # noqa: ANN001, ANN201
    """log_softmax's input gradient per row: g - exp(y) * sum(g)."""
    out = np.empty_like(y)
    for r in range(y.shape[0]):
        total = 0.0
        for j in range(y.shape[1]):
            total += g[r, j]
        for j in range(y.shape[1]):
            out[r, j] = g[r, j] - np.exp(y[r, j]) * total
    return out
