"""The op table's test cases, shared by the op tests (tests/ops) and the tracing tests
(tests/trace): for each op, how to draw inputs and parameters, and a numpy reference."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import scipy.special
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tracegrad import ops

# TRACEGRAD_EXAMPLES=200 for a thorough local run; CI keeps the suite fast
EXAMPLES = int(os.environ.get("TRACEGRAD_EXAMPLES", "12"))
SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


# --------------------------------------------------------------------------------------------
# drawing inputs


def shapes(min_dims: int = 0, max_dims: int = 3, max_side: int = 3, min_side: int = 0):
    return hnp.array_shapes(
        min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side
    )


def layout(draw: Any, arr: np.ndarray) -> np.ndarray:
    """The same values in another memory layout: C, Fortran, or a strided view."""
    kind = draw(st.sampled_from(["c", "f", "strided"]))
    if kind == "f" and arr.ndim:  # (asfortranarray makes a 0-d array 1-d)
        return np.asfortranarray(arr)
    if kind == "strided" and arr.ndim:
        big = np.zeros(arr.shape[:-1] + (arr.shape[-1] * 2,), dtype=arr.dtype)
        big[..., ::2] = arr
        view = big[..., ::2]
        assert not view.flags.c_contiguous or arr.shape[-1] <= 1 or arr.size == 0
        return view
    return arr


def floats(draw: Any, shape: tuple, lo: float = -2.0, hi: float = 2.0, away: float = 0.0):
    """float64 values in [lo, hi], at least `away` from 0 (kinks), in a random layout."""
    arr = draw(hnp.arrays(np.float64, shape, elements=st.floats(lo, hi)))
    if away:
        arr = np.where(np.abs(arr) < away, np.where(arr < 0, -away, away), arr)
    return layout(draw, arr)


def distinct(draw: Any, shape: tuple) -> np.ndarray:
    """Values without ties (max/min/relu tests must not sit on a kink)."""
    n = int(np.prod(shape))
    perm = draw(st.permutations(list(range(n)))) if n else []
    arr = (np.asarray(perm, dtype=np.float64) * 0.37 - n * 0.15).reshape(shape)
    return layout(draw, arr)


def two_shapes(draw: Any, max_dims: int = 3) -> tuple:
    return draw(
        hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=max_dims, max_side=3)
    ).input_shapes


@dataclass
class Case:
    """How to test one op: draw (inputs, params); a numpy reference; which checks apply."""

    draw: Callable[[Any], tuple]
    ref: Callable[..., np.ndarray] | None
    grad: bool = True
    order2: bool = True
    atol: float = 1e-5
    rtol: float = 1e-3
    notes: list = field(default_factory=list)


def differentiable_positions(op: Any, case: Case, inputs: list) -> tuple:
    """Among the tensor inputs of a drawn case (numbers skipped), the positions of the float
    ones that the op has a VJP rule for (the argnums to take gradients with respect to)."""
    positions = []
    position = 0
    for i, x in enumerate(inputs):
        if not hasattr(x, "requires_grad"):  # a Python number or other literal
            continue
        rule = None
        if case.grad and op.vjp is not None:
            rule = op.vjp[0] if op.variadic else (op.vjp[i] if i < len(op.vjp) else None)
        if x.dtype.kind == "f" and rule is not None:
            positions.append(position)
        position += 1
    return tuple(positions)


def unary_case(
    ref: Callable,
    lo: float = -2.0,
    hi: float = 2.0,
    away: float = 0.0,
    order2: bool = True,
    params: dict | None = None,
) -> Case:
    def draw(d: Any) -> tuple:
        return (floats(d, d(shapes()), lo, hi, away),), dict(params or {})

    return Case(draw, ref, order2=order2)


def binary_case(
    ref: Callable,
    ylo: float = -2.0,
    yhi: float = 2.0,
    yaway: float = 0.0,
    xlo: float = -2.0,
    xhi: float = 2.0,
    scalar_y: bool = True,
) -> Case:
    def draw(d: Any) -> tuple:
        sx, sy = two_shapes(d)
        x = floats(d, sx, xlo, xhi)
        if scalar_y and d(st.booleans()) and not yaway:
            return (x, d(st.floats(ylo, yhi))), {}
        return (x, floats(d, sy, ylo, yhi, yaway)), {}

    return Case(draw, ref)


def compare_case(ref: Callable) -> Case:
    def draw(d: Any) -> tuple:
        sx, sy = two_shapes(d)
        pool = st.sampled_from([-1.0, 0.0, 0.5, 2.0])
        x = d(hnp.arrays(np.float64, sx, elements=pool))
        y = d(hnp.arrays(np.float64, sy, elements=pool))
        return (layout(d, x), y), {}

    return Case(draw, ref, grad=False)


def logic_case(ref: Callable, arity: int) -> Case:
    def draw(d: Any) -> tuple:
        sx, sy = two_shapes(d)
        x = d(hnp.arrays(np.bool_, sx))
        y = d(hnp.arrays(np.bool_, sy))
        return ((x, y) if arity == 2 else (x,)), {}

    return Case(draw, ref, grad=False)


def reduce_case(
    op: str,
    ref: Callable,
    ties: bool = True,
    nonempty: bool = False,
    lo: float = -2.0,
    hi: float = 2.0,
) -> Case:
    def draw(d: Any) -> tuple:
        shape = d(shapes(min_side=1 if nonempty else 0))
        x = floats(d, shape, lo, hi) if ties else distinct(d, shape)
        ndim = len(shape)
        dims = tuple(sorted(d(st.sets(st.integers(0, max(ndim - 1, 0)), max_size=ndim))))
        if ndim == 0 or d(st.booleans()):
            dims = tuple(range(ndim))
        return (x,), {"dims": dims, "keepdim": d(st.booleans())}

    def reference(x: np.ndarray, *, dims: tuple, keepdim: bool) -> np.ndarray:
        return ref(x, axis=dims, keepdims=keepdim)

    return Case(draw, reference)


def arg_case(ref: Callable) -> Case:
    def draw(d: Any) -> tuple:
        shape = d(shapes(min_dims=1, min_side=1))
        x = distinct(d, shape)
        dim = d(st.one_of(st.none(), st.integers(0, len(shape) - 1)))
        return (x,), {"dim": dim, "keepdim": d(st.booleans())}

    def reference(x: np.ndarray, *, dim: Any, keepdim: bool) -> np.ndarray:
        if dim is None:
            r = ref(x)
            return np.reshape(r, (1,) * x.ndim) if keepdim else r
        return ref(x, axis=dim, keepdims=keepdim)

    return Case(draw, reference, grad=False)


def _argsort(d: Any) -> tuple:
    shape = d(shapes(min_dims=1, min_side=1))
    x = distinct(d, shape)
    if d(st.booleans()):
        x = np.round(x)  # ties: the order among them must be stable
    return (x,), {"dim": d(st.integers(0, len(shape) - 1)), "descending": d(st.booleans())}


def _argsort_ref(x: np.ndarray, *, dim: int, descending: bool) -> np.ndarray:
    return np.argsort(-x if descending else x, axis=dim, kind="stable")


def _uniform(d: Any) -> tuple:
    state = np.array(
        [d(st.integers(-(2**63), 2**63 - 1)), d(st.integers(0, 2**40))], dtype=np.int64
    )
    shape = d(shapes(min_dims=0, max_side=4))
    dtype = d(st.sampled_from([np.float32, np.float64]))
    return (state,), {"shape": shape, "dtype": np.dtype(dtype)}


def _uniform_ref(state: np.ndarray, *, shape: tuple, dtype: Any) -> np.ndarray:
    # SplitMix64 with Python integers: output number offset + i of the stream seeded by seed
    mask = (1 << 64) - 1
    seed, offset = (int(v) & mask for v in state)
    out = []
    for i in range(int(np.prod(shape, dtype=np.int64))):
        z = (seed + (offset + i + 1) * 0x9E3779B97F4A7C15) & mask
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        z ^= z >> 31
        bits = 24 if np.dtype(dtype) == np.float32 else 53
        out.append((z >> (64 - bits)) / 2.0**bits)
    return np.asarray(out, dtype=dtype).reshape(shape)


def sigmoid_ref(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def gelu_grad_ref(g: np.ndarray, x: np.ndarray, *, approximate: str = "none") -> np.ndarray:
    if approximate == "tanh":
        k = np.sqrt(2 / np.pi)
        t = np.tanh(k * (x + 0.044715 * x**3))
        return g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x))
    cdf = 0.5 * (1 + scipy.special.erf(x / np.sqrt(2)))
    return g * (cdf + x * np.exp(-0.5 * x * x) / np.sqrt(2 * np.pi))


def gelu_ref(x: np.ndarray, *, approximate: str = "none") -> np.ndarray:
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    return 0.5 * x * (1 + scipy.special.erf(x / np.sqrt(2)))


# --------------------------------------------------------------------------------------------
# cases for the ops that need more than a generic draw


def _where(d: Any) -> tuple:
    (sc, sx, sy) = d(
        hnp.mutually_broadcastable_shapes(num_shapes=3, max_dims=3, max_side=3)
    ).input_shapes
    return (d(hnp.arrays(np.bool_, sc)), floats(d, sx), floats(d, sy)), {}


def _clamp(d: Any) -> tuple:
    x = floats(d, d(shapes()), -2, 2)
    lo = d(st.one_of(st.none(), st.sampled_from([-1.0, -0.5])))
    hi = (
        d(st.sampled_from([None, 0.75, 1.5])) if lo is not None else d(st.sampled_from([0.75, 1.5]))
    )
    bounds = [b for b in (lo, hi) if b is not None]
    # keep values off the bounds, where clamp has a kink
    for b in bounds:
        x = np.where(np.abs(x - b) < 0.05, b + 0.1, x)
    return (x,), {"min": lo, "max": hi}


def _astype(d: Any) -> tuple:
    return (floats(d, d(shapes())),), {"dtype": np.dtype(np.float64)}


def _reshape(d: Any) -> tuple:
    shape = d(shapes())
    n = int(np.prod(shape))
    options = [(n,), shape[::-1], (1, n), (n, 1)]
    return (floats(d, shape),), {"shape": tuple(d(st.sampled_from(options)))}


def _permute(d: Any) -> tuple:
    shape = d(shapes())
    return (floats(d, shape),), {"dims": tuple(d(st.permutations(list(range(len(shape))))))}


def _expand(d: Any) -> tuple:
    shape = d(shapes(max_dims=2))
    small = tuple(1 if d(st.booleans()) else s for s in shape)
    lead = tuple(d(st.lists(st.integers(0, 3), max_size=1)))
    return (floats(d, small),), {"shape": lead + shape}


def _index(d: Any, shape: tuple, nonneg: bool = False) -> tuple:
    """A random index for `shape`: ints, slices, None, Ellipsis, integer arrays."""
    parts = []
    arrays = []
    n = d(st.integers(1, 4))  # index arrays broadcast together: give them one length
    for size in shape:
        kind = d(st.sampled_from(["slice", "int", "array", "none"] if size else ["slice"]))
        if kind == "int":
            parts.append(d(st.integers(-size, size - 1)))
        elif kind == "array":
            lo = 0 if nonneg else -size
            arrays.append(
                np.asarray(
                    d(st.lists(st.integers(lo, size - 1), min_size=n, max_size=n)), dtype=np.int64
                )
            )
            parts.append(ops.ARRAY)
        elif kind == "none":
            parts.append(None)
            parts.append(slice(None))
        else:
            start = d(st.integers(-size - 1, size + 1))
            step = d(st.sampled_from([1, 2, -1]))
            parts.append(slice(start, None, step))
    if parts and d(st.booleans()):
        parts.insert(0, Ellipsis)
        # an Ellipsis in front covers nothing when every dim is indexed
    return tuple(parts), arrays


def _getitem(d: Any) -> tuple:
    shape = d(shapes(min_dims=1))
    idx, arrays = _index(d, shape)
    return (floats(d, shape), *arrays), {"idx": idx}


def _unindex(d: Any) -> tuple:
    shape = d(shapes(min_dims=1))
    idx, arrays = _index(d, shape)
    probe = np.zeros(shape)[ops.fill_index(idx, tuple(arrays))]
    return (floats(d, probe.shape), *arrays), {"shape": shape, "idx": idx}


def _two_distinct(d: Any) -> tuple:
    # no ties between x and y: maximum/minimum have a kink there
    shape = d(shapes())
    return (distinct(d, shape), distinct(d, shape) + 0.11), {}


def _remainder(d: Any) -> tuple:
    # every x / y at least 0.2 from an integer (remainder jumps there, and finite differences
    # across a jump are not its gradient), divisors of both signs, any broadcast
    sx, sy = two_shapes(d)
    x = d(hnp.arrays(np.float64, sx, elements=st.sampled_from([0.35, -1.6, -0.5])))
    y = d(hnp.arrays(np.float64, sy, elements=st.sampled_from([0.7, -0.9, 1.3])))
    return (layout(d, x), layout(d, y)), {}


def _setitem(d: Any) -> tuple:
    shape = d(shapes(min_dims=1))
    idx, arrays = _index(d, shape, nonneg=True)
    # One index array at most, without repeats: with repeats "the last write wins" and the
    # value's gradient is ambiguous (as in PyTorch and numpy).
    it = iter(arrays)
    kept: list = []
    parts: list = []
    for part in idx:
        if part is ops.ARRAY:
            a = next(it)
            if kept:
                parts.append(slice(None))
            else:
                kept.append(np.unique(a))
                parts.append(ops.ARRAY)
        else:
            parts.append(part)
    idx, arrays = tuple(parts), kept
    region = np.zeros(shape)[ops.fill_index(idx, tuple(arrays))].shape
    vshape = region[d(st.integers(0, len(region))) :]
    vshape = tuple(1 if d(st.booleans()) else s for s in vshape)
    return (floats(d, shape), floats(d, vshape), *arrays), {"idx": idx}


def _cat(d: Any) -> tuple:
    shape = d(shapes(min_dims=1))
    dim = d(st.integers(0, len(shape) - 1))
    xs = []
    for _ in range(d(st.integers(1, 3))):
        s = list(shape)
        s[dim] = d(st.integers(0, 3))
        xs.append(floats(d, tuple(s)))
    return tuple(xs), {"dim": dim}


def _gather(d: Any) -> tuple:
    shape = d(shapes(min_dims=1, min_side=1))
    dim = d(st.integers(0, len(shape) - 1))
    ishape = tuple(
        d(st.integers(0, s)) if i != dim else d(st.integers(0, 4)) for i, s in enumerate(shape)
    )
    index = d(hnp.arrays(np.int64, ishape, elements=st.integers(0, shape[dim] - 1)))
    return (floats(d, shape), index), {"dim": dim}


def _index_check(d: Any) -> tuple:
    size = d(st.integers(1, 6))
    index = d(hnp.arrays(np.int64, d(shapes()), elements=st.integers(0, size - 1)))
    return (index,), {"size": size, "what": "test: index"}


def _scatter_add(d: Any) -> tuple:
    (x, index), params = _gather(d)
    src_shape = tuple(s + d(st.integers(0, 1)) for s in index.shape)
    return (x, index, floats(d, src_shape)), params


def _gather_ref(x: np.ndarray, index: np.ndarray, *, dim: int) -> np.ndarray:
    out = np.empty(index.shape, x.dtype)
    for pos in np.ndindex(*index.shape):
        src = list(pos)
        src[dim] = index[pos]
        out[pos] = x[tuple(src)]
    return out


def _scatter_add_ref(x: np.ndarray, index: np.ndarray, src: np.ndarray, *, dim: int):
    out = x.copy()
    for pos in np.ndindex(*index.shape):
        dst = list(pos)
        dst[dim] = index[pos]
        out[tuple(dst)] += src[pos]
    return out


def _window(d: Any, max_k: int = 3) -> dict:
    """Kernel, stride, padding and dilation of a sliding window (odd and uneven on purpose)."""
    kernel = (d(st.integers(1, max_k)), d(st.integers(1, max_k)))
    return {
        "kernel": kernel,
        "stride": (d(st.integers(1, 3)), d(st.integers(1, 2))),
        "padding": (d(st.integers(0, kernel[0] // 2)), d(st.integers(0, kernel[1] // 2))),
        "dilation": (d(st.integers(1, 2)), d(st.integers(1, 2))),
    }


def _image(d: Any, params: dict, channels: int, values: Any = floats) -> np.ndarray:
    """(N, C, H, W) input big enough for the window."""
    span = [params["dilation"][i] * (params["kernel"][i] - 1) + 1 for i in range(2)]
    h, w = (max(span[i] - 2 * params["padding"][i], 1) + d(st.integers(0, 3)) for i in range(2))
    return values(d, (d(st.integers(1, 2)), channels, h, w))


def _positions(shape: tuple, p: dict) -> tuple:
    return tuple(
        (shape[2 + i] + 2 * p["padding"][i] - p["dilation"][i] * (p["kernel"][i] - 1) - 1)
        // p["stride"][i]
        + 1
        for i in range(2)
    )


def _padded(x: np.ndarray, p: dict, value: float = 0.0) -> np.ndarray:
    (ph, pw) = p["padding"]
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


def _unfold_ref(x: np.ndarray, *, kernel, stride, padding, dilation, pad_value=0.0):
    p = {"kernel": kernel, "stride": stride, "padding": padding, "dilation": dilation}
    xp = _padded(x, p, pad_value)
    n, c = x.shape[:2]
    oh, ow = _positions(x.shape, p)
    out = np.empty((c, kernel[0], kernel[1], n, oh, ow), x.dtype)
    for ci, i, j, b, r, q in np.ndindex(*out.shape):
        out[ci, i, j, b, r, q] = xp[
            b, ci, r * stride[0] + i * dilation[0], q * stride[1] + j * dilation[1]
        ]
    return out


def _fold_ref(cols: np.ndarray, *, size, kernel, stride, padding, dilation):
    c, kh, kw, n, oh, ow = cols.shape
    out = np.zeros((n, c, size[0] + 2 * padding[0], size[1] + 2 * padding[1]), cols.dtype)
    for ci, i, j, b, r, q in np.ndindex(*cols.shape):
        out[b, ci, r * stride[0] + i * dilation[0], q * stride[1] + j * dilation[1]] += cols[
            ci, i, j, b, r, q
        ]
    return out[:, :, padding[0] : padding[0] + size[0], padding[1] : padding[1] + size[1]]


def _unfold(d: Any) -> tuple:
    params = _window(d)
    return (_image(d, params, d(st.integers(1, 3))),), params


def _fold(d: Any) -> tuple:
    params = _window(d)
    x = _image(d, params, d(st.integers(1, 3)))
    oh, ow = _positions(x.shape, params)
    cols = floats(d, (x.shape[1], *params["kernel"], x.shape[0], oh, ow))
    return (cols,), dict(params, size=tuple(x.shape[2:]))


def _layer_norm(d: Any, gradient: bool = False) -> tuple:
    shape = d(shapes(min_dims=1, max_dims=3, min_side=1))
    n = d(st.integers(1, len(shape)))
    norm = shape[len(shape) - n :]
    x = distinct(d, shape)  # rows of distinct values: a variance well away from 0
    w = floats(d, norm, 0.5, 2.0) if d(st.booleans()) else 1.0
    if gradient:
        return (floats(d, shape), x, w), {"n": n, "eps": 1e-5}
    b = floats(d, norm) if d(st.booleans()) else 0.0
    return (x, w, b), {"n": n, "eps": 1e-5}


def _ln_parts(x: np.ndarray, n: int, eps: float) -> tuple:
    dims = tuple(range(x.ndim - n, x.ndim))
    centered = x - x.mean(axis=dims, keepdims=True)
    rstd = 1 / np.sqrt((centered**2).mean(axis=dims, keepdims=True) + eps)
    return dims, centered * rstd, rstd


def _layer_norm_ref(x: np.ndarray, w: Any, b: Any, *, n: int, eps: float) -> np.ndarray:
    return _ln_parts(x, n, eps)[1] * w + b


def _layer_norm_grad_ref(g: np.ndarray, x: np.ndarray, w: Any, *, n: int, eps: float):
    dims, xhat, rstd = _ln_parts(x, n, eps)
    gw = g * w
    a = gw.mean(axis=dims, keepdims=True)
    c = (gw * xhat).mean(axis=dims, keepdims=True)
    return rstd * (gw - a - xhat * c)


def _softmax(d: Any, gradient: bool = False) -> tuple:
    shape = d(shapes())
    dim = d(st.integers(0, max(len(shape) - 1, 0)))
    x = floats(d, shape, -4.0, 4.0)
    if gradient:
        return (floats(d, shape), x), {"dim": dim}
    return (x,), {"dim": dim}


def _softmax_ref(x: np.ndarray, *, dim: int) -> np.ndarray:
    axis = dim if x.ndim else None
    e = np.exp(x - np.max(x, axis=axis, keepdims=True)) if x.size else x
    return e / np.sum(e, axis=axis, keepdims=True)


def _log_softmax_grad_ref(g: np.ndarray, y: np.ndarray, *, dim: int) -> np.ndarray:
    return g - np.exp(y) * np.sum(g, axis=dim if y.ndim else None, keepdims=True)


def _softmax_grad_ref(g: np.ndarray, y: np.ndarray, *, dim: int) -> np.ndarray:
    return y * (g - np.sum(g * y, axis=dim if y.ndim else None, keepdims=True))


def _conv(d: Any) -> tuple:
    params = _window(d)
    groups = d(st.sampled_from([1, 1, 2]))
    x = _image(d, params, groups * d(st.integers(1, 2)))
    w = floats(d, (groups * d(st.integers(1, 2)), x.shape[1] // groups, *params.pop("kernel")))
    return (x, w), dict(params, groups=groups)


def _conv_ref(x: np.ndarray, w: np.ndarray, *, stride, padding, dilation, groups):
    p = {"kernel": w.shape[2:], "stride": stride, "padding": padding, "dilation": dilation}
    xp = _padded(x, p)
    n, o = x.shape[0], w.shape[0]
    oh, ow = _positions(x.shape, p)
    cg, og = w.shape[1], o // groups
    out = np.zeros((n, o, oh, ow), x.dtype)
    for b, oc, r, q in np.ndindex(*out.shape):
        c0 = (oc // og) * cg
        for ci, i, j in np.ndindex(*w.shape[1:]):
            out[b, oc, r, q] += (
                w[oc, ci, i, j]
                * xp[b, c0 + ci, r * stride[0] + i * dilation[0], q * stride[1] + j * dilation[1]]
            )
    return out


def _max_pool(d: Any) -> tuple:
    params = _window(d)
    if params["padding"] != (0, 0):
        # a dilated window can then lie wholly in the padding: its max is -inf (as PyTorch),
        # where finite differences cannot check a gradient
        params["dilation"] = (1, 1)
    return (_image(d, params, d(st.integers(1, 3)), values=distinct),), params


def _max_pool_ref(x: np.ndarray, *, kernel, stride, padding, dilation):
    cols = _unfold_ref(
        x, kernel=kernel, stride=stride, padding=padding, dilation=dilation, pad_value=-np.inf
    )
    return cols.max(axis=(1, 2)).transpose(1, 0, 2, 3)


def _pool_argmax(d: Any) -> tuple:
    # ties, NaN and windows wholly in the padding (dilated) on purpose: the first maximum wins
    params = _window(d)
    values = d(st.sampled_from(["distinct", "ties", "nan"]))
    x = _image(d, params, d(st.integers(1, 3)), values=distinct)
    if values == "ties":
        x = np.round(x)
    elif values == "nan" and x.size:
        x.flat[d(st.integers(0, x.size - 1))] = np.nan
    return (x, _max_pool_ref(x, **params)), params


def _pool_argmax_ref(x: np.ndarray, out: np.ndarray, *, kernel, stride, padding, dilation):
    # the first position of each window, in (i, j) order, holding its maximum (or a NaN when
    # the maximum is NaN), as hi * W + wi; H * W when no position is inside the input
    h, w = x.shape[2:]
    index = np.full(out.shape, h * w, dtype=np.int64)
    for b, ci, r, q in np.ndindex(*out.shape):
        m = out[b, ci, r, q]
        for i, j in np.ndindex(*kernel):
            hi = r * stride[0] + i * dilation[0] - padding[0]
            wi = q * stride[1] + j * dilation[1] - padding[1]
            if 0 <= hi < h and 0 <= wi < w:
                v = x[b, ci, hi, wi]
                if v == m or (np.isnan(m) and np.isnan(v)):
                    index[b, ci, r, q] = hi * w + wi
                    break
    return index


def _matmul(d: Any) -> tuple:
    n, k, m = (d(st.integers(0, 3)) for _ in range(3))
    kind = d(st.sampled_from(["mm", "mv", "vm", "vv", "batched"]))
    if kind == "mm":
        sx, sy = (n, k), (k, m)
    elif kind == "mv":
        sx, sy = (n, k), (k,)
    elif kind == "vm":
        sx, sy = (k,), (k, m)
    elif kind == "vv":
        sx, sy = (k,), (k,)
    else:
        b1, b2 = d(st.sampled_from([((2,), (2,)), ((2,), ()), ((1,), (3,)), ((2, 1), (3,))]))
        sx, sy = b1 + (n, k), b2 + (k, m)
    return (floats(d, sx), floats(d, sy)), {}


def _unindex_ref(g: np.ndarray, *arrays: np.ndarray, shape: tuple, idx: tuple) -> np.ndarray:
    out = np.zeros(shape, g.dtype)
    np.add.at(out, ops.fill_index(idx, arrays), g)
    return out


def _setitem_ref(x: np.ndarray, v: np.ndarray, *arrays: np.ndarray, idx: tuple):
    out = x.copy()
    out[ops.fill_index(idx, arrays)] = v
    return out


def _full(d: Any) -> tuple:
    return (floats(d, d(shapes())),), {"value": 1.5, "shape": d(shapes())}


def _prod_draw(d: Any) -> tuple:
    shape = d(shapes(max_side=3))
    # (tiny non-zero values make out/x ill-conditioned in any implementation: keep them away)
    x = floats(d, shape, -1.5, 1.5, away=0.05)
    # zeros are the hard case for prod's gradient: plant zero, one or two of them
    flat = x.reshape(-1).copy()
    for _ in range(d(st.integers(0, 2))):
        if flat.size:
            flat[d(st.integers(0, flat.size - 1))] = 0.0
    x = flat.reshape(shape)
    ndim = len(shape)
    dims = tuple(sorted(d(st.sets(st.integers(0, max(ndim - 1, 0)), max_size=ndim))))
    return (layout(d, x),), {"dims": dims if ndim else (), "keepdim": d(st.booleans())}


CASES: dict[str, Case] = {
    # arithmetic
    "add": binary_case(np.add),
    "sub": binary_case(np.subtract),
    "mul": binary_case(np.multiply),
    "div": binary_case(np.true_divide, yaway=0.3),
    "neg": unary_case(np.negative),
    "pow": binary_case(np.power, xlo=0.3, xhi=2.0, ylo=-1.5, yhi=2.5, yaway=0.0),
    "remainder": Case(_remainder, np.remainder),
    "maximum": Case(_two_distinct, np.maximum),
    "minimum": Case(_two_distinct, np.minimum),
    "where": Case(_where, np.where),
    "clamp": Case(_clamp, lambda x, *, min, max: np.clip(x, min, max)),
    # comparisons and logic (no gradient)
    "eq": compare_case(np.equal),
    "ne": compare_case(np.not_equal),
    "lt": compare_case(np.less),
    "le": compare_case(np.less_equal),
    "gt": compare_case(np.greater),
    "ge": compare_case(np.greater_equal),
    "logical_and": logic_case(np.logical_and, 2),
    "logical_or": logic_case(np.logical_or, 2),
    "logical_not": logic_case(np.logical_not, 1),
    "isnan": Case(
        lambda d: (
            (
                d(
                    hnp.arrays(
                        np.float64,
                        d(shapes()),
                        elements=st.sampled_from([0.0, np.nan, np.inf, 1.0]),
                    )
                ),
            ),
            {},
        ),
        np.isnan,
        grad=False,
    ),
    "isfinite": Case(
        lambda d: (
            (
                d(
                    hnp.arrays(
                        np.float64,
                        d(shapes()),
                        elements=st.sampled_from([0.0, np.nan, -np.inf, 1.0]),
                    )
                ),
            ),
            {},
        ),
        np.isfinite,
        grad=False,
    ),
    # unary math
    "exp": unary_case(np.exp),
    "log": unary_case(np.log, 0.2, 3.0),
    "log1p": unary_case(np.log1p, -0.7, 3.0),
    "expm1": unary_case(np.expm1),
    "sqrt": unary_case(np.sqrt, 0.2, 3.0),
    "rsqrt": unary_case(lambda x: 1 / np.sqrt(x), 0.2, 3.0),
    "sin": unary_case(np.sin),
    "cos": unary_case(np.cos),
    "tan": unary_case(np.tan, -1.2, 1.2),
    "tanh": unary_case(np.tanh),
    "sigmoid": unary_case(sigmoid_ref, -6, 6),
    "erf": unary_case(scipy.special.erf),
    "relu": unary_case(lambda x: np.maximum(x, 0), away=0.05),
    "gelu": Case(
        lambda d: (
            (floats(d, d(shapes())),),
            {"approximate": d(st.sampled_from(["none", "tanh"]))},
        ),
        gelu_ref,
    ),
    "gelu_grad": Case(
        lambda d: (
            (floats(d, (shape := d(shapes()))), floats(d, shape)),
            {"approximate": d(st.sampled_from(["none", "tanh"]))},
        ),
        gelu_grad_ref,
        grad=False,
    ),
    "silu": unary_case(lambda x: x * sigmoid_ref(x)),
    "abs": unary_case(np.abs, away=0.05),
    "sign": unary_case(np.sign, away=0.05),
    "astype": Case(_astype, lambda x, *, dtype: x.astype(dtype)),
    "copy": unary_case(np.copy),
    # reductions
    "sum": reduce_case("sum", np.sum),
    "mean": reduce_case("mean", np.mean, nonempty=True),
    "logsumexp": reduce_case(
        "logsumexp",
        lambda x, axis, keepdims: (
            x if axis == () else scipy.special.logsumexp(x, axis=axis, keepdims=keepdims)
        ),
        nonempty=True,
    ),
    "amax": reduce_case("amax", np.max, ties=False, nonempty=True),
    "amin": reduce_case("amin", np.min, ties=False, nonempty=True),
    "prod": Case(_prod_draw, lambda x, *, dims, keepdim: np.prod(x, axis=dims, keepdims=keepdim)),
    "argmax": arg_case(np.argmax),
    "argmin": arg_case(np.argmin),
    "argsort": Case(_argsort, _argsort_ref, grad=False),
    "uniform": Case(_uniform, _uniform_ref, grad=False),
    # shapes and indexing
    "reshape": Case(_reshape, lambda x, *, shape: np.reshape(x, shape)),
    "permute": Case(_permute, lambda x, *, dims: np.transpose(x, dims)),
    "expand": Case(_expand, lambda x, *, shape: np.broadcast_to(x, shape)),
    "getitem": Case(_getitem, lambda x, *a, idx: x[ops.fill_index(idx, a)]),
    "unindex": Case(_unindex, _unindex_ref),
    "setitem": Case(_setitem, _setitem_ref),
    "cat": Case(_cat, lambda *xs, dim: np.concatenate(xs, axis=dim)),
    "gather": Case(_gather, _gather_ref),
    "scatter_add": Case(_scatter_add, _scatter_add_ref),
    "index_check": Case(_index_check, lambda x, *, size, what: x, grad=False),
    "full": Case(
        _full, lambda like, *, value, shape: np.full(shape, value, like.dtype), grad=False
    ),
    "matmul": Case(_matmul, np.matmul),
    # convolution and pooling
    "unfold2d": Case(_unfold, _unfold_ref),
    "fold2d": Case(_fold, _fold_ref),
    "conv2d": Case(_conv, _conv_ref),
    "layer_norm": Case(_layer_norm, _layer_norm_ref),
    "softmax": Case(_softmax, _softmax_ref),
    "log_softmax": Case(_softmax, lambda x, *, dim: np.log(_softmax_ref(x, dim=dim))),
    "log_softmax_grad": Case(
        lambda d: _softmax(d, gradient=True), _log_softmax_grad_ref, grad=False
    ),
    "softmax_grad": Case(lambda d: _softmax(d, gradient=True), _softmax_grad_ref, grad=False),
    "layer_norm_grad_x": Case(
        lambda d: _layer_norm(d, gradient=True), _layer_norm_grad_ref, grad=False
    ),
    "max_pool2d": Case(_max_pool, _max_pool_ref),
    "max_pool2d_argmax": Case(_pool_argmax, _pool_argmax_ref, grad=False),
    "const": Case(
        lambda d: ((), {"value": floats(d, d(shapes()))}), lambda *, value: value, grad=False
    ),
}
