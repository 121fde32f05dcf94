"""`tg.autograd.Function`: an operation with a gradient you write, as PyTorch's.

    >>> import tracegrad as tg
    >>> class Exp(tg.autograd.Function):
    ...     @staticmethod
    ...     def forward(ctx, x):
    ...         y = x.exp()
    ...         ctx.save_for_backward(y)
    ...         return y
    ...
    ...     @staticmethod
    ...     def backward(ctx, g):
    ...         (y,) = ctx.saved_tensors
    ...         return g * y
    >>> x = tg.tensor([0.0, 1.0], requires_grad=True)
    >>> y = Exp.apply(x)
    >>> y.grad_fn.name()
    'ExpBackward'
    >>> y.sum().backward(); x.grad
    tensor([1.0000, 2.7183])

`forward` runs with grad mode off; `apply` attaches one node to its outputs whose backward
calls your `backward` with one cotangent per output and takes one gradient per input (None
for inputs that get none). Both are written with tracegrad ops, so a Function works the same
eagerly, under `create_graph=True` (if `backward` is differentiable) and inside `tg.jit`, where
its forward and backward become equations of the tape like any other.
"""

from __future__ import annotations

from typing import Any

from ..tensor import Tensor, _as_tensor
from .grad_mode import no_grad, state
from .node import FREED_MESSAGE, Node


class FunctionCtx:
    """The `ctx` of `forward`/`backward`: `save_for_backward`, `saved_tensors`,
    `needs_input_grad`, `mark_non_differentiable`, `set_materialize_grads`, and any attribute
    you set."""

    def __init__(self) -> None:
        self.needs_input_grad: tuple = ()
        self.to_save: tuple = ()
        self._saved_versions: tuple = ()
        self.non_differentiable: tuple = ()
        self.materialize_grads = True
        self._freed = False
        self._name = "Function"

    def save_for_backward(self, *tensors: Any) -> None:
        for t in tensors:
            if t is not None and not isinstance(t, Tensor):
                raise TypeError(
                    f"save_for_backward can only save variables, but argument is of type "
                    f"{type(t).__name__} (keep other values as attributes: ctx.k = k)"
                )
        self.to_save = tensors
        self._saved_versions = tuple(None if t is None else t._version[0] for t in tensors)

    @property
    def saved_tensors(self) -> tuple:
        if self._freed:
            raise RuntimeError(FREED_MESSAGE)
        for i, (t, v) in enumerate(zip(self.to_save, self._saved_versions)):
            if t is not None and t._version[0] != v:
                raise RuntimeError(
                    "one of the variables needed for gradient computation has been modified by "
                    f"an inplace operation: saved tensor {i} of {self._name} (shape "
                    f"{tuple(t.shape)}) is at version {t._version[0]}; expected version {v} "
                    "instead. Clone it before changing it in place."
                )
        return self.to_save

    def mark_non_differentiable(self, *outputs: Tensor) -> None:
        self.non_differentiable = outputs

    def set_materialize_grads(self, value: bool) -> None:
        self.materialize_grads = bool(value)

    def mark_dirty(self, *tensors: Tensor) -> None:
        raise NotImplementedError(
            f"{self._name}: ctx.mark_dirty (a Function that changes its inputs in place) is not "
            "supported by tracegrad; return a new tensor instead (x.clone() then change it)"
        )


class FunctionNode(Node):
    """The node of one `Function.apply`: runs the user's backward."""

    __slots__ = ("fn", "ctx", "n_outputs", "out_avals", "n_inputs")

    def __init__(self, fn: type, ctx: FunctionCtx, nexts: tuple, out_avals: list) -> None:
        super().__init__(None, {}, (), nexts)
        self.fn = fn
        self.ctx = ctx
        self.n_outputs = len(out_avals)
        self.out_avals = out_avals
        self.n_inputs = len(nexts)

    def name(self) -> str:
        return f"{self.fn.__name__}Backward"

    @property
    def has_saved(self) -> bool:
        return bool(self.ctx.to_save)

    def release(self) -> None:
        if self.ctx.to_save:
            self.ctx._freed = True
            self.ctx.to_save = ()
            self.freed = False  # a second backward raises through saved_tensors, as PyTorch

    def run(self, g: Any) -> list:
        """The user's backward on the output cotangents: one gradient per input."""
        grads = g if type(g) is list else [g]
        if self.ctx.materialize_grads:
            grads = [_zeros(aval) if gi is None else gi for gi, aval in zip(grads, self.out_avals)]
        out = self.fn.backward(self.ctx, *grads)
        if not isinstance(out, tuple):
            out = (out,)
        name = self.name()
        if len(out) != self.n_inputs:
            if len(out) > self.n_inputs and all(o is None for o in out[self.n_inputs :]):
                out = out[: self.n_inputs]
            else:
                raise RuntimeError(
                    f"function {name} returned an incorrect number of gradients (expected "
                    f"{self.n_inputs}, got {len(out)})"
                )
        result = []
        for i, (gi, (nxt, _), shape) in enumerate(zip(out, self.next_functions, self.ctx._shapes)):
            if nxt is None or gi is None:
                result.append(None)
                continue
            gi = _as_tensor(gi)
            if tuple(gi.shape) != shape:
                gi = _sum_to(gi, shape, name, i)
            result.append(gi)
        return result


class OutputEdge(Node):
    """The `grad_fn` of output k >= 1 of a Function with several outputs: it hands its
    cotangent to the Function's node as that node's output k (the edge `(node, k)`), so a
    tensor needs no field saying which output it is."""

    __slots__ = ("node",)

    def __init__(self, node: FunctionNode, k: int) -> None:
        super().__init__(None, {}, (), ((node, k),))
        self.node = node

    def name(self) -> str:
        return self.node.name()

    def release(self) -> None:
        pass

    def run(self, g: Any) -> list:
        return [g]


def _zeros(aval: tuple) -> Tensor:
    from .. import creation

    shape, dtype = aval
    return creation.zeros(shape, dtype=dtype)


def _sum_to(g: Tensor, shape: tuple, name: str, i: int) -> Tensor:
    """A gradient of a broadcastable shape summed down to the input's (PyTorch accepts it)."""
    from .. import functions as F

    lead = g.ndim - len(shape)
    ok = lead >= 0 and all(a == b or b == 1 for a, b in zip(g.shape[lead:], shape))
    if not ok:
        raise RuntimeError(
            f"Function {name} returned an invalid gradient at index {i} - got "
            f"{list(g.shape)} but expected shape compatible with {list(shape)}"
        )
    dims = tuple(range(lead)) + tuple(
        lead + k for k, (a, b) in enumerate(zip(g.shape[lead:], shape)) if b == 1 and a != 1
    )
    return F.reshape(F.sum(g, dims), *shape) if dims else F.reshape(g, *shape)


class Function:
    """Subclass with `forward(ctx, *args)` and `backward(ctx, *grad_outputs)` as static
    methods (or `forward(*args)` plus `setup_context(ctx, inputs, output)`), then call
    `MyFunction.apply(*args)`. See the module docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError(
            "Legacy autograd function with non-static forward method is deprecated. Please use "
            "new-style autograd function with static forward method: call "
            f"{type(self).__name__}.apply(...)"
        )

    @staticmethod
    def forward(ctx: Any, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(
            "You must implement the forward function for custom autograd.Function."
        )

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Any) -> Any:
        return _SETUP_NOT_DEFINED

    @staticmethod
    def backward(ctx: Any, *grad_outputs: Any) -> Any:
        raise NotImplementedError(
            "You must implement either the backward or vjp method for your custom "
            "autograd.Function to use it with backward mode AD."
        )

    vjp = backward

    @classmethod
    def apply(cls, *args: Any, **kwargs: Any) -> Any:
        ctx = FunctionCtx()
        ctx._name = f"{cls.__name__}Backward"
        ctx.needs_input_grad = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        ctx._shapes = tuple(tuple(a.shape) if isinstance(a, Tensor) else () for a in args)
        separate = cls.setup_context is not Function.setup_context
        with no_grad():
            output = cls.forward(*args, **kwargs) if separate else cls.forward(ctx, *args, **kwargs)
        if separate:
            cls.setup_context(ctx, args, output)
        single = not isinstance(output, tuple)
        outs = [output] if single else list(output)
        # an input returned as it is becomes a new tensor (the input keeps its own grad_fn)
        ids = {id(a) for a in args if isinstance(a, Tensor)}
        for k, o in enumerate(outs):
            if isinstance(o, Tensor) and id(o) in ids:
                outs[k] = Tensor._wrap(o._data)
        if state.enabled and any(ctx.needs_input_grad):
            nexts = []
            for a, needs in zip(args, ctx.needs_input_grad):
                if needs:
                    fn = a.grad_fn if a.grad_fn is not None else a._get_accumulator()
                    nexts.append((fn, 0))
                else:
                    nexts.append((None, 0))
            tensors = [o for o in outs if isinstance(o, Tensor)]
            avals = [(tuple(o.shape), o.dtype) for o in tensors]
            node = FunctionNode(cls, ctx, tuple(nexts), avals)
            skip = {id(o) for o in ctx.non_differentiable}
            for k, o in enumerate(tensors):
                if id(o) in skip or o.dtype.kind != "f":
                    continue
                o.grad_fn = node if k == 0 else OutputEdge(node, k)
                o._requires_grad = True
        return outs[0] if single else tuple(outs)


_SETUP_NOT_DEFINED = object()


def once_differentiable(fn: Any) -> Any:
    """Mark a backward as not differentiable again: it runs with grad mode off."""

    def wrapper(ctx: Any, *args: Any) -> Any:
        with no_grad():
            return fn(ctx, *args)

    wrapper.__name__ = getattr(fn, "__name__", "backward")
    wrapper.__doc__ = fn.__doc__
    return wrapper


__all__ = ["Function", "FunctionCtx", "once_differentiable"]
