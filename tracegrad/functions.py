"""The user-facing functions (`tg.sum`, `tg.softmax`, `x.reshape(...)`) with PyTorch signatures.

Two kinds live here, both built only from ops in the op table:

* wrappers that turn PyTorch-style arguments (`dim=None|int|tuple`, `-1` in shapes, `*sizes`)
  into an op's parameters and check them with errors that name the function and the shapes;
* composites (softmax, log_softmax, var, std, stack, split, narrow, ...). They have no VJP
  of their own: their gradients come from the primitives they are made of, which also means
  they trace, fuse and differentiate to any order for free.
"""

from __future__ import annotations

import builtins
import math
from collections import namedtuple
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import ops
from .ops.core import normalize_dims
from .tensor import Tensor, _as_tensor, _operand

# --------------------------------------------------------------------------------------------
# elementwise


def _unary(op: Any, doc: str) -> Any:
    def fn(input: Any) -> Tensor:  # noqa: A002 - PyTorch's argument name
        return op(_as_tensor(input))

    fn.__name__ = op.name
    fn.__qualname__ = op.name
    fn.__doc__ = doc
    return fn


exp = _unary(ops.exp, "Elementwise e**x.")
log = _unary(ops.log, "Elementwise natural logarithm.")
log1p = _unary(ops.log1p, "Elementwise log(1 + x), accurate for small x.")
expm1 = _unary(ops.expm1, "Elementwise exp(x) - 1, accurate for small x.")
sqrt = _unary(ops.sqrt, "Elementwise square root.")
rsqrt = _unary(ops.rsqrt, "Elementwise 1 / sqrt(x).")
sin = _unary(ops.sin, "Elementwise sine.")
cos = _unary(ops.cos, "Elementwise cosine.")
tan = _unary(ops.tan, "Elementwise tangent.")
tanh = _unary(ops.tanh, "Elementwise hyperbolic tangent.")
sigmoid = _unary(ops.sigmoid, "Elementwise 1 / (1 + exp(-x)), computed stably.")
relu = _unary(ops.relu, "Elementwise max(x, 0); the gradient at 0 is 0.")
silu = _unary(ops.silu, "Elementwise x * sigmoid(x).")
abs = _unary(ops.abs, "Elementwise |x|; the gradient at 0 is 0.")  # noqa: A001
sign = _unary(ops.sign, "Elementwise sign (-1, 0, 1); the gradient is 0.")
neg = _unary(ops.neg, "Elementwise -x.")
erf = _unary(ops.erf, "Elementwise error function.")
isnan = _unary(ops.isnan, "Elementwise test for NaN (bool).")
isfinite = _unary(ops.isfinite, "Elementwise test for finite values (bool).")
logical_not = _unary(ops.logical_not, "Elementwise not (bool).")


def gelu(input: Any, approximate: str = "none") -> Tensor:  # noqa: A002
    """Gaussian error linear unit: x * Phi(x); `approximate="tanh"` uses the tanh form."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return ops.gelu(_as_tensor(input), approximate=approximate)


def square(input: Any) -> Tensor:  # noqa: A002
    x = _as_tensor(input)
    return ops.mul(x, x)


def reciprocal(input: Any) -> Tensor:  # noqa: A002
    return ops.div(1.0, _as_tensor(input))


def _binary(op: Any) -> Any:
    def fn(input: Any, other: Any) -> Tensor:  # noqa: A002
        if not isinstance(input, Tensor) and not isinstance(other, Tensor):
            input = _as_tensor(input)
        return op(_operand(input), _operand(other))

    fn.__name__ = op.name
    fn.__qualname__ = op.name
    return fn


mul = multiply = _binary(ops.mul)
div = divide = true_divide = _binary(ops.div)
pow = _binary(ops.pow)  # noqa: A001
maximum = _binary(ops.maximum)
remainder = _binary(ops.remainder)  # `%`: the divisor's sign, as PyTorch's
minimum = _binary(ops.minimum)
eq = _binary(ops.eq)
ne = _binary(ops.ne)
lt = _binary(ops.lt)
le = _binary(ops.le)
gt = _binary(ops.gt)
ge = _binary(ops.ge)
logical_and = _binary(ops.logical_and)
logical_or = _binary(ops.logical_or)


def add(input: Any, other: Any, alpha: Any = 1) -> Tensor:  # noqa: A002
    """input + alpha * other."""
    other = _operand(other)
    if alpha != 1:
        other = ops.mul(other, alpha)
    return ops.add(_as_tensor(input) if not isinstance(other, Tensor) else _operand(input), other)


def sub(input: Any, other: Any, alpha: Any = 1) -> Tensor:  # noqa: A002
    """input - alpha * other."""
    other = _operand(other)
    if alpha != 1:
        other = ops.mul(other, alpha)
    return ops.sub(_as_tensor(input) if not isinstance(other, Tensor) else _operand(input), other)


subtract = sub


def where(condition: Any, input: Any, other: Any) -> Tensor:  # noqa: A002
    """Elementwise `input if condition else other`, broadcasting all three."""
    cond = _as_tensor(condition)
    if cond.dtype.kind != "b":
        cond = ops.ne(cond, 0)
    if not isinstance(input, Tensor) and not isinstance(other, Tensor):
        input = _as_tensor(input)
    return ops.where(cond, _operand(input), _operand(other))


def clamp(input: Any, min: Any = None, max: Any = None) -> Tensor:  # noqa: A002
    """Limit values to [min, max]; bounds may be numbers or tensors (then it is max/min)."""
    x = _as_tensor(input)
    if min is None and max is None:
        raise ValueError("clamp: at least one of min and max must be given")
    if isinstance(min, Tensor) or isinstance(max, Tensor):
        if min is not None:
            x = ops.maximum(x, _operand(min))
        if max is not None:
            x = ops.minimum(x, _operand(max))
        return x
    return ops.clamp(x, min=min, max=max)


clip = clamp


def matmul(input: Any, other: Any) -> Tensor:  # noqa: A002
    """Matrix product with numpy semantics (1-D operands, broadcast batch dims)."""
    return ops.matmul(_as_tensor(input), _as_tensor(other))


def mm(input: Any, mat2: Any) -> Tensor:  # noqa: A002
    a, b = _as_tensor(input), _as_tensor(mat2)
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"mm: both arguments must be 2-D, got shapes {a.shape} and {b.shape}")
    return ops.matmul(a, b)


def bmm(input: Any, mat2: Any) -> Tensor:  # noqa: A002
    a, b = _as_tensor(input), _as_tensor(mat2)
    if a.ndim != 3 or b.ndim != 3 or a.shape[0] != b.shape[0]:
        raise ValueError(
            f"bmm: both arguments must be 3-D with the same batch size, got {a.shape}, {b.shape}"
        )
    return ops.matmul(a, b)


def dot(input: Any, other: Any) -> Tensor:  # noqa: A002
    a, b = _as_tensor(input), _as_tensor(other)
    if a.ndim != 1 or b.ndim != 1:
        raise ValueError(f"dot: both arguments must be 1-D, got shapes {a.shape} and {b.shape}")
    return ops.matmul(a, b)


# --------------------------------------------------------------------------------------------
# reductions


def sum(input: Any, dim: Any = None, keepdim: bool = False, dtype: Any = None) -> Tensor:  # noqa: A001,A002
    """Sum over `dim` (all dims when None). Integers and bools sum to int64."""
    x = _as_tensor(input)
    if dtype is not None:
        x = x.astype(dtype)
    return ops.sum(x, dims=normalize_dims("sum", dim, x.ndim), keepdim=keepdim)


def mean(input: Any, dim: Any = None, keepdim: bool = False, dtype: Any = None) -> Tensor:  # noqa: A002
    """Mean over `dim` (all dims when None). Floating point inputs only, as PyTorch."""
    x = _as_tensor(input)
    if dtype is not None:
        x = x.astype(dtype)
    return ops.mean(x, dims=normalize_dims("mean", dim, x.ndim), keepdim=keepdim)


def prod(input: Any, dim: Any = None, keepdim: bool = False) -> Tensor:  # noqa: A002
    """Product over `dim` (all dims when None)."""
    x = _as_tensor(input)
    return ops.prod(x, dims=normalize_dims("prod", dim, x.ndim), keepdim=keepdim)


def amax(input: Any, dim: Any = (), keepdim: bool = False) -> Tensor:  # noqa: A002
    x = _as_tensor(input)
    return ops.amax(
        x, dims=normalize_dims("amax", dim if dim != () else None, x.ndim), keepdim=keepdim
    )


def amin(input: Any, dim: Any = (), keepdim: bool = False) -> Tensor:  # noqa: A002
    x = _as_tensor(input)
    return ops.amin(
        x, dims=normalize_dims("amin", dim if dim != () else None, x.ndim), keepdim=keepdim
    )


MaxResult = namedtuple("max", ["values", "indices"])
MinResult = namedtuple("min", ["values", "indices"])


def _extreme(name: str, input: Any, dim: Any, keepdim: bool, other: Any) -> Any:
    x = _as_tensor(input)
    if other is not None:  # tg.max(a, b) is maximum, as in PyTorch
        return (ops.maximum if name == "max" else ops.minimum)(x, _operand(other))
    if isinstance(dim, Tensor):  # tg.max(a, b) with b passed positionally
        return (ops.maximum if name == "max" else ops.minimum)(x, dim)
    if dim is None:
        return (ops.amax if name == "max" else ops.amin)(
            x, dims=tuple(range(x.ndim)), keepdim=False
        )
    if not isinstance(dim, (int, np.integer)):
        raise TypeError(f"{name}: dim must be an int, got {dim!r} (use amax for several dims)")
    (d,) = normalize_dims(name, dim, x.ndim) or (0,)
    indices = (argmax if name == "max" else argmin)(x, dim=d, keepdim=True)
    values = ops.gather(x, indices, dim=d) if x.ndim else x
    if not keepdim and x.ndim:
        values = squeeze(values, d)
        indices = squeeze(indices, d)
    return (MaxResult if name == "max" else MinResult)(values, indices)


def max(input: Any, dim: Any = None, keepdim: bool = False, *, other: Any = None) -> Any:  # noqa: A001,A002
    """`max(x)`: the largest element; `max(x, dim)`: `(values, indices)` along dim;
    `max(x, y)`: elementwise maximum. Ties share the gradient in the full reduction (as
    PyTorch); along a dim the gradient goes to the returned index."""
    return _extreme("max", input, dim, keepdim, other)


def min(input: Any, dim: Any = None, keepdim: bool = False, *, other: Any = None) -> Any:  # noqa: A001,A002
    """As `max`, for the smallest element."""
    return _extreme("min", input, dim, keepdim, other)


def _arg(op: Any, input: Any, dim: Any, keepdim: bool) -> Tensor:
    x = _as_tensor(input)
    if dim is not None:
        (dim,) = normalize_dims(op.name, dim, x.ndim) or (0,)
    return op(x, dim=dim, keepdim=keepdim)


def argmax(input: Any, dim: Any = None, keepdim: bool = False) -> Tensor:  # noqa: A002
    """Index of the largest element (of the flattened tensor when dim is None)."""
    return _arg(ops.argmax, input, dim, keepdim)


def argmin(input: Any, dim: Any = None, keepdim: bool = False) -> Tensor:  # noqa: A002
    return _arg(ops.argmin, input, dim, keepdim)


def _count(shape: tuple, dims: tuple) -> int:
    n = 1
    for d in dims:
        n *= shape[d]
    return n


def var(
    input: Any,  # noqa: A002
    dim: Any = None,
    unbiased: bool | None = None,
    keepdim: bool = False,
    *,
    correction: Any = None,
) -> Tensor:
    """Variance over `dim`; divides by N - correction (correction=1 unless unbiased=False)."""
    x = _as_tensor(input)
    if correction is None:
        correction = 0 if unbiased is False else 1
    dims = normalize_dims("var", dim, x.ndim)
    centered = ops.sub(x, ops.mean(x, dims=dims, keepdim=True))
    total = ops.sum(ops.mul(centered, centered), dims=dims, keepdim=keepdim)
    denom = _count(x.shape, dims) - correction
    with np.errstate(divide="ignore", invalid="ignore"):
        return ops.div(total, float(denom) if denom > 0 else 0.0)


def std(
    input: Any,  # noqa: A002
    dim: Any = None,
    unbiased: bool | None = None,
    keepdim: bool = False,
    *,
    correction: Any = None,
) -> Tensor:
    """Standard deviation: sqrt(var)."""
    return ops.sqrt(var(input, dim, unbiased, keepdim, correction=correction))


def logsumexp(input: Any, dim: Any, keepdim: bool = False) -> Tensor:  # noqa: A002
    """log(sum(exp(x))) over dim, computed stably (the running maximum is subtracted)."""
    x = _as_tensor(input)
    return ops.logsumexp(x, dims=normalize_dims("logsumexp", dim, x.ndim), keepdim=keepdim)


def softmax(input: Any, dim: int, dtype: Any = None) -> Tensor:  # noqa: A002
    """exp(x - logsumexp(x)) along dim: never overflows; one op (a Numba row kernel eagerly,
    its parts under tg.jit, which compile to two passes over x)."""
    x = _as_tensor(input)
    if dtype is not None:
        x = x.astype(dtype)
    dims = normalize_dims("softmax", dim, x.ndim)  # (a 0-d tensor: no dims, softmax 1)
    return ops.softmax(x, dim=dims[0] if dims else 0)


def log_softmax(input: Any, dim: int, dtype: Any = None) -> Tensor:  # noqa: A002
    """x - logsumexp(x) along dim: exact where log(softmax(x)) would underflow to -inf."""
    x = _as_tensor(input)
    if dtype is not None:
        x = x.astype(dtype)
    dims = normalize_dims("log_softmax", dim, x.ndim)  # (a 0-d tensor: no dims, 0)
    return ops.log_softmax(x, dim=dims[0] if dims else 0)


def all(input: Any, dim: Any = None, keepdim: bool = False) -> Tensor:  # noqa: A001,A002
    x = _as_tensor(input)
    zeros = ops.sum(ops.eq(x, 0), dims=normalize_dims("all", dim, x.ndim), keepdim=keepdim)
    return ops.eq(zeros, 0)


def any(input: Any, dim: Any = None, keepdim: bool = False) -> Tensor:  # noqa: A001,A002
    x = _as_tensor(input)
    nonzeros = ops.sum(ops.ne(x, 0), dims=normalize_dims("any", dim, x.ndim), keepdim=keepdim)
    return ops.gt(nonzeros, 0)


# --------------------------------------------------------------------------------------------
# shape


def _sizes(args: tuple) -> tuple:
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        args = tuple(args[0])
    out = []
    for a in args:
        if isinstance(a, Tensor):
            a = a.item()
        if not isinstance(a, (int, np.integer)):
            raise TypeError(f"sizes must be ints, got {a!r} in {args}")
        out.append(int(a))
    return tuple(out)


def _infer_shape(fn: str, shape: tuple, numel: int, have: tuple) -> tuple:
    unknown = [i for i, s in enumerate(shape) if s == -1]
    if len(unknown) > 1:
        raise RuntimeError(f"{fn}: only one dimension can be inferred (-1), got {list(shape)}")
    if builtins.any(s < -1 for s in shape):
        raise RuntimeError(f"{fn}: invalid shape dimension in {list(shape)}")
    known = 1
    for s in shape:
        if s != -1:
            known *= s
    if unknown:
        if known == 0 or numel % known:
            raise RuntimeError(
                f"{fn}: shape '{list(shape)}' is invalid for input of size {numel} (shape {have})"
            )
        shape = tuple(numel // known if s == -1 else s for s in shape)
    elif known != numel:
        raise RuntimeError(
            f"{fn}: shape '{list(shape)}' is invalid for input of size {numel} (shape {have}); "
            "the number of elements must stay the same"
        )
    return shape


def reshape(input: Any, *shape: Any) -> Tensor:  # noqa: A002
    """Same elements, new shape; one size may be -1 (inferred)."""
    x = _as_tensor(input)
    target = _infer_shape("reshape", _sizes(shape), x.numel(), tuple(x.shape))
    if target == x.shape:
        return ops.reshape(x, shape=target) if x.requires_grad else x
    return ops.reshape(x, shape=target)


def view(input: Any, *shape: Any) -> Tensor:  # noqa: A002
    """As reshape (tracegrad does not require contiguity for views)."""
    x = _as_tensor(input)
    return ops.reshape(x, shape=_infer_shape("view", _sizes(shape), x.numel(), tuple(x.shape)))


def flatten(input: Any, start_dim: int = 0, end_dim: int = -1) -> Tensor:  # noqa: A002
    x = _as_tensor(input)
    if x.ndim == 0:
        return ops.reshape(x, shape=(1,))
    start, end = (normalize_dims("flatten", d, x.ndim)[0] for d in (start_dim, end_dim))
    if start > end:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    shape = x.shape[:start] + (_count(x.shape, tuple(range(start, end + 1))),) + x.shape[end + 1 :]
    return ops.reshape(x, shape=shape)


def permute(input: Any, *dims: Any) -> Tensor:  # noqa: A002
    x = _as_tensor(input)
    dims = _sizes(dims)
    if len(dims) != x.ndim:
        raise ValueError(
            f"permute: number of dims {len(dims)} does not match the tensor's {x.ndim} "
            f"(shape {x.shape})"
        )
    norm = tuple(normalize_dims("permute", d, x.ndim)[0] if x.ndim else 0 for d in dims)
    return ops.permute(x, dims=norm)


def transpose(input: Any, dim0: int, dim1: int) -> Tensor:  # noqa: A002
    """Swap two dims."""
    x = _as_tensor(input)
    if x.ndim == 0:
        return x
    (d0,), (d1,) = (
        normalize_dims("transpose", dim0, x.ndim),
        normalize_dims("transpose", dim1, x.ndim),
    )
    perm = list(range(x.ndim))
    perm[d0], perm[d1] = perm[d1], perm[d0]
    return ops.permute(x, dims=tuple(perm))


swapaxes = transpose


def unsqueeze(input: Any, dim: int) -> Tensor:  # noqa: A002
    """Insert a size-1 dim at `dim` (in [-ndim-1, ndim])."""
    x = _as_tensor(input)
    if not -x.ndim - 1 <= dim <= x.ndim:
        raise IndexError(
            f"unsqueeze: dim {dim} is out of range for a tensor with {x.ndim} dims (expected a "
            f"dim in [{-x.ndim - 1}, {x.ndim}])"
        )
    d = dim % (x.ndim + 1)
    return ops.reshape(x, shape=x.shape[:d] + (1,) + x.shape[d:])


def squeeze(input: Any, dim: Any = None) -> Tensor:  # noqa: A002
    """Remove size-1 dims (all of them, or those among `dim`)."""
    x = _as_tensor(input)
    dims = normalize_dims("squeeze", dim, x.ndim)
    shape = tuple(s for i, s in enumerate(x.shape) if not (i in dims and s == 1))
    if shape == x.shape:
        return x
    return ops.reshape(x, shape=shape)


def expand(input: Any, *sizes: Any) -> Tensor:  # noqa: A002
    """Broadcast to `sizes` without copying; -1 keeps a dim's size."""
    x = _as_tensor(input)
    sizes = _sizes(sizes)
    lead = len(sizes) - x.ndim
    if lead < 0:
        raise ValueError(
            f"expand: the number of sizes provided ({len(sizes)}) must be greater or equal to "
            f"the number of dimensions in the tensor ({x.ndim}; shape {x.shape})"
        )
    shape = tuple(x.shape[i - lead] if s == -1 and i >= lead else s for i, s in enumerate(sizes))
    if shape == x.shape:
        return x
    return ops.expand(x, shape=shape)


def broadcast_to(input: Any, shape: Any) -> Tensor:  # noqa: A002
    return expand(input, *_sizes((shape,)))


def cat(tensors: Sequence[Any], dim: int = 0) -> Tensor:
    """Join tensors along an existing dim."""
    ts = [_as_tensor(t) for t in tensors]
    if not ts:
        raise ValueError("cat: expected a non-empty list of Tensors")
    # PyTorch skips 1-D empty tensors (legacy behaviour kept for compatibility)
    nonempty = [t for t in ts if not (t.ndim == 1 and t.shape[0] == 0)] or ts[:1]
    (d,) = normalize_dims("cat", dim, nonempty[0].ndim)
    if len(nonempty) == 1:
        return nonempty[0]
    return ops.cat(*nonempty, dim=d)


concat = concatenate = cat


def stack(tensors: Sequence[Any], dim: int = 0) -> Tensor:
    """Join tensors of equal shape along a new dim."""
    ts = [_as_tensor(t) for t in tensors]
    if not ts:
        raise ValueError("stack: expected a non-empty list of Tensors")
    for t in ts[1:]:
        if t.shape != ts[0].shape:
            raise ValueError(
                f"stack: expects each tensor to be equal size, but got {ts[0].shape} and {t.shape}"
            )
    parts = [unsqueeze(t, dim) for t in ts]
    d = dim % (ts[0].ndim + 1)
    return parts[0] if len(parts) == 1 else ops.cat(*parts, dim=d)


def split(tensor: Any, split_size_or_sections: Any, dim: int = 0) -> tuple:
    """Pieces of `split_size` along dim (the last may be smaller), or of the given sizes."""
    x = _as_tensor(tensor)
    (d,) = normalize_dims("split", dim, x.ndim)
    n = x.shape[d]
    if isinstance(split_size_or_sections, (int, np.integer)):
        size = int(split_size_or_sections)
        if size <= 0:
            raise ValueError(f"split: split_size must be positive, got {size}")
        sizes = [size] * (n // size) + ([n % size] if n % size else [])
        sizes = sizes or [0]
    else:
        sizes = [int(s) for s in split_size_or_sections]
        if builtins.sum(sizes) != n:
            raise ValueError(
                f"split: split sizes {sizes} must sum to the size of dim {dim} ({n}; shape "
                f"{x.shape})"
            )
    out = []
    start = 0
    for s in sizes:
        out.append(ops.getitem(x, idx=(slice(None),) * d + (slice(start, start + s),)))
        start += s
    return tuple(out)


def narrow(input: Any, dim: int, start: Any, length: int) -> Tensor:  # noqa: A002
    """`length` elements of dim from `start` (negative counts from the end), a view as in
    PyTorch (`x[:, start:start + length]` for dim 1)."""
    x = _as_tensor(input)
    if x.ndim == 0:
        raise RuntimeError("narrow() cannot be applied to a 0-dim tensor")
    (d,) = normalize_dims("narrow", dim, x.ndim)
    if isinstance(start, Tensor):
        start = start.item()  # PyTorch accepts a 0-dim integer tensor
    start, length, size = int(start), int(length), x.shape[d]
    if not -size <= start <= size:
        raise IndexError(
            f"narrow: start {start} is out of range for dim {dim} of size {size} (shape "
            f"{tuple(x.shape)}); expected a start in [{-size}, {size}]"
        )
    start = start + size if start < 0 else start
    if length < 0 or start + length > size:
        raise RuntimeError(
            f"narrow: start ({start}) + length ({length}) exceeds dimension size ({size}) of "
            f"dim {dim} (shape {tuple(x.shape)})"
        )
    return ops.getitem(x, idx=(slice(None),) * d + (slice(start, start + length),))


def chunk(input: Any, chunks: int, dim: int = 0) -> tuple:  # noqa: A002
    """Split into `chunks` pieces of size ceil(n / chunks) (fewer if n is small)."""
    x = _as_tensor(input)
    if chunks <= 0:
        raise ValueError(f"chunk: chunks must be positive, got {chunks}")
    (d,) = normalize_dims("chunk", dim, x.ndim)
    size = math.ceil(x.shape[d] / chunks) if x.shape[d] else 1
    return split(x, builtins.max(size, 1), d)


def unbind(input: Any, dim: int = 0) -> tuple:  # noqa: A002
    x = _as_tensor(input)
    (d,) = normalize_dims("unbind", dim, x.ndim)
    return tuple(ops.getitem(x, idx=(slice(None),) * d + (i,)) for i in range(x.shape[d]))


def gather(input: Any, dim: int, index: Any) -> Tensor:  # noqa: A002
    """out[i][j] = input[i][index[i][j]] for dim=1 (torch.gather)."""
    x = _as_tensor(input)
    (d,) = normalize_dims("gather", dim, x.ndim)
    return ops.gather(x, _index_tensor("gather", index), dim=d)


def scatter_add(input: Any, dim: int, index: Any, src: Any) -> Tensor:  # noqa: A002
    """out = input; out[i][index[i][j]] += src[i][j] for dim=1 (torch.scatter_add)."""
    x = _as_tensor(input)
    (d,) = normalize_dims("scatter_add", dim, x.ndim)
    return ops.scatter_add(x, _index_tensor("scatter_add", index), _as_tensor(src), dim=d)


def index_select(input: Any, dim: int, index: Any) -> Tensor:  # noqa: A002
    """Rows (or entries along `dim`) picked by a 1-D integer index."""
    x = _as_tensor(input)
    (d,) = normalize_dims("index_select", dim, x.ndim)
    idx = _index_tensor("index_select", index)
    if idx.ndim > 1:
        raise ValueError(f"index_select: index must be 1-D or 0-D, got shape {idx.shape}")
    if idx.ndim == 0:
        idx = ops.reshape(idx, shape=(1,))
    return ops.getitem(x, idx, idx=(slice(None),) * d + (ops.ARRAY,))


def _index_tensor(fn: str, index: Any) -> Tensor:
    t = _as_tensor(index)
    if t.dtype.kind not in "iu":
        raise TypeError(f"{fn}: index must be an integer tensor, got dtype {t.dtype}")
    return t if t.dtype == np.int64 else t.astype(np.int64)


def clone(input: Any) -> Tensor:  # noqa: A002
    """A copy with its own storage; gradients flow back to the original."""
    return ops.copy(_as_tensor(input))


def detach(input: Any) -> Tensor:  # noqa: A002
    return _as_tensor(input).detach()


def numel(input: Any) -> int:  # noqa: A002
    return _as_tensor(input).numel()


def equal(input: Any, other: Any) -> bool:  # noqa: A002
    """True when both tensors have the same shape and the same values (torch.equal)."""
    a, b = _as_tensor(input), _as_tensor(other)
    return a.shape == b.shape and bool(np.array_equal(a._concrete("equal"), b._concrete("equal")))


def allclose(
    input: Any,
    other: Any,
    rtol: float = 1e-05,
    atol: float = 1e-08,  # noqa: A002
    equal_nan: bool = False,
) -> bool:
    """|input - other| <= atol + rtol * |other| everywhere (torch.allclose)."""
    a, b = _as_tensor(input), _as_tensor(other)
    return bool(
        np.allclose(
            a._concrete("allclose"),
            b._concrete("allclose"),
            rtol=rtol,
            atol=atol,
            equal_nan=equal_nan,
        )
    )


# --------------------------------------------------------------------------------------------
# sorting (composites over the argsort index primitive: values are gathered, so their
# gradient is gather's)

SortResult = namedtuple("sort", ["values", "indices"])
TopkResult = namedtuple("topk", ["values", "indices"])


def _sort_dim(fn: str, x: Tensor, dim: int) -> int:
    if x.ndim == 0:
        return 0
    if not -x.ndim <= dim < x.ndim:
        raise IndexError(
            f"{fn}: Dimension out of range (expected to be in range of [{-x.ndim}, "
            f"{x.ndim - 1}], but got {dim})"
        )
    return dim % x.ndim


def argsort(input: Any, dim: int = -1, descending: bool = False, stable: bool = False) -> Tensor:  # noqa: A002
    """The indices that sort `input` along `dim` (stable: ties keep their order; NaN counts as
    the largest value)."""
    x = _as_tensor(input)
    return ops.argsort(x, dim=_sort_dim("argsort", x, dim), descending=bool(descending))


def sort(input: Any, dim: int = -1, descending: bool = False, stable: bool = False) -> Any:  # noqa: A002
    """(values, indices) of `input` sorted along `dim`; gradients flow to the values."""
    x = _as_tensor(input)
    d = _sort_dim("sort", x, dim)
    indices = ops.argsort(x, dim=d, descending=bool(descending))
    values = ops.gather(x, indices, dim=d) if x.ndim else x
    return SortResult(values, indices)


def topk(
    input: Any,  # noqa: A002
    k: int,
    dim: int = -1,
    largest: bool = True,
    sorted: bool = True,  # noqa: A002 - PyTorch's name
) -> Any:
    """(values, indices) of the k largest (or smallest) elements along `dim`, largest first."""
    x = _as_tensor(input)
    d = _sort_dim("topk", x, dim)
    size = x.shape[d] if x.ndim else 1
    if not 0 <= k <= size:
        raise RuntimeError(
            f"topk: selected index k out of range (k={k}, dimension {d} has size {size})"
        )
    indices = ops.argsort(x, dim=d, descending=bool(largest))
    if x.ndim:
        indices = indices[(slice(None),) * d + (slice(0, k),)]
        values = ops.gather(x, indices, dim=d)
    else:
        values = x
    return TopkResult(values, indices)


# --------------------------------------------------------------------------------------------
# masks and norms (composites)


def masked_fill(input: Any, mask: Any, value: Any) -> Tensor:  # noqa: A002
    """`value` where the bool `mask` (broadcast to `input`) is True, `input` elsewhere; the
    result keeps `input`'s dtype."""
    x = _as_tensor(input)
    m = _as_tensor(mask)
    if m.dtype.kind != "b":
        raise TypeError(
            f"masked_fill only supports boolean masks, but got mask with dtype {m.dtype} "
            "(compare first: x.masked_fill(m != 0, value))"
        )
    if isinstance(value, Tensor) and value.ndim != 0:
        raise ValueError(
            "masked_fill only supports a 0-dimensional value tensor, but got tensor with "
            f"{value.ndim} dimension(s)"
        )
    out = ops.where(m, _operand(value), x)
    return out if out.dtype == x.dtype else ops.astype(out, dtype=x.dtype)


def _triangle(fn: str, input: Any, diagonal: int, lower: bool) -> Tensor:  # noqa: A002
    x = _as_tensor(input)
    if x.ndim < 2:
        raise ValueError(
            f"{fn}: input tensor must have at least 2 dimensions, got shape {tuple(x.shape)}"
        )
    n, m = x.shape[-2:]
    keep = np.tri(n, m, diagonal, dtype=bool)
    if not lower:
        keep = ~np.tri(n, m, diagonal - 1, dtype=bool)
    out = ops.where(_as_tensor(keep), x, 0)
    return out if out.dtype == x.dtype else ops.astype(out, dtype=x.dtype)


def tril(input: Any, diagonal: int = 0) -> Tensor:  # noqa: A002
    """The lower triangle of the last two dims (elements at column <= row + diagonal)."""
    return _triangle("tril", input, diagonal, True)


def triu(input: Any, diagonal: int = 0) -> Tensor:  # noqa: A002
    """The upper triangle of the last two dims (elements at column >= row + diagonal)."""
    return _triangle("triu", input, diagonal, False)


def _safe_root(s: Tensor, p: float) -> Tensor:
    """s ** (1/p) with the gradient 0 where s == 0 (PyTorch's norm at a zero vector). `s` is a
    sum of |x|^p: >= 0, or NaN when x holds one (the norm is then NaN, as PyTorch's)."""
    nonzero = ops.ne(s, 0)
    root = ops.pow(ops.where(nonzero, s, 1), 1.0 / p)
    return ops.where(nonzero, root, 0)


def norm(
    input: Any,  # noqa: A002
    p: Any = "fro",
    dim: Any = None,
    keepdim: bool = False,
    dtype: Any = None,
) -> Tensor:
    """The vector p-norm over `dim` (all elements by default): p = 2 or "fro" (default), 1,
    inf, -inf, 0 (the count of nonzeros) or any other number; the gradient at a zero vector is
    0, as PyTorch's."""
    x = _as_tensor(input)
    if dtype is not None:
        x = ops.astype(x, dtype=np.dtype(dtype))
    if x.dtype.kind != "f":
        raise TypeError(
            f"norm(): input dtype should be floating point, but got {x.dtype} (use x.float())"
        )
    if p == "fro":
        p = 2
    if p == "nuc" or isinstance(p, str):
        raise ValueError(f"norm: p={p!r} is a matrix norm, which tracegrad does not have")
    if p == 0:
        return sum(ops.astype(ops.ne(x, 0), dtype=x.dtype), dim, keepdim)
    if p == 2:  # x * x needs no abs (clip_grad_norm_ calls this once per parameter)
        return _safe_root(sum(ops.mul(x, x), dim, keepdim), 2)
    a = ops.abs(x)
    if p == math.inf:
        return amax(a, dim if dim is not None else (), keepdim)
    if p == -math.inf:
        return amin(a, dim if dim is not None else (), keepdim)
    if p == 1:
        return sum(a, dim, keepdim)
    return _safe_root(sum(ops.pow(a, p), dim, keepdim), p)


# --------------------------------------------------------------------------------------------
# out=: PyTorch's keyword on the functional forms (tg.add(a, b, out=c))


def with_out(fn: Any) -> Any:
    """`fn` taking PyTorch's `out=` keyword: the result is written into `out` (a tensor of a
    dtype the result casts to; resized, with PyTorch's warning, when its shape differs) and
    `out` is returned. As in PyTorch, refused when the result would need a gradient."""

    def wrapper(*args: Any, out: Any = None, **kwargs: Any) -> Any:
        result = fn(*args, **kwargs)
        return result if out is None else _write_out(fn.__name__, result, out)

    wrapper.__name__ = fn.__name__
    wrapper.__qualname__ = fn.__qualname__
    wrapper.__doc__ = fn.__doc__
    wrapper.__wrapped__ = fn
    return wrapper


def _write_out(name: str, result: Any, out: Any) -> Tensor:
    import warnings

    from .autograd.grad_mode import no_grad
    from .autograd.grad_mode import state as grad_state
    from .ops.core import category

    if not isinstance(out, Tensor):
        raise TypeError(f"{name}(): argument 'out' must be Tensor, not {type(out).__name__}")
    if grad_state.enabled and (result.requires_grad or out.requires_grad):
        raise RuntimeError(
            f"{name}(): functions with out=... arguments don't support automatic "
            "differentiation, but one of the arguments requires grad."
        )
    if category(result.dtype) > category(out.dtype):
        raise RuntimeError(
            f"result type {result.dtype} can't be cast to the desired output type {out.dtype}"
        )
    if tuple(out.shape) != tuple(result.shape):
        if out.numel():
            warnings.warn(
                f"An output with one or more elements was resized since it had shape "
                f"{list(out.shape)}, which does not match the required output shape "
                f"{list(result.shape)}. This behavior is deprecated, and in a future PyTorch "
                "release outputs will not be resized unless they have zero elements. You can "
                "explicitly reuse an out tensor t by resizing it, inplace, to zero elements "
                "with t.resize_(0).",
                UserWarning,
                stacklevel=3,
            )
        if type(out._data) is not np.ndarray:
            raise RuntimeError(f"{name}(): out= of another shape cannot be resized here")
        out._data = np.empty(result.shape, dtype=out.dtype)
        out._version[0] += 1
    with no_grad():
        out.copy_(result if result.dtype == out.dtype else ops.astype(result, dtype=out.dtype))
    return out


# the functions of the tg namespace that take out= (Tensor methods keep the plain ones)
OUT_FUNCTIONS = (
    "add sub mul div pow maximum minimum where clamp matmul mm bmm sum mean prod cat stack "
    "exp log log1p expm1 sqrt rsqrt sin cos tan tanh sigmoid abs neg sign erf"
).split()


# every public function defined here (not the names imported into this module)
__all__ = [
    name
    for name, value in list(globals().items())
    if not name.startswith("_")
    and callable(value)
    and getattr(value, "__module__", None) == __name__
] + ["MaxResult", "MinResult", "SortResult", "TopkResult"]
