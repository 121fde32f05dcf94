"""Shape and indexing primitives: reshape, permute, expand, getitem and its adjoint, setitem,
cat, gather and its adjoint.

Index arrays are op *inputs*, not parameters: `x[i, :, j]` with integer tensors `i`, `j` is
`getitem(x, i, j, idx=(ARRAY, slice(None), ARRAY))`. The parameter keeps the structure of the
index (ints, slices, None, Ellipsis) and a placeholder per array, so a traced program whose
indices are data (labels, sampled rows) still has a fixed structure.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .core import (
    Aval,
    Call,
    defop,
    element_loops,
    numba_dtype,
    result_type,
    shape_error,
    unbroadcast,
)
from .kernels import add_rows
from .lazy_numba import njit  # Numba is imported at the first kernel call


class _ArraySlot:
    """Placeholder for an index array inside an `idx` parameter."""

    def __repr__(self) -> str:
        return "#"

    def __reduce__(self) -> str:
        return "ARRAY"


ARRAY = _ArraySlot()

# `saves` for ops whose trailing inputs are index arrays: the VJP reads those, and only the
# shape of the indexed tensor.
_AFTER_FIRST = tuple(range(1, 33))
_AFTER_SECOND = tuple(range(2, 33))


def fill_index(idx: tuple, arrays: tuple) -> tuple:
    """Put the index arrays back into the index structure."""
    if not arrays:
        return idx
    it = iter(arrays)
    return tuple(next(it) if part is ARRAY else part for part in idx)


def _zero_strided(aval: Any) -> np.ndarray:
    # An array of the right shape that occupies one element: shape arithmetic without data.
    return np.lib.stride_tricks.as_strided(
        np.zeros(1, dtype=aval.dtype), shape=aval.shape, strides=(0,) * len(aval.shape)
    )


# --------------------------------------------------------------------------------------------
# reshape: same elements, new shape. A view when numpy can make one.


def _reshape_abstract(x: Any, *, shape: tuple) -> Aval:
    if int(np.prod(shape, dtype=np.int64)) != int(np.prod(x.shape, dtype=np.int64)):
        raise shape_error("reshape", f"cannot reshape to {tuple(shape)}", x.shape)
    return Aval(shape, x.dtype)


def _reshape_source(e: Any, ins: list, out: str, dims: list) -> list[str]:
    x = e.inputs[0]
    if e.out.ndim == 0:
        return [f"{out} = np.ascontiguousarray({ins[0]}).ravel()[0]"]
    if x.ndim == 0:
        return [f"{out} = np.full(({', '.join(dims)},), {ins[0]})"]
    return [f"{out} = np.ascontiguousarray({ins[0]}).reshape(({', '.join(dims)},))"]


reshape = defop(
    "reshape",
    forward=lambda x, *, shape: np.reshape(x, shape),
    abstract=_reshape_abstract,
    vjp=(lambda g, out, x, *, shape: reshape(g, shape=x.shape),),
    grad_name="ViewBackward0",
    kind="shape",
    call=Call(source=_reshape_source),
)


# --------------------------------------------------------------------------------------------
# permute: reorder dimensions. The VJP permutes back with the inverse permutation.


def _permute_abstract(x: Any, *, dims: tuple) -> Aval:
    if sorted(dims) != list(range(len(x.shape))):
        raise shape_error(
            "permute", f"dims {tuple(dims)} is not a permutation of the tensor's dims", x.shape
        )
    return Aval(tuple(x.shape[d] for d in dims), x.dtype)


def _permute_vjp(g: Any, out: Any, x: Any, *, dims: tuple) -> Any:
    inverse = tuple(int(i) for i in np.argsort(dims))
    return permute(g, dims=inverse)


permute = defop(
    "permute",
    forward=lambda x, *, dims: np.transpose(x, dims),
    abstract=_permute_abstract,
    vjp=(_permute_vjp,),
    grad_name="PermuteBackward0",
    kind="shape",
    call=Call(source=lambda e, ins, out, dims: [_permute_source(ins[0], out, e.params["dims"])]),
)


def _permute_source(x: str, out: str, dims: tuple) -> str:
    """A permuted view in Numba: `.T` for a full reversal, else the same view made from the
    strides. Not `np.transpose(x, dims)`: Numba compiles its implementation for 6 s the first
    time in a process and 0.5-1 s at each use after (`.T` 0.1 s, `as_strided` 0.4 s once)."""
    if tuple(dims) == tuple(reversed(range(len(dims)))):
        return f"{out} = {x}.T"
    shape = "".join(f"{x}.shape[{d}], " for d in dims)
    strides = "".join(f"{x}.strides[{d}], " for d in dims)
    return f"{out} = as_strided({x}, shape=({shape}), strides=({strides}))"


# --------------------------------------------------------------------------------------------
# expand: broadcast to a larger shape without copying. Its VJP is the one `unbroadcast`.


def _expand_abstract(x: Any, *, shape: tuple) -> Aval:
    lead = len(shape) - len(x.shape)
    if lead < 0 or any(d != 1 and d != shape[lead + i] for i, d in enumerate(x.shape)):
        raise shape_error(
            "expand",
            f"cannot expand to {tuple(shape)}: only size-1 dims can grow",
            x.shape,
            fix="Expanded dims must be 1 in the input; use repeat or reshape otherwise",
        )
    return Aval(shape, x.dtype)


expand = defop(
    "expand",
    forward=lambda x, *, shape: np.broadcast_to(x, shape),
    abstract=_expand_abstract,
    vjp=(lambda g, out, x, *, shape: unbroadcast(g, x.shape),),
    grad_name="ExpandBackward0",
    kind="shape",
    lower="{0}",  # in a fused loop: a broadcast read
    cheap=True,
)


# --------------------------------------------------------------------------------------------
# getitem: basic and advanced indexing, numpy (= PyTorch) semantics. The adjoint `unindex`
# scatters a cotangent into zeros, adding where an index repeats.


def _index_abstract(op: str, x: Any, arrays: tuple, idx: tuple) -> tuple:
    probes = []
    for a in arrays:
        if a.dtype.kind == "b":
            raise shape_error(
                op,
                "a boolean mask gives a result whose shape depends on the data",
                x.shape,
                a.shape,
                fix="Under tracing use tg.where(mask, x, 0) instead of x[mask]",
            )
        probes.append(_zero_strided(Aval(a.shape, np.int64)))
    try:
        return _zero_strided(x)[fill_index(idx, tuple(probes))].shape
    except IndexError as e:
        raise IndexError(f"{op}: {e} (tensor shape {tuple(x.shape)})") from None


def _getitem_abstract(x: Any, *arrays: Any, idx: tuple) -> Aval:
    return Aval(_index_abstract("getitem", x, arrays, idx), x.dtype)


def _getitem_name(idx: tuple) -> str:
    # PyTorch names the node after the kind of index: x[0], x[1:3], x[None], x[tensor]
    if any(part is ARRAY for part in idx):
        return "IndexBackward0"
    if any(isinstance(part, (int, np.integer)) for part in idx):
        return "SelectBackward0"
    if any(isinstance(part, slice) for part in idx):
        return "SliceBackward0"
    return "UnsqueezeBackward0" if any(part is None for part in idx) else "AliasBackward0"


# Compiled CPU code runs two forms of indexing (others are Python steps): basic indexing (ints,
# slices, None, Ellipsis: a view, as in numpy) and one integer tensor on dim 0 followed by full
# slices (`weight[idx]`, an embedding's lookup: rows copied by a checked loop). unindex, their
# adjoint, is zeros and an assignment (basic: no element is written twice) or `add_rows`.


def _basic(idx: tuple) -> bool:
    return all(p is None or p is Ellipsis or isinstance(p, (int, np.integer, slice)) for p in idx)


def _rows(idx: tuple, index: Any) -> bool:
    """`x[index]` or `x[index, :, ...]` with an integer tensor `index`."""
    return (
        len(idx) >= 1
        and idx[0] is ARRAY
        and all(p == slice(None) for p in idx[1:])
        and index.dtype.kind in "iu"
    )


def _index_source(idx: tuple) -> str:
    def part(p: Any) -> str:
        if p is None:
            return "None"
        if p is Ellipsis:
            return "..."
        if isinstance(p, slice):
            text = ":".join("" if v is None else str(int(v)) for v in (p.start, p.stop, p.step))
            return text[:-1] if text.endswith(":") else text
        return str(int(p))

    return ", ".join(part(p) for p in idx) + ("," if len(idx) == 1 else "")


def _getitem_applies(e: Any) -> bool:
    x, idx = e.inputs[0], e.params["idx"]
    if x.ndim == 0:
        return False
    if _basic(idx):
        return True
    return len(e.inputs) == 2 and _rows(idx, e.inputs[1]) and e.out.ndim > 0


def _getitem_source(e: Any, ins: list, out: str, dims: list) -> list[str]:
    idx = e.params["idx"]
    if _basic(idx):
        return [f"{out} = {ins[0]}[{_index_source(idx)}]"]
    return [f"{out} = take_rows({ins[0]}, {ins[1]}).reshape(({', '.join(dims)},))"]


def _unindex_applies(e: Any) -> bool:
    idx = e.params["idx"]
    if e.out.ndim == 0:
        return False
    if _basic(idx):
        return True
    return len(e.inputs) == 2 and _rows(idx, e.inputs[1])


def _unindex_source(e: Any, ins: list, out: str, dims: list) -> list[str]:
    idx = e.params["idx"]
    zeros = f"{out} = np.zeros(({', '.join(dims)},), {numba_dtype(e.out.dtype)})"
    if _basic(idx):
        rank = e.inputs[0].ndim
        if rank == 0:  # one element
            return [zeros, f"{out}[{_index_source(idx)}] = {ins[0]}"]
        # into the view, by a loop nest: Numba compiles slice assignment (`out[:, 2:4] = g`)
        # for 3.5-5.5 s per rank, a loop nest in 0.1 s
        return [
            zeros,
            f"{out}_part = {out}[{_index_source(idx)}]",
            *element_loops(f"{out}_part", rank, f"{out}_part[{{at}}] = {ins[0]}[{{at}}]"),
        ]
    return [zeros, f"add_rows({out}, {ins[1]}, {ins[0]})"]


getitem = defop(
    "getitem",
    forward=lambda x, *arrays, idx: x[fill_index(idx, arrays)],
    abstract=_getitem_abstract,
    vjp=(lambda g, out, x, *arrays, idx: unindex(g, *arrays, shape=x.shape, idx=idx),),
    saves=_AFTER_FIRST,
    grad_name=lambda args, params: _getitem_name(params["idx"]),
    kind="index",
    call=Call(applies=_getitem_applies, source=_getitem_source),
)


def _unindex_forward(g: np.ndarray, *arrays: np.ndarray, shape: tuple, idx: tuple) -> np.ndarray:
    out = np.zeros(shape, dtype=g.dtype)
    if _basic(idx):
        out[idx] = g  # basic indexing reaches each element at most once
    elif len(arrays) == 1 and _rows(idx, arrays[0]) and out.ndim > 0:
        add_rows(out, arrays[0], np.asarray(g, dtype=out.dtype))  # np.add.at, 10-50x faster
    else:
        np.add.at(out, fill_index(idx, arrays), g)
    return out


unindex = defop(
    "unindex",
    forward=_unindex_forward,
    abstract=lambda g, *arrays, shape, idx: Aval(shape, g.dtype),
    vjp=(lambda g, out, x, *arrays, shape, idx: getitem(g, *arrays, idx=idx),),
    saves=_AFTER_FIRST,
    grad_name="IndexPutBackward0",
    kind="index",
    call=Call(applies=_unindex_applies, source=_unindex_source),
    new_array=True,
)


# --------------------------------------------------------------------------------------------
# setitem: `out = x` with `out[idx] = v` (functional; Tensor.__setitem__ records it in place).


def _setitem_forward(x: np.ndarray, v: Any, *arrays: np.ndarray, idx: tuple) -> np.ndarray:
    out = np.array(x, copy=True)
    out[fill_index(idx, arrays)] = v
    return out


def _setitem_abstract(x: Any, v: Any, *arrays: Any, idx: tuple) -> Aval:
    target = _index_abstract("setitem", x, arrays, idx)
    vshape = () if not hasattr(v, "shape") else tuple(v.shape)
    # numpy lets the value drop leading size-1 dims; so do we
    trimmed = vshape
    while len(trimmed) > len(target) and trimmed[0] == 1:
        trimmed = trimmed[1:]
    try:
        np.broadcast_shapes(trimmed, target)
        ok = np.broadcast_shapes(trimmed, target) == target
    except ValueError:
        ok = False
    if not ok:
        raise shape_error(
            "setitem",
            f"value of shape {vshape} cannot be assigned to an indexed region of shape {target}",
            x.shape,
            vshape,
        )
    return Aval(x.shape, x.dtype)


def _setitem_vjp_value(g: Any, out: Any, x: Any, v: Any, *arrays: Any, idx: tuple) -> Any:
    region = getitem(g, *arrays, idx=idx)
    vshape = tuple(v.shape)
    lead = len(vshape) - region.ndim
    if lead > 0:  # the value carried extra leading 1s that numpy dropped
        region = reshape(region, shape=(1,) * lead + region.shape)
    return unbroadcast(region, vshape)


setitem = defop(
    "setitem",
    forward=_setitem_forward,
    abstract=_setitem_abstract,
    vjp=(
        lambda g, out, x, v, *arrays, idx: setitem(g, 0.0, *arrays, idx=idx),
        _setitem_vjp_value,
    ),
    saves=_AFTER_SECOND,
    out_dtype=lambda x, v, *arrays, idx: x.dtype,
    grad_name="IndexPutBackward0",
    kind="index",
)


# --------------------------------------------------------------------------------------------
# cat: join along one dim. The VJP of input i is the slice of g that input i filled.


def _cat_abstract(*xs: Any, dim: int) -> Aval:
    first = xs[0].shape
    for x in xs[1:]:
        if len(x.shape) != len(first) or any(
            a != b for i, (a, b) in enumerate(zip(first, x.shape)) if i != dim
        ):
            raise shape_error(
                "cat",
                f"sizes must match except in dim {dim}",
                *(x.shape for x in xs),
            )
    shape = list(first)
    shape[dim] = sum(x.shape[dim] for x in xs)
    return Aval(tuple(shape), result_type(*xs))


def _cat_vjp(g: Any, out: Any, *xs: Any, dim: int, argnum: int) -> Any:
    start = sum(x.shape[dim] for x in xs[:argnum])
    stop = start + xs[argnum].shape[dim]
    idx = (slice(None),) * dim + (slice(start, stop),)
    return getitem(g, idx=idx)


def _cat_source(e: Any, ins: list, out: str, dims: list) -> list[str]:
    """Each input copied into its place by the helper `cat_into` (ops/kernels.py), one call per
    input. Measured on clip_grad_norm_'s cat of a GPT's 29 per-parameter norms: the segment
    holding it compiled in 7.2 s with `np.concatenate` (6.1 s in LLVM), 5.3 s with a copy
    loop per input (LLVM vectorizes each, with aliasing checks), 2.7 s without the cat."""
    dim = e.params["dim"]
    lines = [f"{out} = np.empty(({', '.join(dims)},), {numba_dtype(e.out.dtype)})", f"{out}_at = 0"]
    lines += [f"{out}_at = cat_into({out}, {x}, {out}_at, {dim})" for x in ins]
    return lines


cat = defop(
    "cat",
    forward=lambda *xs, dim: np.concatenate(xs, axis=dim),
    abstract=_cat_abstract,
    vjp=(_cat_vjp,),
    out_dtype=lambda *xs, dim: result_type(*xs),
    grad_name="CatBackward0",
    kind="shape",
    variadic=True,
    call=Call(
        applies=lambda e: e.out.ndim > 0 and all(x.dtype == e.out.dtype for x in e.inputs),
        source=_cat_source,
    ),
    new_array=True,
)


# --------------------------------------------------------------------------------------------
# gather (torch.gather): out[i][j] = x[i][index[i][j]] for dim=1. Index may be smaller than x
# in the other dims. The adjoint `scatter_add` adds a cotangent back at the gathered places.


def _other_dims_prefix(x: np.ndarray, index: np.ndarray, dim: int) -> np.ndarray:
    sl = tuple(slice(0, s) if i != dim else slice(None) for i, s in enumerate(index.shape))
    return x[sl]


def _gather_abstract(x: Any, index: Any, *, dim: int) -> Aval:
    if index.dtype.kind not in "iu":
        raise TypeError(f"gather: index must be an integer tensor, got {index.dtype}")
    if len(index.shape) != len(x.shape) or any(
        i > s for d, (i, s) in enumerate(zip(index.shape, x.shape)) if d != dim
    ):
        raise shape_error(
            "gather",
            f"index must have the input's number of dims and be no larger outside dim {dim}",
            x.shape,
            index.shape,
        )
    return Aval(index.shape, x.dtype)


gather = defop(
    "gather",
    forward=lambda x, index, *, dim: np.take_along_axis(
        _other_dims_prefix(x, index, dim), index, axis=dim
    ),
    abstract=_gather_abstract,
    vjp=(lambda g, out, x, index, *, dim: scatter_add(_zeros(x.shape, g), index, g, dim=dim), None),
    saves=(1,),
    grad_name="GatherBackward0",
    kind="index",
    new_array=True,
)


def _zeros(shape: tuple, like: Any) -> Any:
    # A constant of zeros with the dtype of `like`: (like * 0) would carry NaNs through.
    return expand(full(like, value=0.0, shape=()), shape=shape)


def _scatter_add_forward(x: np.ndarray, index: np.ndarray, src: np.ndarray, *, dim: int):
    if src.dtype != x.dtype:
        raise TypeError("src and input dtypes differ")  # explained by _scatter_add_abstract
    out = np.array(x, copy=True, order="C")
    if index.size == 0:
        return out
    if out.ndim == 0 or out.dtype.kind not in "fiu":
        grids = list(np.indices(index.shape, sparse=True))
        grids[dim] = index
        np.add.at(out, tuple(grids), src[tuple(slice(0, s) for s in index.shape)])
        return out
    size = out.shape[dim]
    lo, hi = int(index.min()), int(index.max())
    if lo < -size or hi >= size:
        raise IndexError(
            f"index {lo if lo < -size else hi} is out of bounds for dim {dim} with size {size}"
        )
    # index and src as (P, K), K along `dim`; `base` the flat position in `out` where each of
    # the P lines starts (the index element's own position outside `dim`)
    strides = [s // out.itemsize for s in out.strides]
    line_shape = index.shape[:dim] + (1,) + index.shape[dim + 1 :]
    base = np.zeros(line_shape, dtype=np.int64)
    for d, grid in enumerate(np.indices(line_shape, sparse=True)):
        if d != dim:
            base = base + grid * strides[d]
    k = index.shape[dim]
    part = src[tuple(slice(0, s) for s in index.shape)]
    _scatter_add_kernel(
        out.reshape(-1),
        np.broadcast_to(base, line_shape).reshape(-1),
        np.ascontiguousarray(np.moveaxis(index, dim, -1)).reshape(-1, k),
        np.ascontiguousarray(np.moveaxis(part, dim, -1)).reshape(-1, k),
        strides[dim],
        size,
    )
    return out


# repeated destinations add up in index order (np.add.at's result, 20-50x faster: max_pool2d's
# gradient scatters through this); negative indices wrap, as numpy's
@njit(cache=True)
def _scatter_add_kernel(out, base, index, values, stride, size):  # noqa: ANN001, ANN202
    for p in range(index.shape[0]):
        start = base[p]
        for k in range(index.shape[1]):
            i = index[p, k]
            out[start + (i + size if i < 0 else i) * stride] += values[p, k]


def _scatter_add_abstract(x: Any, index: Any, src: Any, *, dim: int) -> Aval:
    _gather_abstract(x, index, dim=dim)  # the same rule relates index and x
    if len(src.shape) != len(index.shape) or any(i > s for i, s in zip(index.shape, src.shape)):
        raise shape_error(
            "scatter_add",
            "src must have the index's number of dims and be at least as large in each",
            x.shape,
            index.shape,
            src.shape,
        )
    if src.dtype != x.dtype:
        # as PyTorch: no silent cast of the added values (floats into an integer tensor)
        raise TypeError(
            f"scatter_add: src must have the input's dtype, got {src.dtype} and {x.dtype} "
            f"(shapes {tuple(src.shape)}, {tuple(x.shape)}). Convert one with .to(dtype)"
        )
    return Aval(x.shape, x.dtype)


scatter_add = defop(
    "scatter_add",
    forward=_scatter_add_forward,
    abstract=_scatter_add_abstract,
    vjp=(
        lambda g, out, x, index, src, *, dim: g,
        None,
        lambda g, out, x, index, src, *, dim: _pad_to(gather(g, index, dim=dim), src.shape),
    ),
    saves=(1,),
    grad_name="ScatterAddBackward0",
    kind="index",
    new_array=True,
)


def _pad_to(g: Any, shape: tuple) -> Any:
    """Zero-pad `g` at the end of each dim up to `shape` (src may be larger than index)."""
    if tuple(g.shape) == tuple(shape):
        return g
    return unindex(g, shape=tuple(shape), idx=tuple(slice(0, s) for s in g.shape))


# --------------------------------------------------------------------------------------------
# full: a constant. It takes a tensor only to borrow its dtype, so gradients of constants are
# plain tensors of the right dtype that trace like everything else.

full = defop(
    "full",
    forward=lambda like, *, value, shape: np.full(shape, value, dtype=like.dtype),
    abstract=lambda like, *, value, shape: Aval(shape, like.dtype),
    vjp=(None,),
    kind="creation",
)


# --------------------------------------------------------------------------------------------
# index_check: integer indices passed through unchanged, after checking 0 <= i < size. Compiled
# code that picks with a comparison against the class numbers (nll_loss under tg.jit) reads
# the labels through it, so an out-of-range label is an IndexError there as it is in eager mode.


def _index_check_forward(x: np.ndarray, *, size: int, what: str) -> np.ndarray:
    if x.size:
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi >= size:
            raise IndexError(
                f"{what} {lo if lo < 0 else hi} is out of bounds for size {size} (index shape "
                f"{tuple(x.shape)})"
            )
    return x


def _index_check_abstract(x: Any, *, size: int, what: str) -> Aval:
    if x.dtype.kind not in "iu":
        raise TypeError(f"index_check: indices must be integers, got {x.dtype}")
    return Aval(x.shape, x.dtype)


index_check = defop(
    "index_check",
    forward=_index_check_forward,
    abstract=_index_check_abstract,
    vjp=(None,),
    kind="index",
    call=Call(
        source=lambda e, ins, out, dims: [
            f"{out} = check_index({ins[0]}, {int(e.params['size'])}, {e.params['what']!r})"
        ],
        applies=lambda e: e.out.ndim > 0,
    ),
)


# --------------------------------------------------------------------------------------------
# argsort: the indices that sort x along `dim` (an index primitive: no gradient; sort and topk
# are composites that gather the values with these indices, so their gradient is gather's).
# Always stable (ties keep index order, descending too) and NaN sorts as the largest value, as
# PyTorch's: last when ascending, first when descending. Runs as a numpy step when compiled.


def _argsort_forward(x: np.ndarray, *, dim: int, descending: bool) -> np.ndarray:
    if x.ndim == 0:
        return np.zeros((), dtype=np.int64)
    if not descending:
        return np.argsort(x, axis=dim, kind="stable").astype(np.int64)
    if x.dtype.kind == "f":
        nan = np.isnan(x)
        # lexsort's last key is the primary one: NaN first, then larger values, stable
        order = np.lexsort((-np.where(nan, 0, x), ~nan), axis=dim)
    else:
        order = np.argsort(~x.astype(np.int64), axis=dim, kind="stable")  # ~v reverses order
    return order.astype(np.int64)


def _argsort_abstract(x: Any, *, dim: int, descending: bool) -> Aval:
    if len(x.shape) and not -len(x.shape) <= dim < len(x.shape):
        raise shape_error("argsort", f"dim {dim} is out of range", x.shape)
    return Aval(x.shape, np.dtype(np.int64))


argsort = defop(
    "argsort",
    forward=_argsort_forward,
    abstract=_argsort_abstract,
    vjp=(None,),
    kind="creation",  # a new array, not a view of x (as an "index" op's result would count)
)


# --------------------------------------------------------------------------------------------
# copy: the same values in fresh storage (clone). The cotangent passes through.

copy = defop(
    "copy",
    forward=lambda x: np.array(x, copy=True, order="C"),
    abstract=lambda x: Aval(x.shape, x.dtype),
    vjp=(lambda g, out, x: g,),
    grad_name="CloneBackward0",
    kind="elementwise",
    lower="{0}",
)


# --------------------------------------------------------------------------------------------
# const: an array made inside a traced function (tg.zeros(3), an index list). It enters the tape
# as this equation; its value is the parameter.

const = defop(
    "const",
    forward=lambda *, value: value,
    abstract=lambda *, value: Aval(value.shape, value.dtype),
    vjp=None,
    kind="creation",
)
