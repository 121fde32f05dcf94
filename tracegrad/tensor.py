"""Tensor: a numpy array plus autograd state, and `dispatch`, the one place ops are run.

    >>> import tracegrad as tg
    >>> x = tg.tensor(2.0, requires_grad=True)
    >>> y = 2 * x**2 + 1
    >>> y
    tensor(9., grad_fn=<AddBackward0>)
    >>> y.backward()
    >>> x.grad
    tensor(8.)

Every operation on tensors goes through `dispatch(op, args, params)`: it runs the op's numpy
forward, casts to the op's dtype rule, and when grad mode is on and an input requires grad,
attaches a `grad_fn` node for the reverse sweep.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from . import devices as cuda_device
from . import ops
from .autograd.grad_mode import state as _grad_state
from .autograd.node import AccumulateGrad, Node, node_class
from .ops.core import Aval, category, is_scalar, note_blas, result_type
from .ops.device import to_device
from .tape.errors import TracerError, escaped, value_needed
from .tape.ir import Var

_VIEW_KINDS = frozenset(("shape", "index"))


class _TraceSlot(threading.local):
    """The tracer of the trace running in this thread (None in eager mode). Set by
    `tracegrad.trace`; this module only asks it to capture, to make constants and to record
    equations, so the Tensor layer does not depend on the tracing machinery."""

    tracer = None


tracing = _TraceSlot()


class _DeviceHooks:
    """How an op runs when its inputs live on the GPU: set by `runtime/cuda_eager.py` (imported
    with tracegrad), which runs it through the CUDA target. This layer only calls it."""

    run_op: Any = None


device_hooks = _DeviceHooks()


class _EngineHooks:
    """The reverse sweep behind `Tensor.backward`: set by `autograd/engine.py` (imported with
    tracegrad), which needs this layer and so cannot be imported by it."""

    backward: Any = None
    post_accumulate_hooks: Any = None  # a HookTable


engine_hooks = _EngineHooks()


class HookTable:
    """Hooks per tensor, keyed by identity (a tensor's `==` is elementwise, so no
    WeakKeyDictionary); an entry goes when its tensor does."""

    def __init__(self) -> None:
        self._entries: dict[int, tuple[Any, dict]] = {}

    def __bool__(self) -> bool:
        return bool(self._entries)

    def get(self, t: Any) -> dict | None:
        entry = self._entries.get(id(t))
        return entry[1] if entry is not None and entry[0]() is t else None

    def add(self, t: Any, hook_id: int, hook: Any) -> None:
        import weakref

        key = id(t)
        entry = self._entries.get(key)
        if entry is None or entry[0]() is not t:
            entries = self._entries
            entry = (weakref.ref(t, lambda _r: entries.pop(key, None)), {})
            entries[key] = entry
        entry[1][hook_id] = hook

    def remove(self, t: Any, hook_id: int) -> None:
        hooks = self.get(t)
        if hooks is not None:
            hooks.pop(hook_id, None)
            if not hooks:
                del self._entries[id(t)]


class _HookHandle:
    """What `register_*_hook` returns: `remove()` unregisters the hook (PyTorch's
    RemovableHandle)."""

    _next_id = [0]

    def __init__(self, table: HookTable, t: Any, hook: Any) -> None:
        import weakref

        self._table = table
        self._ref = weakref.ref(t)
        self.id = _HookHandle._next_id[0]
        _HookHandle._next_id[0] += 1
        table.add(t, self.id, hook)

    def remove(self) -> None:
        t = self._ref()
        if t is not None:
            self._table.remove(t, self.id)

    def __enter__(self) -> _HookHandle:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()


class Size(tuple):
    """A shape: a tuple of ints that prints as PyTorch's `torch.Size([2, 3])` does, with
    `numel()`. `Tensor.size()` returns one; `Tensor.shape` is a plain tuple."""

    __slots__ = ()

    def numel(self) -> int:
        n = 1
        for s in self:
            n *= s
        return n

    def __repr__(self) -> str:
        return f"tracegrad.Size({list(self)})"

    __str__ = __repr__

    def __getitem__(self, index: Any) -> Any:
        out = tuple.__getitem__(self, index)
        return Size(out) if isinstance(index, slice) else out


class Device:
    """Where a tensor's data lives: `cpu`, or `cuda:0` (the current GPU). Compares equal to its
    name: `t.device == "cpu"`, `t.device == "cuda"`."""

    __slots__ = ("type",)

    def __init__(self, type: str = "cpu") -> None:  # noqa: A002 - PyTorch's name
        self.type = type

    @property
    def index(self) -> int | None:
        return 0 if self.type == "cuda" else None

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Device):
            return self.type == other.type
        return isinstance(other, str) and other in (self.type, str(self))

    def __hash__(self) -> int:
        return hash(self.type)

    def __str__(self) -> str:
        return "cuda:0" if self.type == "cuda" else self.type

    def __repr__(self) -> str:
        if self.type == "cuda":
            return "device(type='cuda', index=0)"
        return f"device(type='{self.type}')"


CPU = Device("cpu")
CUDA = Device("cuda")


def _check_device(device: Any) -> Device:
    """The Device named by `device` ('cpu', 'cuda', 'cuda:0' or a Device), checked to exist."""
    name = str(device)
    if name == "cpu":
        return CPU
    if name in ("cuda", "cuda:0"):
        cuda_device.cuda()  # a clear error when there is no GPU (and no simulator)
        return CUDA
    raise RuntimeError(
        f"tracegrad: unknown device {name!r}; tensors live on 'cpu' or 'cuda' (one GPU: 'cuda:0')"
    )


def _move(data: Any, device: Device) -> Any:
    """`data` on `device` (the same array when it is already there)."""
    if device.type == "cuda":
        return cuda_device.to_device(data)
    return cuda_device.to_host(data)


class Tensor:
    """An n-dimensional array that can record the operations made with it.

    Create tensors with `tg.tensor`, `tg.zeros`, `tg.from_numpy`, ...; see API.md.
    """

    __slots__ = (
        "_data",
        "_requires_grad",
        "_grad",
        "grad_fn",
        "_version",
        "_base",
        "_view_rec",
        "_accumulator",
        "_retains_grad",
        "__weakref__",
    )
    # numpy defers to Tensor's reflected operators (np_array * t -> Tensor), as with PyTorch
    __array_priority__ = 1000

    def __init__(self, data: Any, dtype: Any = None, requires_grad: bool = False) -> None:
        self._init_fields(_to_array(data, dtype))
        if requires_grad:
            self.requires_grad_(True)

    @classmethod
    def _wrap(cls, data: np.ndarray) -> Tensor:
        # internal: wrap an array without copying or checking
        t = object.__new__(cls)
        t._init_fields(data)
        return t

    def _init_fields(self, data: Any) -> None:
        # every field of a fresh tensor (dispatch inlines the same lines: it is the hot path)
        tracer = tracing.tracer
        self._data = data if tracer is None or type(data) is not np.ndarray else tracer.const(data)
        self._requires_grad = False
        self._grad = None
        self.grad_fn = None
        self._version = [0, 0]
        self._base = None
        self._view_rec = 0
        self._accumulator = None
        self._retains_grad = False

    # ----------------------------------------------------------------------------------------
    # attributes

    @property
    def shape(self) -> tuple[int, ...]:
        data = self._data
        # (a device array's shape is a tuple-like object: the simulator's misreads shape[-1])
        return data.shape if type(data) is np.ndarray else tuple(data.shape)

    @property
    def dtype(self) -> np.dtype:
        return self._data.dtype

    @property
    def ndim(self) -> int:
        return self._data.ndim

    @property
    def device(self) -> Device:
        data = self._data
        if type(data) is np.ndarray or type(data) is Var:
            return CPU
        return CUDA

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def _host(self) -> np.ndarray:
        """The data as a host array: the array itself on the CPU, a copy of a CUDA tensor's."""
        data = self._data
        if type(data) is np.ndarray:
            return data
        if type(data) is Var:
            return self._concrete("reading a tensor's values")
        return data.copy_to_host()

    @property
    def data(self) -> Tensor:
        """The same storage, detached from the graph (PyTorch's `.data`)."""
        return self.detach()

    @data.setter
    def data(self, value: Tensor) -> None:
        if tracing.tracer is not None:
            raise TracerError(
                "assigning .data inside tg.jit is not supported; update the tensor in place "
                "under tg.no_grad() (p.copy_(value)) instead"
            )
        self._data = _to_array(value, None)
        self._version[0] += 1

    @property
    def grad(self) -> Tensor | None:
        """The accumulated gradient (None until a backward reaches this leaf)."""
        tracer = tracing.tracer
        if tracer is not None:
            tracer.note_grad_access(self, "read")  # the compiled call depends on it
        return self._grad

    @grad.setter
    def grad(self, value: Tensor | None) -> None:
        tracer = tracing.tracer
        if tracer is not None:
            tracer.note_grad_access(self, "write")  # a jitted function that sets .grad writes state
        self._grad = value

    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, flag: bool) -> None:
        self.requires_grad_(flag)

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    @property
    def _version_count(self) -> int:
        return self._version[0]

    def size(self, dim: int | None = None) -> Any:
        """The shape as a `tg.Size` (a tuple that prints as `tracegrad.Size([2, 3])`, as
        PyTorch's `torch.Size`), or the size of dimension `dim`."""
        if dim is None:
            return Size(self.shape)
        return self.shape[dim]

    def numel(self) -> int:
        return int(self._data.size)

    def dim(self) -> int:
        return self._data.ndim

    def __len__(self) -> int:
        if self._data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    def element_size(self) -> int:
        return self._data.itemsize

    def is_contiguous(self) -> bool:
        if type(self._data) is Var or type(self._data) is not np.ndarray:
            return True  # traced values and CUDA arrays are contiguous
        return bool(self._data.flags.c_contiguous)

    def _concrete(self, what: str) -> np.ndarray:
        """The data as an array; while tracing (or after a trace) there is none."""
        data = self._data
        if type(data) is Var:
            if data.tape is not None and data.tape.done:
                raise escaped(data.aval)
            raise value_needed(what, data.aval)
        return data

    def is_floating_point(self) -> bool:
        return self._data.dtype.kind == "f"

    # ----------------------------------------------------------------------------------------
    # autograd state

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        if self.grad_fn is not None:
            if not requires_grad:
                raise RuntimeError(
                    "you can only change requires_grad flags of leaf variables. If you want to "
                    "use a computed variable in a subgraph that doesn't require differentiation "
                    "use var_no_grad = var.detach()."
                )
            return self
        if requires_grad and self._data.dtype.kind != "f":
            raise RuntimeError(
                f"only Tensors of floating point dtype can require gradients, got {self.dtype} "
                "(convert first: x.float())"
            )
        self._requires_grad = bool(requires_grad)
        return self

    def _get_accumulator(self) -> AccumulateGrad:
        acc = self._accumulator() if self._accumulator is not None else None
        if acc is None:
            import weakref

            acc = AccumulateGrad(self)
            self._accumulator = weakref.ref(acc)
        return acc

    def retain_grad(self) -> None:
        """Keep `.grad` for this non-leaf tensor after backward (leaves always keep it)."""
        if not self._requires_grad:
            raise RuntimeError("can't retain_grad on Tensor that has requires_grad=False")
        if self.grad_fn is None:
            return
        import weakref

        self._retains_grad = True
        self.grad_fn.retained = weakref.ref(self)

    @property
    def retains_grad(self) -> bool:
        return self._retains_grad

    def detach(self) -> Tensor:
        """A tensor sharing this one's data, outside the graph (no grad_fn, no requires_grad)."""
        t = Tensor._wrap(self._data)
        t._version = self._version
        if tracing.tracer is not None:
            # traced values cannot share storage: the alias is a view, so that an in-place
            # change through it is refused instead of silently not reaching this tensor
            t._base = self._base if self._base is not None else self
            t._view_rec = self._version[1]
        return t

    def detach_(self) -> Tensor:
        self.grad_fn = None
        self._requires_grad = False
        return self

    def backward(
        self,
        gradient: Any = None,
        retain_graph: bool | None = None,
        create_graph: bool = False,
        inputs: Any = None,
    ) -> None:
        """Compute the gradient of this tensor with respect to graph leaves and add it to their
        `.grad`. `gradient` is needed unless the tensor has one element."""
        engine_hooks.backward(self, gradient, retain_graph, create_graph, inputs)

    def register_post_accumulate_grad_hook(self, hook: Any) -> Any:
        """Call `hook(self)` each time backward has added into this leaf's `.grad` (PyTorch's
        name; DistributedDataParallel starts its all-reduces from such hooks). Returns a handle
        whose `remove()` unregisters it."""
        if self.grad_fn is not None or not self._requires_grad:
            raise RuntimeError(
                "post accumulate grad hooks can only be registered on leaf tensors that require "
                f"grad (this tensor: shape {tuple(self.shape)}, requires_grad="
                f"{self._requires_grad}, grad_fn={self.grad_fn})"
            )
        return _HookHandle(engine_hooks.post_accumulate_hooks, self, hook)

    def register_hook(self, hook: Any) -> None:
        raise NotImplementedError(
            "Tensor.register_hook is not supported; use tg.autograd.grad or retain_grad()"
        )

    # ----------------------------------------------------------------------------------------
    # conversion

    def numpy(self, *, force: bool = False) -> np.ndarray:
        """The underlying numpy array (shared memory, like PyTorch)."""
        data = self._concrete("Tensor.numpy()")
        if type(data) is not np.ndarray:
            if not force:
                raise TypeError(
                    "can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy "
                    "the tensor to host memory first."
                )
            data = data.copy_to_host()
        if self._requires_grad and not force:
            raise RuntimeError(
                "Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() "
                "instead."
            )
        return data

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        arr = self.numpy()
        if dtype is not None and np.dtype(dtype) != arr.dtype:
            return arr.astype(dtype)
        return np.array(arr, copy=True) if copy else arr

    def item(self) -> Any:
        self._concrete("Tensor.item()")
        if self._data.size != 1:
            raise RuntimeError(
                f"a Tensor with {self._data.size} elements cannot be converted to Scalar "
                f"(shape {tuple(self.shape)}); index one element first, e.g. t[0].item()"
            )
        return self._host().reshape(()).item()

    def tolist(self) -> Any:
        self._concrete("Tensor.tolist()")
        return self._host().tolist()

    def __bool__(self) -> bool:
        self._concrete("bool() (an `if` or `while` on a tensor)")
        if self._data.size != 1:
            raise RuntimeError(
                f"Boolean value of Tensor with more than one value is ambiguous (shape "
                f"{tuple(self.shape)}); use .any() or .all()"
            )
        return bool(self._host().reshape(()))

    def __float__(self) -> float:
        self._concrete("float()")
        return float(self.item())

    def __int__(self) -> int:
        self._concrete("int()")
        return int(self.item())

    def __index__(self) -> int:
        self._concrete("using a tensor as an index or size")
        if self._data.dtype.kind not in "iu" or self._data.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    def __format__(self, spec: str) -> str:
        if self._data.ndim == 0 and spec and type(self._data) is not Var:
            return self.item().__format__(spec)
        return object.__format__(repr(self), spec)

    def __repr__(self) -> str:
        from ._tensor_str import tensor_repr

        if type(self._data) is Var:
            suffix = f", grad_fn=<{self.grad_fn.name()}>" if self.grad_fn is not None else ""
            return f"tensor(<traced {self._data.aval!r}>{suffix})"
        return tensor_repr(self)

    __str__ = __repr__

    def __hash__(self) -> int:
        return id(self)

    def __iter__(self) -> Iterator[Tensor]:
        if self._data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self._data.shape[0]))

    def __deepcopy__(self, memo: dict) -> Tensor:
        if self.grad_fn is not None:
            raise RuntimeError(
                "Only Tensors created explicitly by the user (graph leaves) support the deepcopy "
                "protocol; detach() first"
            )
        t = type(self)._wrap(_copy_data(self._data))
        t._requires_grad = self._requires_grad
        if self._grad is not None:
            t._grad = Tensor._wrap(_copy_data(self._grad._data))
        memo[id(self)] = t
        return t

    # ----------------------------------------------------------------------------------------
    # device and dtype

    def to(self, *args: Any, **kwargs: Any) -> Tensor:
        """`to(device)`, `to(dtype)` or `to(device, dtype)`; returns self when nothing changes."""
        dtype = kwargs.pop("dtype", None)
        device = kwargs.pop("device", None)
        for a in args:
            if isinstance(a, (str, Device)):
                device = a
            elif isinstance(a, Tensor):
                dtype = a.dtype
            else:
                dtype = a
        t = self
        if dtype is not None and np.dtype(dtype) != self.dtype:
            t = t.astype(dtype)
        if device is not None:
            device = _check_device(device)
            if device != t.device:
                t = _to_device_tensor(t, device)
        return t

    def cpu(self) -> Tensor:
        """This tensor on the CPU (itself when it is there); differentiable, as PyTorch's."""
        return self.to("cpu")

    def cuda(self) -> Tensor:
        """This tensor on the GPU (itself when it is there); differentiable, as PyTorch's."""
        return self.to("cuda")

    def astype(self, dtype: Any) -> Tensor:
        dtype = np.dtype(dtype)
        if dtype == self.dtype:
            return self
        return ops.astype(self, dtype=dtype)

    type_as = lambda self, other: self.astype(other.dtype)  # noqa: E731

    def float(self) -> Tensor:
        return self.astype(np.float32)

    def double(self) -> Tensor:
        return self.astype(np.float64)

    def long(self) -> Tensor:
        return self.astype(np.int64)

    def int(self) -> Tensor:
        return self.astype(np.int32)

    def bool(self) -> Tensor:
        return self.astype(np.bool_)

    # ----------------------------------------------------------------------------------------
    # operators (PyTorch order of operands, so `2 * x` is `mul(x, 2)`: MulBackward0 over x)

    def __add__(self, other: Any) -> Tensor:
        return dispatch(ops.add, (self, _operand(other)), _NO_PARAMS)

    def __radd__(self, other: Any) -> Tensor:
        return dispatch(ops.add, (self, _operand(other)), _NO_PARAMS)

    def __sub__(self, other: Any) -> Tensor:
        return dispatch(ops.sub, (self, _operand(other)), _NO_PARAMS)

    def __rsub__(self, other: Any) -> Tensor:
        return dispatch(ops.sub, (_operand(other), self), _NO_PARAMS)

    def __mul__(self, other: Any) -> Tensor:
        return dispatch(ops.mul, (self, _operand(other)), _NO_PARAMS)

    def __rmul__(self, other: Any) -> Tensor:
        return dispatch(ops.mul, (self, _operand(other)), _NO_PARAMS)

    def __truediv__(self, other: Any) -> Tensor:
        return dispatch(ops.div, (self, _operand(other)), _NO_PARAMS)

    def __rtruediv__(self, other: Any) -> Tensor:
        return dispatch(ops.div, (_operand(other), self), _NO_PARAMS)

    def __pow__(self, other: Any) -> Tensor:
        return dispatch(ops.pow, (self, _operand(other)), _NO_PARAMS)

    def __rpow__(self, other: Any) -> Tensor:
        return dispatch(ops.pow, (_operand(other), self), _NO_PARAMS)

    def __mod__(self, other: Any) -> Tensor:
        return dispatch(ops.remainder, (self, _operand(other)), _NO_PARAMS)

    def __rmod__(self, other: Any) -> Tensor:
        return dispatch(ops.remainder, (_operand(other), self), _NO_PARAMS)

    def __matmul__(self, other: Any) -> Tensor:
        return ops.matmul(self, _as_tensor(other))

    def __rmatmul__(self, other: Any) -> Tensor:
        return ops.matmul(_as_tensor(other), self)

    def __neg__(self) -> Tensor:
        return ops.neg(self)

    def __pos__(self) -> Tensor:
        return self

    def __abs__(self) -> Tensor:
        return ops.abs(self)

    def __invert__(self) -> Tensor:
        if self.dtype.kind != "b":
            raise TypeError(f"~ (bitwise not) is only supported on bool tensors, got {self.dtype}")
        return ops.logical_not(self)

    def __and__(self, other: Any) -> Tensor:
        return ops.logical_and(self, _operand(other))

    def __or__(self, other: Any) -> Tensor:
        return ops.logical_or(self, _operand(other))

    __rand__ = __and__
    __ror__ = __or__

    def __eq__(self, other: Any) -> Tensor:  # type: ignore[override]
        return ops.eq(self, _operand(other))

    def __ne__(self, other: Any) -> Tensor:  # type: ignore[override]
        return ops.ne(self, _operand(other))

    def __lt__(self, other: Any) -> Tensor:
        return ops.lt(self, _operand(other))

    def __le__(self, other: Any) -> Tensor:
        return ops.le(self, _operand(other))

    def __gt__(self, other: Any) -> Tensor:
        return ops.gt(self, _operand(other))

    def __ge__(self, other: Any) -> Tensor:
        return ops.ge(self, _operand(other))

    # in place: x += y changes x's storage (and views of it) and bumps its version
    def __iadd__(self, other: Any) -> Tensor:
        return self._inplace(ops.add, _operand(other))

    def __isub__(self, other: Any) -> Tensor:
        return self._inplace(ops.sub, _operand(other))

    def __imul__(self, other: Any) -> Tensor:
        return self._inplace(ops.mul, _operand(other))

    def __itruediv__(self, other: Any) -> Tensor:
        return self._inplace(ops.div, _operand(other))

    def add_(self, other: Any, alpha: Any = 1) -> Tensor:
        other = _operand(other)
        return self._inplace(ops.add, other if _is_one(alpha) else ops.mul(other, alpha))

    def sub_(self, other: Any, alpha: Any = 1) -> Tensor:
        other = _operand(other)
        return self._inplace(ops.sub, other if _is_one(alpha) else ops.mul(other, alpha))

    def mul_(self, other: Any) -> Tensor:
        return self._inplace(ops.mul, _operand(other))

    def div_(self, other: Any) -> Tensor:
        return self._inplace(ops.div, _operand(other))

    def clamp_(self, min: Any = None, max: Any = None) -> Tensor:  # noqa: A002
        return self._inplace(ops.clamp, min=min, max=max)

    def zero_(self) -> Tensor:
        return self.fill_(0)

    def fill_(self, value: Any) -> Tensor:
        return self._inplace(ops.setitem, _operand(value), idx=(Ellipsis,))

    def copy_(self, src: Any) -> Tensor:
        return self._inplace(ops.setitem, _operand(src), idx=(Ellipsis,))

    def addcmul_(self, tensor1: Any, tensor2: Any, value: Any = 1) -> Tensor:
        """self += value * tensor1 * tensor2 (the optimizers' second-moment update)."""
        prod = ops.mul(_operand(tensor1), _operand(tensor2))
        return self._inplace(ops.add, prod if _is_one(value) else ops.mul(prod, value))

    def addcdiv_(self, tensor1: Any, tensor2: Any, value: Any = 1) -> Tensor:
        """self += value * tensor1 / tensor2 (Adam's parameter update)."""
        quot = ops.div(_operand(tensor1), _operand(tensor2))
        return self._inplace(ops.add, quot if _is_one(value) else ops.mul(quot, value))

    def lerp_(self, end: Any, weight: Any) -> Tensor:
        """self += weight * (end - self), rounded as PyTorch's lerp (from the nearer end)."""
        end = _operand(end)
        if is_scalar(weight) and abs(weight) >= 0.5:
            # end - (end - self) * (1 - weight), PyTorch's form for weights >= 0.5
            # 1 - weight in the tensor's precision, as PyTorch computes it
            rest = float(np.asarray(1, self.dtype) - np.asarray(weight, self.dtype))
            return self.copy_(ops.sub(end, ops.mul(ops.sub(end, self), rest)))
        return self._inplace(ops.add, ops.mul(ops.sub(end, self), _operand(weight)))

    def __setitem__(self, index: Any, value: Any) -> None:
        idx, arrays = _parse_index(index)
        tracer = tracing.tracer
        if tracer is not None and _mask_fill(self, idx, arrays, value):
            # x[mask] = v with one bool mask over the leading dims and one value: the shape of
            # the result does not depend on the data (the selection does), so under tracing it
            # is where(mask, v, x) -- PyTorch tutorials write gradients this way
            mask = arrays[0]
            for _ in range(self.ndim - mask.ndim):
                mask = ops.reshape(mask, shape=tuple(mask.shape) + (1,))
            self._inplace(_FILL_WHERE, mask, _operand(value))
            return
        self._inplace(ops.setitem, _operand(value), *arrays, idx=idx)

    def __getitem__(self, index: Any) -> Tensor:
        idx, arrays = _parse_index(index)
        return ops.getitem(self, *arrays, idx=idx)

    def _inplace(self, op: Any, *args: Any, **params: Any) -> Tensor:
        """Run `op(self, *args)` and store the result in self's storage, as this tensor's mode
        does it (`Mode.inplace`)."""
        tracer = tracing.tracer
        if tracer is not None:
            return tracer.mode.inplace(self, op, args, params)
        if type(self._data) is not np.ndarray:
            return DEVICE.inplace(self, op, args, params)
        return EAGER.inplace(self, op, args, params)


def _no_grad_ctx() -> Any:
    from .autograd.grad_mode import no_grad

    return no_grad()


def _copy_data(data: Any) -> Any:
    """A copy of a tensor's data, on the same device."""
    if type(data) is np.ndarray:
        return data.copy()
    return cuda_device.copy(data)


def _to_device_tensor(t: Tensor, device: Device) -> Tensor:
    if tracing.tracer is not None:
        raise TracerError(
            f"Tensor.to({str(device)!r}) inside tg.jit: a jitted function runs where its "
            "target says (tg.jit(f, device='cuda')); move tensors before calling it"
        )
    t._concrete("Tensor.to(device)")
    out = Tensor._wrap(_move(t._data, device))
    if t._requires_grad and _grad_state.enabled:
        _record(to_device, (t,), {"device": device.type, "source": t.device.type}, out)
    return out


def _is_one(value: Any) -> bool:
    return is_scalar(value) and value == 1


def _take_over(t: Tensor, res: Tensor, recorded: bool) -> None:
    """After an in-place op: `t` holds the result's value (bump its version; views of it see a
    recorded change) and, when the change was recorded, the result's node as its grad_fn, whose
    saved output is now `t` itself."""
    t._version[0] += 1
    t._version[1] += 1
    if not recorded:
        return
    node = res.grad_fn
    if node is not None and node.out_version is not None:
        node.out_data = t._data
        node.out_version = t._version
        node.out_saved_version = t._version[0]
    t.grad_fn = node
    t._requires_grad = res._requires_grad


def _leaf_inplace_error(op: Any, t: Tensor) -> RuntimeError:
    return RuntimeError(
        "a leaf Variable that requires grad is being used in an in-place operation. "
        f"({op.name} on a tensor of shape {tuple(t.shape)}.) Wrap the update in "
        "`with tg.no_grad():` (as optimizers do), or work on a clone()."
    )


def _check_inplace_shape(op: Any, result: tuple, target: tuple) -> None:
    if tuple(result) != tuple(target):
        raise RuntimeError(
            f"{op.name}_: output with shape {list(target)} doesn't match the broadcast shape "
            f"{list(result)}; an in-place op cannot change the tensor's shape (assign the "
            "out-of-place result instead)"
        )


def _check_inplace_cast(op: Any, result: np.dtype, target: np.dtype) -> None:
    if category(result) > category(target):
        raise RuntimeError(
            f"{op.name}_: result type {result} can't be cast to the desired output type "
            f"{target}. Convert the tensor first (x = x.float()) or use an out-of-place op."
        )


# --------------------------------------------------------------------------------------------
# conversion of user data


def _to_array(data: Any, dtype: Any) -> np.ndarray:
    """User data -> a fresh array, with PyTorch's default dtypes for Python data."""
    if isinstance(data, Tensor):
        arr = np.array(data._host(), copy=True)
    elif isinstance(data, (np.ndarray, np.generic)):
        arr = np.array(data, copy=True)
    else:
        arr = np.array(_unwrap_nested(data))
        if dtype is None:
            if arr.dtype.kind == "f":
                arr = arr.astype(np.float32)
            elif arr.dtype.kind in "iu":
                arr = arr.astype(np.int64)
            elif arr.dtype.kind not in "b":
                raise TypeError(
                    f"tg.tensor: could not make a tensor from {type(data).__name__} "
                    f"(numpy made dtype {arr.dtype}); pass numbers, nested lists, or arrays"
                )
    if dtype is not None:
        arr = arr.astype(np.dtype(dtype), copy=False)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"tracegrad does not support dtype {arr.dtype}")
    return arr


def _unwrap_nested(data: Any) -> Any:
    if isinstance(data, Tensor):
        return data._data
    if isinstance(data, (list, tuple)):
        return [_unwrap_nested(d) for d in data]
    return data


_NO_PARAMS: dict = {}
_NUMBER_TYPES = (float, int, bool)


def _operand(x: Any) -> Any:
    """A binary operator's other operand: Tensors and numbers as they are, arrays wrapped."""
    if type(x) in _NUMBER_TYPES or isinstance(x, Tensor) or is_scalar(x):
        return x
    if isinstance(x, np.ndarray):
        return Tensor._wrap(x)
    raise TypeError(
        f"unsupported operand type {type(x).__name__!r} for a Tensor operation; use a Tensor, "
        "a number or a numpy array (tg.tensor(...) converts lists)"
    )


def _as_tensor(x: Any) -> Tensor:
    if isinstance(x, Tensor):
        return x
    if is_scalar(x):
        return Tensor(x)
    if isinstance(x, np.ndarray):
        return Tensor._wrap(x)
    return Tensor(x)


def _parse_index(index: Any) -> tuple[tuple, tuple]:
    """A Python index -> (structure with ARRAY placeholders, index arrays as Tensors)."""
    if not isinstance(index, tuple):
        index = (index,)
    parts = []
    arrays = []
    for part in index:
        if part is None or part is Ellipsis or isinstance(part, slice):
            if isinstance(part, slice):
                part = slice(*(_slice_bound(b) for b in (part.start, part.stop, part.step)))
            parts.append(part)
        elif isinstance(part, (bool, np.bool_)):
            arrays.append(Tensor._wrap(np.asarray(part)))
            parts.append(ops.ARRAY)
        elif isinstance(part, (int, np.integer)):
            parts.append(int(part))
        elif isinstance(part, Tensor) and part.ndim == 0 and part.dtype.kind in "iu":
            if type(part._data) is Var:
                # traced: its value is data, so it is an index array (0-d: the same result
                # shape as the integer it holds, as in numpy)
                arrays.append(part if part.dtype == np.int64 else ops.astype(part, dtype=np.int64))
                parts.append(ops.ARRAY)
            else:
                parts.append(int(part.item()))
        else:
            t = part if isinstance(part, Tensor) else Tensor._wrap(np.asarray(part))
            if t.dtype.kind not in "biu":
                raise IndexError(
                    f"tensors used as indices must be long, int or bool tensors, got {t.dtype}"
                )
            if t.dtype.kind == "u" or t.dtype == np.int32:
                t = Tensor._wrap(t._data.astype(np.int64))
            arrays.append(t)
            parts.append(ops.ARRAY)
    return tuple(parts), tuple(arrays)


class _FillWhere:
    """`x[mask] = value` as an op of `_inplace`: where(mask, value, x) in x's dtype."""

    name = "setitem"

    def __call__(self, x: Tensor, mask: Tensor, value: Any) -> Tensor:
        out = ops.where(mask, value, x)
        return out if out.dtype == x.dtype else ops.astype(out, dtype=x.dtype)


_FILL_WHERE = _FillWhere()


def _mask_fill(x: Tensor, idx: tuple, arrays: tuple, value: Any) -> bool:
    """Whether `x[idx] = value` is a fill through one bool mask over x's leading dims."""
    if len(arrays) != 1 or idx != (ops.ARRAY,) or arrays[0].dtype.kind != "b":
        return False
    m = arrays[0]
    if m.ndim == 0 or m.ndim > x.ndim or tuple(m.shape) != tuple(x.shape[: m.ndim]):
        return False
    return is_scalar(value) or (isinstance(value, Tensor) and value.ndim == 0)


def _slice_bound(b: Any) -> Any:
    if isinstance(b, Tensor):
        return int(b.item())
    return b


# --------------------------------------------------------------------------------------------
# dispatch: the one place an op runs on Tensors


# --------------------------------------------------------------------------------------------
# Modes: how ops run in each context


class Mode:
    """How ops run in one context -- eager on the CPU, eager on a GPU, tracing -- as autodidax's
    `Trace` objects: `apply` runs an op, `inplace` changes a tensor, `accumulate` adds a gradient
    into `.grad`. The mode is the highest one among the operands, as autodidax's top trace:
    the trace running in this thread if there is one (it captures concrete tensors), else eager
    on a GPU if an operand lives there, else eager on the CPU (`dispatch`, `Tensor._inplace`,
    `mode_of`).

    The in-place protocol is shared (`inplace`): a recorded change of a leaf is refused, the op
    runs out of place on the old value, and the tensor takes over the result's node. Each mode
    says how a view is refused (`check_view`), what the old value is (`old_value`) and how the
    new one is stored (`store`)."""

    def apply(self, op: ops.OpDef, args: tuple, params: dict) -> Tensor:
        raise NotImplementedError

    def inplace(self, t: Tensor, op: Any, args: tuple, params: dict) -> Tensor:
        recording = _recording(t, args)
        if recording and t.grad_fn is None and t._requires_grad:
            raise _leaf_inplace_error(op, t)
        self.check_view(t, op)
        old = Tensor._wrap(self.old_value(t, op, recording))
        old.grad_fn = t.grad_fn
        old._requires_grad = t._requires_grad
        res = op(old, *args, **params)
        _check_inplace_cast(op, res.dtype, t.dtype)
        _check_inplace_shape(op, res.shape, t.shape)
        _take_over(t, self.store(t, res), recorded=recording)
        return t

    def check_view(self, t: Tensor, op: Any) -> None:
        """Raise where an in-place change of `t` would not reach its base."""

    def old_value(self, t: Tensor, op: Any, recording: bool) -> Any:
        """The data the op reads as the old value (a copy where the node saves it)."""
        raise NotImplementedError

    def store(self, t: Tensor, res: Tensor) -> Tensor:
        """Make `res` the value of `t`; returns the tensor whose node `t` takes over."""
        raise NotImplementedError

    def accumulate(self, t: Tensor, g: Tensor) -> None:
        """`t.grad += g` outside create_graph: `.grad` owns its buffer and later backward calls
        add into it in place (the same tensor object stays `.grad`, as PyTorch)."""
        raise NotImplementedError


def _recording(t: Tensor, args: tuple) -> bool:
    """Whether an in-place change of `t` by an op of `args` is recorded for autograd."""
    return _grad_state.enabled and (
        t._requires_grad or any(isinstance(a, Tensor) and a._requires_grad for a in args)
    )


def _link_view(t: Tensor, first: Tensor) -> None:
    """`t` is a view of `first`: remember the base and the base's count of recorded changes
    now, so that a view used after its base changed is caught instead of diverging."""
    t._base = first._base if first._base is not None else first
    t._view_rec = first._version[1]


def eager_forward(op: ops.OpDef, datas: list, params: dict) -> np.ndarray:
    """The array eager mode computes for `op` on arrays and numbers: its numpy forward, cast
    to the op's dtype rule. Code that runs a fixed sequence of ops on plain arrays (optimizer
    updates, gradient clipping) calls this to get eager's exact bits without a tensor per
    step."""
    try:
        out = op.forward(*datas, **params)
    except Exception as e:  # explain in the op's terms, with shapes
        _explain(op, datas, params, e)
        raise
    if type(out) is not np.ndarray:
        out = np.asarray(out)
    if op.out_dtype is not None:
        want = op.out_dtype(*datas, **params)
        if out.dtype != want:
            out = out.astype(want)
    return out


class EagerMode(Mode):
    """Eager on the CPU: the op's numpy forward now, the `grad_fn` node when recording."""

    def apply(self, op: ops.OpDef, args: tuple, params: dict) -> Tensor:
        datas = []
        record = False
        for a in args:
            if isinstance(a, Tensor):
                if type(a._data) is not np.ndarray:
                    if type(a._data) is Var:
                        raise escaped(a._data.aval)
                    return DEVICE.apply(op, args, params)  # a GPU operand: the higher mode
                datas.append(a._data)
                if a._requires_grad:
                    record = True
            elif type(a) in _NUMBER_TYPES or is_scalar(a) or isinstance(a, np.ndarray):
                datas.append(a)
            else:
                raise TypeError(
                    f"{op.name}: expected Tensors or numbers, got {type(a).__name__}; convert "
                    "with tg.tensor(...)"
                )
        if record and op.vjp is None and op.decompose is not None and _grad_state.enabled:
            return op.decompose(*args, **params)  # a fused kernel differentiated: its parts
        out = eager_forward(op, datas, params)
        if op.uses_blas:
            note_blas()  # compiled loops run serially while OpenBLAS's threads spin (ops/core)
        # the fields of Tensor._init_fields, inlined (one call less per op: the hot path)
        t = object.__new__(Tensor)
        t._data = out
        t._requires_grad = False
        t._grad = None
        t.grad_fn = None
        t._version = [0, 0]
        t._base = None
        t._view_rec = 0
        t._accumulator = None
        t._retains_grad = False
        if op.kind in _VIEW_KINDS and out.base is not None:
            first = args[0]
            if isinstance(first, Tensor) and np.may_share_memory(out, first._data):
                # a view: same storage, so the same version counter (in-place checks see it)
                t._version = first._version
                _link_view(t, first)
        if record and _grad_state.enabled and op.vjp is not None:
            _record(op, args, params, t)
        return t

    def inplace(self, t: Tensor, op: Any, args: tuple, params: dict) -> Tensor:
        if not t._data.flags.writeable:
            raise RuntimeError(
                f"{op.name}_: this tensor's memory cannot be written (an expand()ed view, or a "
                f"read-only numpy array; shape {tuple(t.shape)}); clone() it first"
            )
        if _recording(t, args):
            return super().inplace(t, op, args, params)
        # not recorded: a plain data update (views and from_numpy arrays see it)
        datas = [a._data if isinstance(a, Tensor) else a for a in args]
        want = op.out_dtype(t._data, *datas, **params) if op.out_dtype else t.dtype
        _check_inplace_cast(op, want, t.dtype)
        try:
            if op is ops.setitem:  # t[idx] = v writes only the indexed region
                t._data[ops.fill_index(params["idx"], tuple(datas[1:]))] = datas[0]
            elif isinstance(ufunc := getattr(op.forward, "ufunc", op.forward), np.ufunc) and (
                want == t.dtype
            ):
                ufunc(t._data, *datas, out=t._data, **params)
            else:
                result = op.forward(t._data, *datas, **params)
                _check_inplace_shape(op, np.shape(result), t.shape)
                np.copyto(t._data, result, casting="unsafe")
        except (ValueError, IndexError) as e:
            raise type(e)(f"{op.name}_ (in place) on a tensor of shape {t.shape}: {e}") from e
        t._version[0] += 1
        return t

    def check_view(self, t: Tensor, op: Any) -> None:
        if t._base is not None:
            raise RuntimeError(
                f"{op.name}_: in-place changes recorded by autograd are not supported on a view "
                f"(of shape {tuple(t.shape)}) of another tensor; tracegrad cannot rewrite the "
                "base's gradient. Apply the change to a clone(), or build the result out of "
                "place (tg.where, tg.cat)."
            )

    def old_value(self, t: Tensor, op: Any, recording: bool) -> Any:
        return t._data.copy() if 0 in op.saves else t._data

    def store(self, t: Tensor, res: Tensor) -> Tensor:
        np.copyto(t._data, res._data, casting="unsafe")
        return res

    def accumulate(self, t: Tensor, g: Tensor) -> None:
        if t.grad is None:
            # laid out as the parameter (PyTorch's gradient layout contract): a Linear weight's
            # gradient arrives as a transposed product
            order = "C" if t._data.flags.c_contiguous else "K"
            t.grad = Tensor._wrap(np.array(g._data, dtype=t.dtype, copy=True, order=order))
        elif t.grad.grad_fn is None and t.grad._data.flags.writeable and t.grad.shape == g.shape:
            np.add(t.grad._data, g._data, out=t.grad._data, casting="unsafe")
            t.grad._version[0] += 1
        else:
            t.grad = Tensor._wrap(np.asarray(t.grad._data + g._data, dtype=t.dtype))


class DeviceMode(Mode):
    """Eager on a GPU: each op runs as one compiled op of the CUDA target
    (runtime/cuda_eager.py, through `device_hooks`). A view op returns a copy there."""

    def apply(self, op: ops.OpDef, args: tuple, params: dict) -> Tensor:
        if op.decompose is not None:  # a CPU kernel's op: its parts run on the GPU
            return op.decompose(*args, **params)
        record = any(isinstance(a, Tensor) and a._requires_grad for a in args)
        t = Tensor._wrap(device_hooks.run_op(op, args, params))
        if op.kind in _VIEW_KINDS and isinstance(args[0], Tensor):
            # a copy: remember the base, so that an in-place change through it (which would
            # not reach the base) is refused, not silently lost (its own version counter: a
            # copy never goes stale when the base changes)
            _link_view(t, args[0])
            t._view_rec = t._version[1]
        if record and _grad_state.enabled and op.vjp is not None:
            _record(op, args, params, t)
        return t

    def check_view(self, t: Tensor, op: Any) -> None:
        if t._base is not None and t._base._data is not t._data:
            raise RuntimeError(
                f"{op.name}_: in-place change of a view (shape {tuple(t.shape)}) of a CUDA "
                "tensor. Views of CUDA tensors are copies in tracegrad, so the change would not "
                "reach the base; change the base itself (x[0] = value, or x.copy_(...)), or "
                "clone() the view to own it."
            )

    def old_value(self, t: Tensor, op: Any, recording: bool) -> Any:
        return _copy_data(t._data) if recording and 0 in op.saves else t._data

    def store(self, t: Tensor, res: Tensor) -> Tensor:
        # copied into this tensor's device array: tensors sharing it (detach(), .data) see it
        data = res._data
        if res.dtype != t.dtype:
            with _no_grad_ctx():
                data = ops.astype(res, dtype=t.dtype)._data
        if data.size:
            t._data.copy_to_device(data)
        return res

    def accumulate(self, t: Tensor, g: Tensor) -> None:
        if g.device != t.device:
            raise RuntimeError(
                f"backward: the gradient of a tensor on {t.device} arrived on {g.device} (shape "
                f"{tuple(g.shape)}); keep a computation's tensors on one device"
            )
        with _no_grad_ctx():
            g = g.astype(t.dtype)
            if t.grad is None:
                t.grad = Tensor._wrap(g.clone()._data)
            else:
                t.grad._inplace(ops.add, g)


class TraceMode(Mode):
    """Tracing (`tg.jit`): an op appends an equation to the tracer's tape instead of computing.
    Tensors that exist outside the trace are captured (they become implicit inputs); arrays
    become constants; numbers read from user state (`SymbolicNumber`: an optimizer's lr) become
    runtime scalar inputs. In place is functional: the tensor is rebound to the traced result;
    a captured tensor changed in place becomes a state write."""

    def __init__(self, tracer: Any) -> None:
        self.tracer = tracer

    def apply(self, op: ops.OpDef, args: tuple, params: dict) -> Tensor:
        if op.decompose is not None:  # an eager kernel's op: traced as its parts, which fuse
            return op.decompose(*args, **params)
        tracer = self.tracer
        args, params = tracer.lift(op, args, params)
        ins = []
        avals = []
        record = False
        for a in args:
            if isinstance(a, Tensor):
                d = a._data
                if type(d) is not Var:
                    d = tracer.capture(a)
                elif d.tape is not tracer.tape:
                    raise escaped(d.aval)
                if a._base is not None and a._version[1] != a._view_rec:
                    raise TracerError(
                        f"{op.name}: this view (shape {tuple(a.shape)}) was taken before its "
                        "base was changed in place; under tg.jit a view does not follow later "
                        "in-place changes of its base. Take the view again after the change."
                    )
                ins.append(d)
                avals.append(d.aval)
                if a._requires_grad:
                    record = True
            elif is_scalar(a):
                a = a.item() if isinstance(a, np.generic) else a
                ins.append(a)
                avals.append(a)
            elif isinstance(a, np.ndarray):
                d = tracer.const(a)
                ins.append(d)
                avals.append(d.aval)
            else:
                raise TypeError(f"{op.name}: expected Tensors or numbers, got {type(a).__name__}")
        aval = op.abstract(*avals, **params)
        t = Tensor._wrap(tracer.tape.add_eqn(op, tuple(ins), aval, params))
        first = args[0] if args else None
        if op.kind in _VIEW_KINDS and isinstance(first, Tensor):
            # eager's view bookkeeping, so a stale view is caught (above) instead of diverging
            t._version = first._version
            _link_view(t, first)
        if record and _grad_state.enabled and op.vjp is not None:
            _record(op, args, params, t)
        return t

    def check_view(self, t: Tensor, op: Any) -> None:
        if t._base is not None:
            raise TracerError(
                f"{op.name}_: in-place change of a view (or of a detach()ed / .data / "
                f"contiguous() alias; shape {tuple(t.shape)}) inside tg.jit: a traced view "
                "cannot write through to its base. Change the base tensor itself (with "
                "tg.no_grad(): p.add_(...))."
            )

    def old_value(self, t: Tensor, op: Any, recording: bool) -> Any:
        return t._data if type(t._data) is Var else self.tracer.capture(t)

    def store(self, t: Tensor, res: Tensor) -> Tensor:
        if res.dtype != t.dtype:
            res = ops.astype(res, dtype=t.dtype)
        t._data = res._data
        return res

    def accumulate(self, t: Tensor, g: Tensor) -> None:
        # functional: the tracer sees the write of a captured tensor's .grad
        if t.grad is None:
            t.grad = Tensor._wrap(g._data)
        else:
            t.grad._inplace(ops.add, g)


EAGER = EagerMode()
DEVICE = DeviceMode()


def mode_of(*tensors: Tensor) -> Mode:
    """The highest mode among these tensors: the running trace, else a GPU's, else the CPU's."""
    tracer = tracing.tracer
    if tracer is not None:
        return tracer.mode
    if any(type(t._data) is not np.ndarray for t in tensors):
        return DEVICE
    return EAGER


def dispatch(op: ops.OpDef, args: tuple, params: dict) -> Tensor:
    """Run `op` on `args` in the current mode: the one place every op runs."""
    tracer = tracing.tracer
    if tracer is not None:
        return tracer.mode.apply(op, args, params)
    return EAGER.apply(op, args, params)


_node_classes: dict = {}


def _record(op: ops.OpDef, args: tuple, params: dict, out: Tensor) -> None:
    name = op.grad_name if type(op.grad_name) is str else op.grad_name(args, params)
    rules = op.vjp
    saves = op.saves
    nexts = []
    inputs = []
    versions = []
    any_edge = False
    for i, a in enumerate(args):
        if isinstance(a, Tensor):
            rule = rules[0] if op.variadic else (rules[i] if i < len(rules) else None)
            if a._requires_grad and rule is not None:
                if a._base is not None and a._version[1] != a._view_rec:
                    raise RuntimeError(
                        f"{op.name}: an input of shape {tuple(a.shape)} is a view whose base was "
                        "changed in place by a recorded operation after the view was taken; "
                        "take the view again after the change, or clone() it before"
                    )
                fn = a.grad_fn if a.grad_fn is not None else a._get_accumulator()
                nexts.append((fn, 0))
                any_edge = True
            else:
                nexts.append((None, 0))
            if i in saves:
                inputs.append(a)
                versions.append((i, a._version, a._version[0]))
            else:
                inputs.append(Aval(a._data.shape, a._data.dtype))
        else:
            nexts.append((None, 0))
            inputs.append(a)
    if not any_edge:
        return
    cls = _node_classes.get(name)
    if cls is None:
        cls = _node_classes[name] = node_class(name)
    node = cls(op, params, tuple(inputs), tuple(nexts))
    node.saved_versions = tuple(versions)
    if op.saves_out:
        node.out_data = out._data
        node.out_version = out._version
        node.out_saved_version = out._version[0]
    out.grad_fn = node
    out._requires_grad = True


def _explain(op: ops.OpDef, datas: list, params: dict, error: Exception) -> None:
    """Re-raise a numpy failure as an error that names the op and the shapes."""
    avals = [d if is_scalar(d) else Aval(np.shape(d), np.asarray(d).dtype) for d in datas]
    op.abstract(*avals, **params)  # raises the op's own, clearer error when shapes do not fit
    shapes = ", ".join(str(tuple(a.shape)) if not is_scalar(a) else repr(a) for a in avals)
    try:
        explained = type(error)(f"{op.name}: {error} (inputs {shapes})")
    except Exception:  # an exception type with another signature
        explained = ValueError(f"{op.name}: {error} (inputs {shapes})")
    raise explained from error


ops.hooks.dispatch = dispatch
ops.hooks.move = lambda x, device: _move(x, CUDA if device == "cuda" else CPU)


def unpack_out(node: Node) -> Tensor:
    """The forward output saved by `node`, as a tensor whose grad_fn is `node`."""
    t = Tensor._wrap(node.out_data)
    t._version = node.out_version
    t.grad_fn = node
    t._requires_grad = True
    return t


__all__ = ["Tensor", "Device", "Size", "dispatch", "result_type"]
