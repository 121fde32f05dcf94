"""Tensor's math and shape methods: `x.exp()`, `x.sum(dim)`, `x.reshape(2, 3)`, ...

Each is the function of the same name in `tracegrad.functions`, bound as a method, so a
method and the `tg.` function can never disagree.
"""

from __future__ import annotations

from typing import Any

from . import functions as F
from . import ops
from .tensor import Tensor, tracing

_SAME_NAME = (
    "exp log log1p expm1 sqrt rsqrt sin cos tan tanh sigmoid relu silu abs sign neg erf square "
    "reciprocal isnan isfinite logical_not logical_and logical_or add sub mul div pow maximum "
    "minimum eq ne lt le gt ge clamp clip matmul mm bmm dot sum mean prod amax amin max min "
    "argmax argmin var std logsumexp softmax log_softmax all any reshape view flatten permute "
    "transpose swapaxes unsqueeze squeeze expand split chunk narrow unbind gather scatter_add "
    "index_select clone multiply divide true_divide subtract remainder"
).split()

for _name in _SAME_NAME:
    setattr(Tensor, _name, getattr(F, _name))


def _where(self: Tensor, condition: Any, y: Any) -> Tensor:
    """`x.where(condition, y)`: x where condition holds, else y (as PyTorch)."""
    return F.where(condition, self, y)


def _expand_as(self: Tensor, other: Tensor) -> Tensor:
    return F.expand(self, *other.shape)


def _view_as(self: Tensor, other: Tensor) -> Tensor:
    return F.view(self, *other.shape)


def _reshape_as(self: Tensor, other: Tensor) -> Tensor:
    return F.reshape(self, *other.shape)


def _contiguous(self: Tensor) -> Tensor:
    """Self when already C-contiguous, else a contiguous copy (gradients flow through).

    While tracing there is no layout to look at: the result is a copy (which the compiler
    fuses away where it is not needed) that counts as an alias of `self`, since eagerly it may
    be `self` itself: an in-place change through it is refused (TracerError) rather than
    silently not reaching `self`."""
    if tracing.tracer is not None:
        out = ops.copy(self)
        out._base = self._base if self._base is not None else self
        out._view_rec = out._version[1]
        return out
    return self if self._data.flags.c_contiguous else ops.copy(self)


def _t(self: Tensor) -> Tensor:
    """The transpose of a matrix; a 0-d or 1-d tensor is itself."""
    if self.ndim > 2:
        raise ValueError(
            f"t() expects a tensor with <= 2 dimensions, but self is {self.ndim}D "
            "(use x.transpose(dim0, dim1) or x.mT)"
        )
    return F.transpose(self, 0, 1) if self.ndim == 2 else self


_TYPE_NAMES = {
    "float32": "FloatTensor",
    "float64": "DoubleTensor",
    "float16": "HalfTensor",
    "int64": "LongTensor",
    "int32": "IntTensor",
    "int16": "ShortTensor",
    "int8": "CharTensor",
    "uint8": "ByteTensor",
    "bool": "BoolTensor",
}


def _type(self: Tensor, dtype: Any = None) -> Any:
    """No argument: the type name (`"tracegrad.FloatTensor"`, as PyTorch's
    `"torch.FloatTensor"`); a dtype or such a name: this tensor converted to it."""
    if dtype is None:
        return "tracegrad." + _TYPE_NAMES.get(self.dtype.name, self.dtype.name)
    if isinstance(dtype, str):
        name = dtype.rsplit(".", 1)[-1]
        found = [k for k, v in _TYPE_NAMES.items() if v == name]
        if not found:
            raise ValueError(f"type(): invalid type {dtype!r}")
        dtype = found[0]
    return self.astype(dtype)


def _masked_fill_(self: Tensor, mask: Any, value: Any) -> Tensor:
    return self.copy_(F.masked_fill(self, mask, value))


def _T(self: Tensor) -> Tensor:
    return self if self.ndim < 2 else ops.permute(self, dims=tuple(reversed(range(self.ndim))))


def _mT(self: Tensor) -> Tensor:
    if self.ndim < 2:
        raise ValueError(f"mT: tensor must have at least 2 dims, got shape {self.shape}")
    return F.transpose(self, -2, -1)


def _new(fill: Any) -> Any:
    def method(self: Tensor, *size: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
        from . import creation

        return getattr(creation, fill)(
            *size, dtype=dtype or self.dtype, requires_grad=requires_grad
        )

    return method


def _new_tensor(self: Tensor, data: Any, dtype: Any = None, requires_grad: bool = False):
    from . import creation

    return creation.tensor(data, dtype=dtype or self.dtype, requires_grad=requires_grad)


Tensor.where = _where
Tensor.expand_as = _expand_as
Tensor.view_as = _view_as
Tensor.reshape_as = _reshape_as
Tensor.contiguous = _contiguous
Tensor.t = _t
Tensor.type = _type
Tensor.masked_fill = F.masked_fill
Tensor.masked_fill_ = _masked_fill_
Tensor.tril = F.tril
Tensor.triu = F.triu
Tensor.norm = F.norm
Tensor.sort = F.sort
Tensor.argsort = F.argsort
Tensor.topk = F.topk
Tensor.T = property(_T)
Tensor.mT = property(_mT)
Tensor.new_zeros = _new("zeros")
Tensor.new_ones = _new("ones")
Tensor.new_empty = _new("empty")
Tensor.new_tensor = _new_tensor
