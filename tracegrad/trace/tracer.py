"""Stage 1: function + example arguments -> Tape.

    >>> import tracegrad as tg
    >>> print(tg.make_tape(lambda x: 2 * x + 1)(tg.ones(3)))
    { lambda a:f32[3] ; let b:f32[3] = mul a 2; c:f32[3] = add b 1 in (c) }

While a trace runs, every op on tensors appends an equation (`tensor.dispatch`) instead of
computing; `.backward()` and the transforms run unchanged and append the adjoint equations.

What is captured, precisely: a Tensor that existed before the trace began and that the function
uses in an op (or changes in place) becomes an implicit input of the tape, read afresh at every
call. Tensors made inside the function (tg.zeros, tg.tensor, results of ops) are constants or
intermediate values. Changing a captured tensor in place (`p -= lr * p.grad` under no_grad,
`buf.mul_(0.9)`, `x[0] = 1`) and setting any tensor's `.grad` (backward's accumulation,
`zero_grad`) are state writes: after each call the runtime stores the new values back. During
the trace captured tensors hold their tape variables; when it ends they get their own data back.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import ops
from ..autograd.pytree import flatten, unflatten
from ..ops.core import Aval, is_scalar
from ..tape.errors import TracerError
from ..tape.ir import StateWrite, Tape, Var
from ..tensor import Tensor, tracing


class _Captured:
    __slots__ = ("tensor", "array", "var", "grad_fn", "requires_grad", "version")

    def __init__(self, tensor: Tensor, var: Var) -> None:
        self.tensor = tensor
        self.array = tensor._data
        self.var = var
        self.grad_fn = tensor.grad_fn
        self.requires_grad = tensor._requires_grad
        self.version = list(tensor._version)


class Tracer:
    """The state of one trace: the tape being built, what was captured, which `.grad`s were
    set. `tensor.dispatch` calls `capture`, `const` and `note_grad_write`."""

    def __init__(self) -> None:
        self.tape = Tape()
        self.captured: list[_Captured] = []
        self._captured_ids: dict[int, _Captured] = {}
        self.grad_writes: dict[int, tuple[Tensor, Any]] = {}
        # `.grad`s read before the trace set them: the compiled call assumes the same objects
        self.grad_reads: dict[int, tuple[Tensor, Any]] = {}
        self._grad_seen: set[int] = set()
        self.backward_calls = 0

    # called by the Tensor layer ---------------------------------------------------------------

    def capture(self, t: Tensor) -> Var:
        """`t` exists outside the trace: make it an implicit input, and let it hold that input
        variable until the trace ends."""
        rec = self._captured_ids.get(id(t))
        if rec is not None:  # (its data was given back already? then it is that var again)
            return t._data if type(t._data) is Var else rec.var
        var = Var(Aval(t.shape, t.dtype), self.tape)
        rec = _Captured(t, var)
        self.captured.append(rec)
        self._captured_ids[id(t)] = rec
        self.tape.captured.append(var)
        self.tape.captured_labels.append(f"{tuple(t.shape)}")
        t._data = var
        return var

    def const(self, array: np.ndarray) -> Var:
        return self.tape.add_eqn(ops.const, (), Aval(array.shape, array.dtype), {"value": array})

    def note_grad_access(self, t: Tensor, kind: str) -> None:
        key = id(t)
        if key not in self._grad_seen:
            self._grad_seen.add(key)
            if kind == "read":
                self.grad_reads[key] = (t, t._grad)
        if kind == "write" and key not in self.grad_writes:
            self.grad_writes[key] = (t, t._grad)

    # ending the trace --------------------------------------------------------------------------

    def finish(self, outputs: list) -> None:
        """Record outputs and state writes, then give captured tensors their data back."""
        tape = self.tape
        out_vars = []
        for o in outputs:
            if isinstance(o, Tensor):
                if type(o._data) is not Var:  # a captured tensor returned untouched
                    self.capture(o)
                out_vars.append(o._data)
            else:
                out_vars.append(o)
        tape.outputs = out_vars
        writes = []
        for rec in self.captured:
            if rec.tensor._data is not rec.var:
                writes.append(
                    StateWrite(weakref.ref(rec.tensor), "data", rec.tensor._data, True, rec.var)
                )
        for t, old in self.grad_writes.values():
            new = t._grad
            if new is old:
                continue  # same tensor object; a change of its data is a data write above
            if new is None:
                writes.append(StateWrite(weakref.ref(t), "grad", None, False, self._label(t)))
            elif type(new._data) is Var:
                writes.append(StateWrite(weakref.ref(t), "grad", new._data, False, self._label(t)))
            else:
                raise TracerError(
                    "a jitted function assigned an existing tensor to .grad; assign a value "
                    "computed inside the function instead"
                )
        tape.writes = writes
        self.restore()

    def _label(self, t: Tensor) -> Any:
        rec = self._captured_ids.get(id(t))
        return rec.var if rec is not None else None

    def restore(self) -> None:
        for rec in self.captured:
            t = rec.tensor
            t._data = rec.array
            t.grad_fn = rec.grad_fn
            t._requires_grad = rec.requires_grad
            t._version[:] = rec.version
        for t, old in self.grad_writes.values():
            t._grad = old
        self.tape.done = True

    def guards(self) -> list[tuple]:
        """What a later call must find unchanged to reuse this trace: each captured tensor
        alive with the same shape, dtype and requires_grad; each `.grad` that was read before
        being set still None, or set to a tensor of the same shape and dtype, and the same
        object when the tape reads its data."""
        out = []
        for rec in self.captured:
            out.append(("captured", weakref.ref(rec.tensor), rec.var.aval, rec.requires_grad))
        for t, value in self.grad_reads.values():
            if value is None:
                out.append(("grad", weakref.ref(t), None))
            elif id(value) in self._captured_ids:
                # its data is read (or changed) by the tape: the very same tensor is needed
                out.append(("grad", weakref.ref(t), weakref.ref(value)))
            else:
                # only looked at (`if p.grad is None`, its shape): any tensor of that aval will
                # do, e.g. the new .grad the last compiled call stored
                out.append(("grad_set", weakref.ref(t), Aval(value.shape, value.dtype)))
        return out


class NeedsEagerCall(Exception):
    """Raised inside a trace by code that must first create persistent state from concrete
    values (an optimizer's lazily created buffers on its first step). `tg.jit` catches it,
    undoes the trace, runs that call eagerly and traces the next call, which finds the state."""


def require_concrete_state(what: str) -> None:
    """Call before creating persistent state; under tracing this ends the trace (see above)."""
    if tracing.tracer is not None:
        raise NeedsEagerCall(
            f"{what} is created on the first call; tg.jit runs that call eagerly and compiles "
            "from the second call on (tg.make_tape: run the function once eagerly first)"
        )


# One trace at a time in the whole process: while a trace runs, captured tensors hold tape
# variables, and a second trace (in another thread) must not capture them in that state.
_TRACE_LOCK = threading.RLock()


def trace(fn: Callable, args: Sequence[Any], kwargs: dict | None = None) -> tuple:
    """Trace `fn(*args, **kwargs)`. Tensor and array leaves of the arguments become the tape's
    explicit inputs; Python numbers and other leaves are passed as they are (static).

    Returns (tape, tracer, output treedef)."""
    if tracing.tracer is not None:
        raise TracerError(
            "tracing inside a trace: tg.make_tape cannot run inside a jitted function"
        )
    kwargs = kwargs or {}
    leaves, treedef = flatten((tuple(args), kwargs))
    tracer = Tracer()
    traced_leaves = []
    for leaf in leaves:
        if isinstance(leaf, (Tensor, np.ndarray)):
            data = leaf._data if isinstance(leaf, Tensor) else leaf
            if type(data) is Var:
                raise TracerError("a traced tensor was passed to a function being traced")
            var = Var(Aval(data.shape, data.dtype), tracer.tape)
            tracer.tape.args.append(var)
            t = Tensor._wrap(var)
            if isinstance(leaf, Tensor) and leaf.requires_grad:
                t._requires_grad = True
            traced_leaves.append(t)
        else:
            traced_leaves.append(leaf)
    targs, tkwargs = unflatten(treedef, traced_leaves)
    with _TRACE_LOCK:
        return _run_trace(fn, tracer, targs, tkwargs)


def _run_trace(fn: Callable, tracer: Tracer, targs: Any, tkwargs: dict) -> tuple:
    tracing.tracer = tracer
    try:
        out = fn(*targs, **tkwargs)
        out_leaves, out_tree = flatten(out)
        for o in out_leaves:
            if not (isinstance(o, Tensor) or is_scalar(o)):
                raise TypeError(
                    f"a jitted function must return Tensors, numbers, or tuples/lists/dicts of "
                    f"them; it returned a {type(o).__name__}"
                )
        tracer.finish(out_leaves)
    except BaseException:
        tracer.restore()
        raise
    finally:
        tracing.tracer = None
    return tracer.tape, tracer, out_tree, out_leaves


def make_tape(fn: Callable, static_argnums: Sequence[int] | int = ()) -> Callable[..., Tape]:
    """`make_tape(f)(*args)` traces `f` on `args` and returns the tape (nothing is run, and
    captured tensors are left as they were).

    Arguments at `static_argnums` are passed to `f` as they are and not traced."""
    static = (static_argnums,) if isinstance(static_argnums, int) else tuple(static_argnums)

    def make(*args: Any, **kwargs: Any) -> Tape:
        dynamic = [a for i, a in enumerate(args) if i not in static]

        def call(*dyn: Any, **kw: Any) -> Any:
            it = iter(dyn)
            full = [a if i in static else next(it) for i, a in enumerate(args)]
            return fn(*full, **kw)

        tape, _, _, _ = trace(call, dynamic, kwargs)
        return tape

    return make
