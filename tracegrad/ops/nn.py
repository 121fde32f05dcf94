"""Convolution and pooling primitives: `unfold2d`/`fold2d` (im2col and its adjoint), `conv2d`,
`max_pool2d`.

The column layout is channels first, batch inside: `unfold2d(x)` of an (N, C, H, W) input is
(C, kh, kw, N, OH, OW). With it a convolution is ONE matrix product per group,
`w (O, C*kh*kw) @ cols (C*kh*kw, N*OH*OW)`, and so are both of its gradients:

    out   = w  @ cols                 -> (O, N, OH, OW), permuted to (N, O, OH, OW)
    gw    = g  @ cols^T               (g permuted to (O, N*OH*OW))
    gcols = w^T @ g;  gx = fold2d(gcols)

`unfold2d` and `fold2d` are linear and each other's adjoint, so every rule here is written
with tracegrad ops and differentiates again (double backward of a conv works). docs/nn.md
records the measurement behind im2col + BLAS.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import winograd
from .core import Aval, defop, is_scalar, result_type, shape_error, unbroadcast
from .elementwise import add, exp, mul, rsqrt, sub
from .kernels import (
    layer_norm_grad_rows,
    layer_norm_rows,
    log_softmax_grad_rows,
    log_softmax_rows,
    log_softmax_rows_f32,
    softmax_grad_rows,
    softmax_rows,
    softmax_rows_f32,
)
from .lazy_numba import njit  # Numba is imported at the first kernel call
from .linalg import matmul
from .reduce import logsumexp, mean
from .reduce import sum as sum_
from .shape import expand, full, getitem, permute, reshape, scatter_add


def pair(op: str, name: str, v: Any, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints -> a pair, checked (`stride=2` -> (2, 2))."""
    t = (v, v) if isinstance(v, (int, np.integer)) else tuple(v)
    if len(t) != 2 or not all(isinstance(i, (int, np.integer)) for i in t):
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {v!r}")
    if min(t) < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {v!r}")
    return int(t[0]), int(t[1])


def out_size(
    op: str, shape: tuple, kernel: tuple, stride: tuple, padding: tuple, dilation: tuple
) -> tuple[int, int]:
    """Output height and width of a sliding window over the last two dims of `shape`."""
    out = []
    for i in range(2):
        size = shape[-2 + i] + 2 * padding[i]
        span = dilation[i] * (kernel[i] - 1) + 1
        if size < span:
            raise shape_error(
                op,
                f"the window ({kernel[0]}x{kernel[1]}, dilation {dilation}) is larger than the "
                f"padded input ({shape[-2] + 2 * padding[0]}x{shape[-1] + 2 * padding[1]})",
                shape,
                fix="Use a smaller kernel or more padding",
            )
        out.append((size - span) // stride[i] + 1)
    return out[0], out[1]


def _check_4d(op: str, x: Any) -> None:
    if len(x.shape) != 4:
        raise shape_error(
            op,
            f"expected a 4-D (N, C, H, W) input, got {len(x.shape)}-D",
            x.shape,
            fix="Add a batch dim with x.unsqueeze(0)" if len(x.shape) == 3 else "",
        )


# --------------------------------------------------------------------------------------------
# unfold2d / fold2d


def _windows(
    x: np.ndarray, kernel: tuple, stride: tuple, padding: tuple, dilation: tuple, pad_value: float
) -> np.ndarray:
    """A strided view (N, C, kh, kw, OH, OW) of the padded input: no copy."""
    n, c, h, w = x.shape
    if padding != (0, 0):
        xp = np.full((n, c, h + 2 * padding[0], w + 2 * padding[1]), pad_value, dtype=x.dtype)
        xp[:, :, padding[0] : padding[0] + h, padding[1] : padding[1] + w] = x
        x = xp
    oh, ow = out_size("unfold2d", x.shape, kernel, stride, (0, 0), dilation)
    sn, sc, sh, sw = x.strides
    return np.lib.stride_tricks.as_strided(
        x,
        shape=(n, c, kernel[0], kernel[1], oh, ow),
        strides=(sn, sc, sh * dilation[0], sw * dilation[1], sh * stride[0], sw * stride[1]),
        writeable=False,
    )


def _unfold_forward(
    x: np.ndarray,
    *,
    kernel: tuple,
    stride: tuple,
    padding: tuple,
    dilation: tuple,
    pad_value: float = 0.0,
) -> np.ndarray:
    oh, ow = out_size("unfold2d", x.shape, kernel, stride, padding, dilation)
    out = np.empty((x.shape[1], kernel[0], kernel[1], x.shape[0], oh, ow), dtype=x.dtype)
    _unfold_into(
        out,
        x,
        kernel=kernel,
        stride=stride,
        padding=padding,
        dilation=dilation,
        pad_value=pad_value,
    )
    return out


def _unfold_into(
    out: np.ndarray,
    x: np.ndarray,
    *,
    kernel: tuple,
    stride: tuple,
    padding: tuple,
    dilation: tuple,
    pad_value: float = 0.0,
) -> None:
    n, c, h, w = x.shape
    oh, ow = out.shape[4:]
    x = np.ascontiguousarray(x)
    if _long_rows(ow, stride[1]):
        _unfold_kernel(x, out, *stride, *dilation, *padding, out.dtype.type(pad_value))
    else:
        table = _window_table(n, c, h, w, *kernel, oh, ow, *stride, *dilation, *padding)
        _unfold_table_kernel(x, out, table, out.dtype.type(pad_value))


def _long_rows(ow: int, sw: int) -> bool:
    """Whether im2col/col2im go row by row (rows long enough to vectorize) or through a table
    of window positions (narrow outputs: ResNet's 4x4 and 2x2 planes, where the row loops are
    all overhead). Measured at ResNet-18's shapes, batch 16: the table is 1.7-2.4x faster for
    outputs 2-6 wide (8 wide with stride 2) and 1.3-3x slower for 8 wide and up (stride 1)."""
    return ow >= (8 if sw == 1 else 16)


# im2col and col2im as plain loops compiled once by Numba (cached on disk): 1.5-3x faster than
# the numpy versions (a strided copy; kh*kw strided adds) at ResNet's shapes, and serial, so
# they do not compete with BLAS's threads (docs/compiler.md)
@njit(cache=True)
def _unfold_kernel(x, out, sh, sw, dh, dw, ph, pw, pad_value):  # noqa: ANN001, ANN202
    n, c, h, w = x.shape
    _, kh, kw, _, oh, ow = out.shape
    for ci in range(c):
        for i in range(kh):
            for j in range(kw):
                for b in range(n):
                    for r in range(oh):
                        hi = r * sh + i * dh - ph
                        inside = 0 <= hi < h
                        for q in range(ow):
                            wi = q * sw + j * dw - pw
                            if inside and 0 <= wi < w:
                                out[ci, i, j, b, r, q] = x[b, ci, hi, wi]
                            else:
                                out[ci, i, j, b, r, q] = pad_value


@njit(cache=True)
def _fold_kernel(cols, out, sh, sw, dh, dw):  # noqa: ANN001, ANN202
    c, kh, kw, n, oh, ow = cols.shape
    for b in range(n):
        for ci in range(c):
            plane = out[b, ci]
            for i in range(kh):
                for j in range(kw):
                    block = cols[ci, i, j, b]
                    for r in range(oh):
                        # one output row += one column row: through 1-d views, so the adds
                        # vectorize (indexing the 4-d and 6-d arrays element by element was
                        # 4x slower at ResNet's stride-1 shapes)
                        row = plane[r * sh + i * dh]
                        src = block[r]
                        if sw == 1:
                            dst = row[j * dw : j * dw + ow]
                            for q in range(ow):
                                dst[q] += src[q]
                        else:
                            for q in range(ow):
                                row[q * sw + j * dw] += src[q]


@njit(cache=True)
def _window_table(n, c, h, w, kh, kw, oh, ow, sh, sw, dh, dw, ph, pw):  # noqa: ANN001, ANN202
    """(kh * kw, N * OH * OW): where in channel 0 of x each column element of a window offset
    reads (b * C * H * W + hi * W + wi), -1 in the padding; channel ci adds ci * H * W."""
    table = np.empty((kh * kw, n * oh * ow), dtype=np.int64)
    for i in range(kh):
        for j in range(kw):
            m = 0
            for b in range(n):
                for r in range(oh):
                    hi = r * sh + i * dh - ph
                    for q in range(ow):
                        wi = q * sw + j * dw - pw
                        inside = 0 <= hi < h and 0 <= wi < w
                        table[i * kw + j, m] = b * c * h * w + hi * w + wi if inside else -1
                        m += 1
    return table


@njit(cache=True)
def _unfold_table_kernel(x, out, table, pad_value):  # noqa: ANN001, ANN202
    c, hw = x.shape[1], x.shape[2] * x.shape[3]
    source = x.ravel()
    k, m = table.shape
    cols = out.reshape((c, k, m))
    for ci in range(c):
        for t in range(k):
            dst = cols[ci, t]
            at = table[t]
            for e in range(m):
                s = at[e]
                v = source[ci * hw + max(s, 0)]
                dst[e] = v if s >= 0 else pad_value


@njit(cache=True)
def _fold_table_kernel(cols, out, table):  # noqa: ANN001, ANN202
    c, hw = out.shape[1], out.shape[2] * out.shape[3]
    dest = out.reshape(out.size)
    k, m = table.shape
    src = cols.reshape((c, k, m))
    for ci in range(c):
        for t in range(k):
            row = src[ci, t]
            at = table[t]
            for e in range(m):
                s = at[e]
                if s >= 0:
                    dest[ci * hw + s] += row[e]


def _unfold_abstract(
    x: Any, *, kernel: tuple, stride: tuple, padding: tuple, dilation: tuple, pad_value: float = 0.0
) -> Aval:
    _check_4d("unfold2d", x)
    n, c = x.shape[:2]
    oh, ow = out_size("unfold2d", x.shape, kernel, stride, padding, dilation)
    return Aval((c, kernel[0], kernel[1], n, oh, ow), x.dtype)


def _fold_forward(
    cols: np.ndarray, *, size: tuple, kernel: tuple, stride: tuple, padding: tuple, dilation: tuple
) -> np.ndarray:
    c, kh, kw, n, oh, ow = cols.shape
    cols = np.ascontiguousarray(cols)
    if not _long_rows(ow, stride[1]):
        out = np.zeros((n, c) + tuple(size), dtype=cols.dtype)
        table = _window_table(n, c, *size, kh, kw, oh, ow, *stride, *dilation, *padding)
        _fold_table_kernel(cols, out, table)
        return out
    hp, wp = size[0] + 2 * padding[0], size[1] + 2 * padding[1]
    out = np.zeros((n, c, hp, wp), dtype=cols.dtype)
    _fold_kernel(cols, out, *stride, *dilation)
    return out[:, :, padding[0] : padding[0] + size[0], padding[1] : padding[1] + size[1]]


def _fold_abstract(
    cols: Any, *, size: tuple, kernel: tuple, stride: tuple, padding: tuple, dilation: tuple
) -> Aval:
    if len(cols.shape) != 6:
        raise shape_error("fold2d", "expected (C, kh, kw, N, OH, OW) columns", cols.shape)
    c, kh, kw, n, oh, ow = cols.shape
    want = out_size("fold2d", size, kernel, stride, padding, dilation)
    if (kh, kw) != kernel or (oh, ow) != want:
        raise shape_error(
            "fold2d",
            f"columns do not match a {kernel} window over {size} (expected {want} positions)",
            cols.shape,
        )
    return Aval((n, c) + tuple(size), cols.dtype)


unfold2d = defop(
    "unfold2d",
    forward=_unfold_forward,
    forward_into=_unfold_into,
    abstract=_unfold_abstract,
    # padded positions are constants: their cotangent is dropped by fold2d's crop
    vjp=(
        lambda g, out, x, *, kernel, stride, padding, dilation, pad_value=0.0: fold2d(
            g,
            size=tuple(x.shape[2:]),
            kernel=kernel,
            stride=stride,
            padding=padding,
            dilation=dilation,
        ),
    ),
    grad_name="Im2ColBackward0",
    kind="index",
    new_array=True,
)

fold2d = defop(
    "fold2d",
    forward=_fold_forward,
    abstract=_fold_abstract,
    vjp=(
        lambda g, out, cols, *, size, kernel, stride, padding, dilation: unfold2d(
            g, kernel=kernel, stride=stride, padding=padding, dilation=dilation
        ),
    ),
    grad_name="Col2ImBackward0",
    kind="index",
)


# --------------------------------------------------------------------------------------------
# conv2d


def _conv_dtype(x: Any, w: Any) -> np.dtype:
    # as matmul: no silent promotion of a float32 weight to float64 (or the reverse)
    if x.dtype != w.dtype:
        raise TypeError(
            f"conv2d: input and weight must have the same dtype, got {x.dtype} and {w.dtype} "
            f"(shapes {tuple(x.shape)}, {tuple(w.shape)}). Convert one: .float() or .double()"
        )
    return x.dtype


def _conv_check(x: Any, w: Any, groups: int) -> None:
    _check_4d("conv2d", x)
    if len(w.shape) != 4:
        raise shape_error(
            "conv2d",
            "weight must be 4-D (out_channels, in_channels/groups, kh, kw)",
            x.shape,
            w.shape,
        )
    _conv_dtype(x, w)
    c, o = x.shape[1], w.shape[0]
    if c % groups or o % groups or w.shape[1] * groups != c:
        raise shape_error(
            "conv2d",
            f"input has {c} channels, weight expects {w.shape[1]} x groups={groups} "
            f"(and {o} output channels must divide by groups)",
            x.shape,
            w.shape,
            fix="Make in_channels of the layer match the input's dim 1",
        )


def _conv_abstract(
    x: Any, w: Any, *, stride: tuple, padding: tuple, dilation: tuple, groups: int
) -> Aval:
    _conv_check(x, w, groups)
    oh, ow = out_size("conv2d", x.shape, tuple(w.shape[2:]), stride, padding, dilation)
    return Aval((x.shape[0], w.shape[0], oh, ow), x.dtype)


def use_winograd(
    x_shape: tuple, w_shape: tuple, stride: tuple, padding: tuple, dilation: tuple, groups: int
) -> bool:
    """The lowering rule of `conv2d`: Winograd F(2x2, 3x3) (ops/winograd.py) for 3x3 kernels at
    stride 1, no dilation, one group, padding at most 2 (the input gradient is then a stride-1
    convolution too), when the 2x2 output tiles of the whole batch are at least as many as the
    input channels and at least MIN_WINOGRAD_TILES; im2col + one GEMM for everything else.

    Tiles >= channels: Winograd transforms the weights at every call (16 C K values), work that
    only pays when the batched GEMMs (16 x tiles x C x K) are large beside it. Measured at
    ResNet-18's 3x3 layers (`python -m benchmarks.conv2d`, docs/nn.md): faster in the forward
    and the input gradient where tiles >= C (batch 16: 1024 tiles x 64 channels, 256 x 128;
    batch 1: 64 x 64), slower or even where tiles < C (64 x 256, 16 x 512, 16 x 128); the
    whole step at batch 1 was not faster (MIN_WINOGRAD_TILES)."""
    if not winograd.eligible(x_shape, w_shape, stride, dilation, groups):
        return False
    if max(padding) > 2:
        return False
    oh = x_shape[2] + 2 * padding[0] - 2
    ow = x_shape[3] + 2 * padding[1] - 2
    if oh <= 0 or ow <= 0:
        return False
    tiles = x_shape[0] * ((oh + 1) // 2) * ((ow + 1) // 2)
    return tiles >= max(x_shape[1], MIN_WINOGRAD_TILES)


# Below this many tiles a whole training step was not faster with Winograd even where the layer
# alone was (ResNet-18 at batch 1, layer1: 64 tiles; the jitted step shares the forward's im2col
# columns with the weight gradient, which a Winograd forward does not make)
MIN_WINOGRAD_TILES = 256


def _conv_forward(
    x: np.ndarray, w: np.ndarray, *, stride: tuple, padding: tuple, dilation: tuple, groups: int
) -> np.ndarray:
    if use_winograd(x.shape, w.shape, stride, padding, dilation, groups):
        return winograd.conv3x3(x, w, padding)
    return im2col_conv(x, w, stride=stride, padding=padding, dilation=dilation, groups=groups)


def im2col_conv(
    x: np.ndarray, w: np.ndarray, *, stride: tuple, padding: tuple, dilation: tuple, groups: int
) -> np.ndarray:
    """conv2d as im2col + one GEMM (per group): every shape Winograd does not take."""
    o, cg, kh, kw = w.shape
    n = x.shape[0]
    cols = _unfold_forward(x, kernel=(kh, kw), stride=stride, padding=padding, dilation=dilation)
    _, _, _, _, oh, ow = cols.shape
    k = cg * kh * kw
    if groups == 1:
        out = w.reshape(o, k) @ cols.reshape(k, n * oh * ow)
    else:
        out = w.reshape(groups, o // groups, k) @ cols.reshape(groups, k, n * oh * ow)
    return np.ascontiguousarray(out.reshape(o, n, oh, ow).transpose(1, 0, 2, 3))


def _grouped(a: Any, groups: int, rows: int, cols: int) -> Any:
    shape = (rows, cols) if groups == 1 else (groups, rows // groups, cols)
    return reshape(a, shape=shape)


def _mT(a: Any) -> Any:
    return permute(a, dims=tuple(range(a.ndim - 2)) + (a.ndim - 1, a.ndim - 2))


def _conv_vjp_x(
    g: Any, out: Any, x: Any, w: Any, *, stride: tuple, padding: tuple, dilation: tuple, groups: int
) -> Any:
    if use_winograd(tuple(x.shape), tuple(w.shape), stride, padding, dilation, groups):
        # a stride-1 convolution's input gradient is the "full" convolution of the output
        # gradient with the flipped kernels, input and output channels swapped: Winograd too
        back = slice(None, None, -1)
        flipped = getitem(w, idx=(slice(None), slice(None), back, back))
        flipped = permute(flipped, dims=(1, 0, 2, 3))
        return conv2d(
            g,
            flipped,
            stride=(1, 1),
            padding=(2 - padding[0], 2 - padding[1]),
            dilation=(1, 1),
            groups=1,
        )
    o, cg, kh, kw = w.shape
    n, _, oh, ow = g.shape
    c = x.shape[1]
    g_cols = _grouped(permute(g, dims=(1, 0, 2, 3)), groups, o, n * oh * ow)  # (O, N*L)
    w_cols = _grouped(w, groups, o, cg * kh * kw)  # (O, K)
    gcols = matmul(_mT(w_cols), g_cols)  # (K, N*L) per group
    gcols = reshape(gcols, shape=(c, kh, kw, n, oh, ow))
    return fold2d(
        gcols,
        size=tuple(x.shape[2:]),
        kernel=(kh, kw),
        stride=stride,
        padding=padding,
        dilation=dilation,
    )


def _conv_vjp_w(
    g: Any, out: Any, x: Any, w: Any, *, stride: tuple, padding: tuple, dilation: tuple, groups: int
) -> Any:
    o, cg, kh, kw = w.shape
    n, _, oh, ow = g.shape
    cols = unfold2d(x, kernel=(kh, kw), stride=stride, padding=padding, dilation=dilation)
    g_cols = _grouped(permute(g, dims=(1, 0, 2, 3)), groups, o, n * oh * ow)  # (O, N*L)
    x_cols = _grouped(cols, groups, x.shape[1] * kh * kw, n * oh * ow)  # (K, N*L)
    gw = matmul(g_cols, _mT(x_cols))  # (O, K) per group
    return reshape(gw, shape=tuple(w.shape))


conv2d = defop(
    "conv2d",
    forward=_conv_forward,
    abstract=_conv_abstract,
    vjp=(_conv_vjp_x, _conv_vjp_w),
    out_dtype=lambda x, w, **params: _conv_dtype(x, w),
    saves=(0, 1),
    grad_name="ConvolutionBackward0",
    kind="conv",
    new_array=True,
    uses_blas=True,
)


# --------------------------------------------------------------------------------------------
# max_pool2d: forward over strided views (no column copy); the gradient goes to the first
# maximum of each window, as PyTorch's does: found by `max_pool2d_argmax`, scattered by
# `scatter_add` into the input's planes


def _pool_abstract(
    x: Any, *, kernel: tuple, stride: tuple, padding: tuple, dilation: tuple
) -> Aval:
    _check_4d("max_pool2d", x)
    if padding[0] * 2 > kernel[0] or padding[1] * 2 > kernel[1]:
        raise ValueError(
            f"max_pool2d: padding {padding} must be at most half the kernel size {kernel}"
        )
    oh, ow = out_size("max_pool2d", x.shape, kernel, stride, padding, dilation)
    return Aval(tuple(x.shape[:2]) + (oh, ow), x.dtype)


def _max_pool_forward(
    x: np.ndarray, *, kernel: tuple, stride: tuple, padding: tuple, dilation: tuple
) -> np.ndarray:
    win = _windows(x, kernel, stride, padding, dilation, -np.inf)
    out = np.array(win[:, :, 0, 0])
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            if i or j:
                np.maximum(out, win[:, :, i, j], out=out)  # NaN propagates, as in PyTorch
    return out


# the position of each window's first maximum in its input plane (hi * W + wi: PyTorch's
# `indices`), found as the first element equal to the pooled value (the first NaN when that is
# NaN), so the running argmax's mispredicted branches are gone: 3.9 vs 6.7 ms at ResNet-18's
# max-pool (16x64x32x32, 3x3, stride 2). A window wholly in the padding (possible with
# dilation) has no position: H * W.


def _pool_argmax_forward(
    x: np.ndarray, out: np.ndarray, *, kernel: tuple, stride: tuple, padding: tuple, dilation: tuple
) -> np.ndarray:
    index = np.empty(out.shape, dtype=np.int64)
    _pool_argmax_kernel(
        np.ascontiguousarray(x),
        np.ascontiguousarray(out),
        index,
        *kernel,
        *stride,
        *dilation,
        *padding,
    )
    return index


@njit(cache=True)
def _pool_argmax_kernel(x, out, index, kh, kw, sh, sw, dh, dw, ph, pw):  # noqa: ANN001, ANN202
    n, c, h, w = x.shape
    _, _, oh, ow = out.shape
    for b in range(n):
        for ci in range(c):
            plane = x[b, ci]
            maxima = out[b, ci]
            found = index[b, ci]
            for r in range(oh):
                for q in range(ow):
                    m = maxima[r, q]
                    nan = m != m
                    k = h * w
                    for i in range(kh):
                        hi = r * sh + i * dh - ph
                        if 0 <= hi < h:
                            for j in range(kw):
                                wi = q * sw + j * dw - pw
                                if 0 <= wi < w:
                                    v = plane[hi, wi]
                                    if v == m or (nan and v != v):
                                        k = hi * w + wi
                                        break
                            if k != h * w:
                                break
                    found[r, q] = k


def _pool_argmax_abstract(
    x: Any, out: Any, *, kernel: tuple, stride: tuple, padding: tuple, dilation: tuple
) -> Aval:
    _check_4d("max_pool2d_argmax", x)
    oh, ow = out_size("max_pool2d_argmax", x.shape, kernel, stride, padding, dilation)
    if tuple(out.shape) != tuple(x.shape[:2]) + (oh, ow) or out.dtype != x.dtype:
        raise shape_error(
            "max_pool2d_argmax",
            f"the pooled values must be max_pool2d's output for this input ({x.dtype}, "
            f"{tuple(x.shape[:2]) + (oh, ow)}), got {out.dtype}",
            x.shape,
            out.shape,
        )
    return Aval(tuple(out.shape), np.dtype(np.int64))


max_pool2d_argmax = defop(
    "max_pool2d_argmax",
    forward=_pool_argmax_forward,
    abstract=_pool_argmax_abstract,
    vjp=(None, None),  # an index: no gradient
    kind="index",
)


def _has_empty_window(size: tuple, kernel: tuple, stride: tuple, padding: tuple, dilation: tuple):
    """Whether some window lies wholly in the padding (only possible with dilation)."""
    outs = out_size("max_pool2d", (0, 0) + tuple(size), kernel, stride, padding, dilation)
    return any(
        not any(
            0 <= r * stride[a] + i * dilation[a] - padding[a] < size[a] for i in range(kernel[a])
        )
        for a in range(2)
        for r in range(outs[a])
    )


def _max_pool_vjp(
    g: Any, out: Any, x: Any, *, kernel: tuple, stride: tuple, padding: tuple, dilation: tuple
) -> Any:
    n, c, oh, ow = g.shape
    h, w = x.shape[2:]
    window = {"kernel": kernel, "stride": stride, "padding": padding, "dilation": dilation}
    # each window's cotangent goes to its first maximum (PyTorch's choice), added up where
    # windows overlap; one slot past the plane takes those of windows with no input element
    first = max_pool2d_argmax(x, out, **window)
    plane = h * w + int(_has_empty_window((h, w), **window))
    zeros = expand(full(g, value=0.0, shape=()), shape=(n, c, plane))
    lines = (n, c, oh * ow)
    gx = scatter_add(zeros, reshape(first, shape=lines), reshape(g, shape=lines), dim=2)
    if plane > h * w:
        gx = getitem(gx, idx=(slice(None), slice(None), slice(0, h * w)))
    return reshape(gx, shape=(n, c, h, w))


max_pool2d = defop(
    "max_pool2d",
    forward=_max_pool_forward,
    abstract=_pool_abstract,
    vjp=(_max_pool_vjp,),
    saves=(0,),
    saves_out=True,
    grad_name="MaxPool2DWithIndicesBackward0",
    kind="pool",
    new_array=True,
)

__all__ = [
    "unfold2d",
    "fold2d",
    "conv2d",
    "max_pool2d",
    "max_pool2d_argmax",
    "pair",
    "out_size",
]


# --------------------------------------------------------------------------------------------
# layer_norm: PyTorch's native_layer_norm over the last `n` dims, (x - mean) * rsqrt(var +
# eps) * w + b with the biased variance; w and b are arrays of the normalized shape or numbers
# (1.0, 0.0: no affine). Eagerly one Numba pass per row forward and one for the input gradient
# (kernels.py), where the composite took about nine numpy ops forward and twenty backward; under
# tracing and on the GPU it is its decomposition, which fusion compiles into a few loops.


def _ln_rows(x: Any, n: int) -> int:
    m = 1
    for s in x.shape[x.ndim - n :]:
        m *= s
    return m


def _ln_vector(v: Any, m: int, dtype: np.dtype) -> np.ndarray:
    """w or b as a contiguous (m,) array of the computing dtype (a number broadcast)."""
    if isinstance(v, np.ndarray):
        return np.ascontiguousarray(v, dtype=dtype).reshape(m)
    return np.full(m, v, dtype=dtype)


def _ln_abstract(x: Any, w: Any, b: Any, *, n: int, eps: float) -> Aval:
    norm = tuple(x.shape[x.ndim - n :])
    if not 1 <= n <= x.ndim:
        raise shape_error("layer_norm", f"normalizes the last {n} dims", tuple(x.shape))
    for name, v in (("weight", w), ("bias", b)):
        if hasattr(v, "shape") and tuple(v.shape) != norm:
            raise shape_error(
                "layer_norm",
                f"the {name} must have the normalized shape {list(norm)}",
                tuple(x.shape),
                tuple(v.shape),
            )
    dtype = result_type(x, w, b)
    if dtype.kind != "f":
        raise TypeError(f"layer_norm: expected a floating input, got {dtype} (use x.float())")
    return Aval(tuple(x.shape), dtype)


def _ln_forward(x: np.ndarray, w: Any, b: Any, *, n: int, eps: float) -> np.ndarray:
    dtype = result_type(x, w, b)
    m = _ln_rows(x, n)
    rows = np.ascontiguousarray(x, dtype=dtype).reshape(-1, m)
    out = layer_norm_rows(rows, _ln_vector(w, m, dtype), _ln_vector(b, m, dtype), float(eps))
    return out.reshape(x.shape)


def _ln_decompose(x: Any, w: Any, b: Any, *, n: int, eps: float) -> Any:
    dims = tuple(range(x.ndim - n, x.ndim))
    centered = sub(x, mean(x, dims=dims, keepdim=True))
    var = mean(mul(centered, centered), dims=dims, keepdim=True)
    out = mul(centered, rsqrt(add(var, eps)))
    if not (is_scalar(w) and w == 1):
        out = mul(out, w)
    if not (is_scalar(b) and b == 0):
        out = add(out, b)
    return out


def _ln_grad_forward(g: np.ndarray, x: np.ndarray, w: Any, *, n: int, eps: float) -> np.ndarray:
    dtype = result_type(g, x, w)
    m = _ln_rows(x, n)
    gx = layer_norm_grad_rows(
        np.ascontiguousarray(np.broadcast_to(g, x.shape), dtype=dtype).reshape(-1, m),
        np.ascontiguousarray(x, dtype=dtype).reshape(-1, m),
        _ln_vector(w, m, dtype),
        float(eps),
    )
    return gx.reshape(x.shape)


def _ln_grad_decompose(g: Any, x: Any, w: Any, *, n: int, eps: float) -> Any:
    dims = tuple(range(x.ndim - n, x.ndim))
    centered = sub(x, mean(x, dims=dims, keepdim=True))
    rstd = rsqrt(add(mean(mul(centered, centered), dims=dims, keepdim=True), eps))
    xhat = mul(centered, rstd)
    gw = g if is_scalar(w) and w == 1 else mul(g, w)
    a = mean(gw, dims=dims, keepdim=True)
    c = mean(mul(gw, xhat), dims=dims, keepdim=True)
    return mul(rstd, sub(sub(gw, a), mul(xhat, c)))


# the input gradient: a kernel eagerly; differentiated (create_graph=True) through its
# decomposition, which is made of differentiable ops
layer_norm_grad_x = defop(
    "layer_norm_grad_x",
    forward=_ln_grad_forward,
    abstract=lambda g, x, w, *, n, eps: Aval(tuple(x.shape), result_type(g, x, w)),
    out_dtype=lambda g, x, w, *, n, eps: result_type(g, x, w),
    kind="nn",
    decompose=_ln_grad_decompose,
)

layer_norm = defop(
    "layer_norm",
    forward=_ln_forward,
    abstract=_ln_abstract,
    out_dtype=lambda x, w, b, *, n, eps: result_type(x, w, b),
    vjp=(
        lambda g, out, x, w, b, *, n, eps: layer_norm_grad_x(g, x, w, n=n, eps=eps),
        lambda g, out, x, w, b, *, n, eps: unbroadcast(
            mul(g, layer_norm(x, 1.0, 0.0, n=n, eps=eps)), tuple(w.shape)
        ),
        lambda g, out, x, w, b, *, n, eps: unbroadcast(g, tuple(b.shape)),
    ),
    saves=(0, 1),
    grad_name="NativeLayerNormBackward0",
    kind="nn",
    decompose=_ln_decompose,
)


# --------------------------------------------------------------------------------------------
# softmax along one dim: PyTorch's _softmax (grad_fn SoftmaxBackward0). Eagerly a Numba row
# kernel forward and one for the gradient, y * (g - sum(g * y)); traced and on the GPU its
# decomposition exp(x - logsumexp(x)), which fusion compiles into two passes.


def _rows_along(x: np.ndarray, dim: int) -> tuple:
    """x with `dim` last, as C-contiguous (rows, size of dim), and the moved shape."""
    moved = np.moveaxis(x, dim, -1)
    return np.ascontiguousarray(moved).reshape(-1, x.shape[dim]), moved.shape


def _from_rows(out: np.ndarray, shape: tuple, dim: int) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(out.reshape(shape), -1, dim))


def _by_rows(kernel: Any, *arrays: np.ndarray, dim: int) -> np.ndarray:
    """`kernel` (rows, m) -> (rows, m) applied along `dim` of arrays of one shape (the first
    may broadcast to the last's), in the arrays' promoted dtype; a 0-d array is one row."""
    dtype = result_type(*arrays)
    shape = np.shape(arrays[-1])
    if int(np.prod(shape)) == 0:
        return np.empty(shape, dtype)
    full = shape if shape else (1,)
    rows = []
    for a in arrays:
        a = np.broadcast_to(np.asarray(a, dtype=dtype), shape).reshape(full)
        rows_a, moved = _rows_along(a, dim)
        rows.append(rows_a)
    return _from_rows(kernel(*rows), moved, dim).reshape(shape)


def _softmax_forward(x: np.ndarray, *, dim: int) -> np.ndarray:
    return _by_rows(softmax_rows_f32 if x.dtype == np.float32 else softmax_rows, x, dim=dim)


def _softmax_grad_forward(g: np.ndarray, y: np.ndarray, *, dim: int) -> np.ndarray:
    return _by_rows(softmax_grad_rows, g, y, dim=dim)


def _log_softmax_forward(x: np.ndarray, *, dim: int) -> np.ndarray:
    kernel = log_softmax_rows_f32 if x.dtype == np.float32 else log_softmax_rows
    return _by_rows(kernel, x, dim=dim)


def _log_softmax_grad_forward(g: np.ndarray, y: np.ndarray, *, dim: int) -> np.ndarray:
    return _by_rows(log_softmax_grad_rows, g, y, dim=dim)


def _softmax_abstract(x: Any, *, dim: int) -> Aval:
    if x.dtype.kind != "f":
        raise TypeError(f"softmax: expected a floating input, got {x.dtype} (use x.float())")
    if not 0 <= dim < max(x.ndim, 1):
        raise shape_error("softmax", f"dim {dim} is out of range", tuple(x.shape))
    return Aval(tuple(x.shape), x.dtype)


# the gradient: a kernel eagerly; differentiated (create_graph=True) through its decomposition
softmax_grad = defop(
    "softmax_grad",
    forward=_softmax_grad_forward,
    abstract=lambda g, y, *, dim: Aval(tuple(y.shape), result_type(g, y)),
    out_dtype=lambda g, y, *, dim: result_type(g, y),
    kind="nn",
    decompose=lambda g, y, *, dim: mul(
        y, sub(g, sum_(mul(g, y), dims=(dim,) if y.ndim else (), keepdim=True))
    ),
)

softmax = defop(
    "softmax",
    forward=_softmax_forward,
    abstract=_softmax_abstract,
    vjp=(lambda g, out, x, *, dim: softmax_grad(g, out, dim=dim),),
    saves_out=True,
    grad_name="SoftmaxBackward0",
    kind="nn",
    decompose=lambda x, *, dim: exp(
        sub(x, logsumexp(x, dims=(dim,) if x.ndim else (), keepdim=True))
    ),
)


# log_softmax along one dim (PyTorch's _log_softmax, grad_fn LogSoftmaxBackward0): row kernels
# eagerly, x - logsumexp(x) when traced; its gradient g - exp(y) * sum(g)


log_softmax_grad = defop(
    "log_softmax_grad",
    forward=_log_softmax_grad_forward,
    abstract=lambda g, y, *, dim: Aval(tuple(y.shape), result_type(g, y)),
    out_dtype=lambda g, y, *, dim: result_type(g, y),
    kind="nn",
    decompose=lambda g, y, *, dim: sub(
        g, mul(exp(y), sum_(g, dims=(dim,) if y.ndim else (), keepdim=True))
    ),
)

log_softmax = defop(
    "log_softmax",
    forward=_log_softmax_forward,
    abstract=lambda x, *, dim: _softmax_abstract(x, dim=dim),
    vjp=(lambda g, out, x, *, dim: log_softmax_grad(g, out, dim=dim),),
    saves_out=True,
    grad_name="LogSoftmaxBackward0",
    kind="nn",
    decompose=lambda x, *, dim: sub(x, logsumexp(x, dims=(dim,) if x.ndim else (), keepdim=True)),
)
