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

Python values the function reads from optimizers and modules (learning rates, `training`) are
runtime scalars or guards (`pystate.py`); random draws and clock reads raise (`_run_trace`).
"""

from __future__ import annotations

import functools
import os
import pickle
import random
import sys
import threading
import time
import types
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import ops
from ..autograd.pytree import flatten, unflatten
from ..ops.core import Aval, is_scalar, result_type
from ..tape.errors import TracerError, user_location
from ..tape.ir import StateWrite, Tape, Var, WriteKind
from ..tensor import Tensor, TraceMode, tracing
from . import pystate
from .pystate import ModuleGuard, OptimizerGuard, Source, Sym


class GradOf:
    """Called like a weak reference, gives the current `.grad` of `owner`: how a compiled call
    finds a `.grad` tensor the function read (`p.grad` in an optimizer step compiled on its
    own). Each backward may set a new tensor object there; the call reads whichever is there
    now, and writes into it."""

    __slots__ = ("owner",)

    def __init__(self, owner: Tensor) -> None:
        self.owner = weakref.ref(owner)

    def __call__(self) -> Tensor | None:
        t = self.owner()
        return None if t is None else t._grad


class _Captured:
    __slots__ = ("tensor", "ref", "array", "var", "grad_fn", "requires_grad", "version")

    def __init__(self, tensor: Tensor, var: Var, owner: Tensor | None) -> None:
        self.tensor = tensor
        # how a call finds the tensor again: itself, or the .grad of `owner` it was read as
        self.ref = weakref.ref(tensor) if owner is None else GradOf(owner)
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
        self.mode = TraceMode(self)  # how ops run while this trace is the thread's (tensor.py)
        self.captured: list[_Captured] = []
        self._captured_ids: dict[int, _Captured] = {}
        self.grad_writes: dict[int, tuple[Tensor, Any]] = {}
        # `.grad`s read before the trace set them: the compiled call assumes the same objects
        self.grad_reads: dict[int, tuple[Tensor, Any]] = {}
        self._grad_seen: set[int] = set()
        self._grad_owners: dict[int, Tensor] = {}  # id(a .grad read) -> the tensor it is of
        self.backward_calls = 0
        # Python state (pystate.py): what each position of tape.captured is (a _Captured
        # tensor, or a runtime scalar's (code, dtype)), the sources of runtime numbers, the
        # guards on facts the trace used, the modules and optimizers it touched
        self.captured_kinds: list[Any] = []
        self.sources: list[Source] = []
        self._source_ids: dict[tuple, Sym] = {}
        self.predicates: dict[str, tuple[Any, str]] = {}
        self._scalar_vars: dict[tuple, Var] = {}
        self.module_guards: dict[int, ModuleGuard] = {}
        self.optimizer_guards: dict[int, OptimizerGuard] = {}
        self._swapped: list[tuple[Any, str, Any, Sym]] = []

    # called by the Tensor layer ---------------------------------------------------------------

    def capture(self, t: Tensor) -> Var:
        """`t` exists outside the trace: make it an implicit input, and let it hold that input
        variable until the trace ends."""
        rec = self._captured_ids.get(id(t))
        if rec is not None:  # (its data was given back already? then it is that var again)
            return t._data if type(t._data) is Var else rec.var
        var = Var(Aval(t.shape, t.dtype), self.tape)
        rec = _Captured(t, var, self._grad_owners.get(id(t)))
        self.captured.append(rec)
        self._captured_ids[id(t)] = rec
        self.captured_kinds.append(rec)
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
                if t._grad is not None and type(t._grad._data) is not Var:
                    self._grad_owners.setdefault(id(t._grad), t)
        if kind == "write" and key not in self.grad_writes:
            self.grad_writes[key] = (t, t._grad)

    # Python state (pystate.py) -----------------------------------------------------------------

    def source(
        self, obj: Any, key: Any, index: int | None, attr: bool, label: str, value: Any
    ) -> Sym:
        """The runtime number `value` read from `obj[key]` (or its attribute `key`)."""
        k = (id(obj), key, index, attr)
        sym = self._source_ids.get(k)
        if sym is None:
            src = Source(obj, key, index, attr, label)
            src.type = type(value)
            self.sources.append(src)
            sym = self._source_ids[k] = Sym(value, f"s[{len(self.sources) - 1}]", self)
        return sym

    def describe(self, code: str) -> str:
        return pystate.describe(code, self.sources)

    def add_predicate(self, code: str, result: Any, what: str) -> None:
        self.predicates.setdefault(code, (result, what))

    def read_item(self, group: Any, key: Any, value: Any) -> Any:
        """A param group's `group[key]` while tracing: numbers are runtime scalars, a tuple of
        numbers (betas) a tuple of them; the parameter list is the optimizer's guard; anything
        else is guarded by value."""
        label = f"param_groups[{_group_index(group)}][{key!r}]"
        if key == "params":
            return value
        if type(value) in (int, float):
            return self.source(group, key, None, False, label, value)
        if type(value) is tuple and value and all(type(v) in (int, float) for v in value):
            self.add_predicate(
                f"len({self.source(group, key, None, False, label, value).code})",
                len(value),
                "length",
            )
            return tuple(
                self.source(group, key, i, False, f"{label}[{i}]", v) for i, v in enumerate(value)
            )
        self.add_predicate(self.source(group, key, None, False, label, value).code, value, "value")
        return value

    def note_module(self, m: Any) -> None:
        """`m` was called or read from while tracing: guard its structure and flags, and make
        its float attributes runtime scalars until the trace ends."""
        if id(m) in self.module_guards:
            return
        d = m.__dict__
        floats = {k for k, v in d.items() if type(v) is float}
        self.module_guards[id(m)] = ModuleGuard(m, floats)
        name = type(m).__name__
        for k in floats:
            sym = self.source(m, k, None, True, f"{name}.{k}", d[k])
            self._swapped.append((m, k, d[k], sym))
            d[k] = sym

    def note_optimizer(self, opt: Any) -> None:
        if id(opt) not in self.optimizer_guards:
            self.optimizer_guards[id(opt)] = OptimizerGuard(opt)

    def scalar_input(self, sym: Sym, dtype: np.dtype) -> Var:
        """The 0-d input of the tape that carries `sym` as a `dtype` number, computed from its
        sources at every call."""
        key = (sym.code, dtype)
        var = self._scalar_vars.get(key)
        if var is None:
            var = self._scalar_vars[key] = Var(Aval((), dtype), self.tape)
            self.captured_kinds.append((sym.code, dtype))
            self.tape.captured.append(var)
            self.tape.captured_labels.append(self.describe(sym.code))
        return var

    def lift(self, op: Any, args: tuple, params: dict) -> tuple[tuple, dict]:
        """An op's arguments with each Sym operand made a runtime scalar input (a 0-d tensor of
        the dtype the op computes in, where that gives the op the same result type as the
        number would), and each Sym parameter made a plain, guarded number."""
        if any(isinstance(v, Sym) or type(v) in (tuple, list) for v in params.values()):
            params = {k: pystate.concrete(v) for k, v in params.items()}
        if not any(isinstance(a, Sym) for a in args):
            return args, params
        plain = [a.value if isinstance(a, Sym) else a for a in args]
        avals = [a if is_scalar(a) else _aval(a) for a in plain]
        want = op.abstract(*avals, **params)
        dtype = result_type(*[a for a in avals if a is not None])
        lifted = []
        for a in args:
            if isinstance(a, Sym):
                a._live()
                t = Tensor._wrap(self.scalar_input(a, dtype))
                lifted.append(t)
            else:
                lifted.append(a)
        got = op.abstract(*[_aval(a) if isinstance(a, Tensor) else a for a in lifted], **params)
        if got != want:  # the number's weak type mattered: use it as a guarded literal
            return tuple(pystate.concrete(a) for a in args), params
        return tuple(lifted), params

    def _restore_python_state(self) -> list[str]:
        """Put the modules' float attributes back; returns those the trace assigned to."""
        changed = []
        for m, k, original, sym in reversed(self._swapped):
            d = m.__dict__
            if d.get(k) is not sym:
                changed.append(f"{type(m).__name__}.{k}")
            d[k] = original
        self._swapped.clear()
        return changed

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
                writes.append(StateWrite(rec.ref, WriteKind.DATA, rec.tensor._data, True, rec.var))
        for t, old in self.grad_writes.values():
            new = t._grad
            if new is old:
                continue  # same tensor object; a change of its data is a data write above
            if new is None:
                writes.append(
                    StateWrite(weakref.ref(t), WriteKind.GRAD, None, False, self._target(t))
                )
            elif type(new._data) is Var:
                writes.append(
                    StateWrite(weakref.ref(t), WriteKind.GRAD, new._data, False, self._target(t))
                )
            else:
                raise TracerError(
                    "a jitted function assigned an existing tensor to .grad; assign a value "
                    "computed inside the function instead"
                )
        tape.writes = writes
        self.restore()
        for g in self.module_guards.values():
            self._changed_attrs += g.assigned()
        if self._changed_attrs:
            raise TracerError(
                f"the jitted function assigned to {', '.join(self._changed_attrs)} (a Python "
                "attribute of a module) while tracing. Python state changes happen once, while "
                "tg.jit traces, not at every call. Change such values outside the jitted "
                "function (a module that sets itself up on its first call: call it once "
                "eagerly first), or keep the value in a tensor buffer (register_buffer) and "
                "update it in place."
            )

    def _target(self, t: Tensor) -> Any:
        rec = self._captured_ids.get(id(t))
        return rec.var if rec is not None else None

    def restore(self) -> None:
        self._changed_attrs = self._restore_python_state()
        for rec in self.captured:
            t = rec.tensor
            t._data = rec.array
            t.grad_fn = rec.grad_fn
            t._requires_grad = rec.requires_grad
            t._version[:] = rec.version
        for t, old in self.grad_writes.values():
            t._grad = old
        self.tape.done = True

    def guards(self) -> TensorGuards:
        """What a later call must find unchanged in the tensors this trace touched."""
        return TensorGuards(self)


class TensorGuards:
    """The guards on tensors of one trace, checked before every call: each captured tensor
    alive with the same shape, dtype and requires_grad; each `.grad` that was read before being
    set still None (`grad_none`), or set to a tensor of the same shape and dtype (`grad_set`:
    only looked at, `if p.grad is None`), or the very same tensor (`grad_same`: the tape reads
    its data). Kept as flat tuples so the check is one tight loop per kind."""

    __slots__ = ("captured", "grad_none", "grad_same", "grad_set")

    def __init__(self, tracer: Tracer) -> None:
        self.captured = tuple(
            (rec.ref, rec.var.shape, rec.var.dtype, rec.requires_grad) for rec in tracer.captured
        )
        none, same, aval = [], [], []
        for t, value in tracer.grad_reads.values():
            if value is None:
                none.append(weakref.ref(t))
            elif id(value) in tracer._captured_ids and not isinstance(
                tracer._captured_ids[id(value)].ref, GradOf
            ):
                same.append((weakref.ref(t), weakref.ref(value)))
            else:
                aval.append((weakref.ref(t), value.shape, value.dtype))
        self.grad_none = tuple(none)
        self.grad_same = tuple(same)
        self.grad_set = tuple(aval)

    def __bool__(self) -> bool:
        return bool(self.captured or self.grad_none or self.grad_same or self.grad_set)

    def tensors(self) -> list[Any]:
        """The captured tensors (alive), in the tape's order."""
        return [r() for r, _, _, _ in self.captured]

    def check(self) -> str | None:
        """None when every guard holds; else why not."""
        for ref, shape, dtype, requires_grad in self.captured:
            t = ref()
            if t is None:
                if isinstance(ref, GradOf):
                    return "a .grad the function reads is None now (or its tensor is gone)"
                return "a captured tensor no longer exists"
            d = t._data
            if d.shape != shape or d.dtype != dtype:
                was = Aval(shape, dtype)
                return f"a captured tensor changed from {was!r} to {d.dtype.name}{list(d.shape)}"
            if t._requires_grad is not requires_grad:
                return "a captured tensor's requires_grad changed"
        for ref in self.grad_none:
            t = ref()
            if t is None:
                return "a tensor whose .grad the function reads no longer exists"
            if t._grad is not None:
                return "a .grad the function reads was set (it was None when traced)"
        for ref, want in self.grad_same:
            t, g = ref(), want()
            if t is None or g is None or t._grad is not g:
                return "a .grad the function reads was replaced (or cleared)"
        for ref, shape, dtype in self.grad_set:
            t = ref()
            if t is None:
                return "a tensor whose .grad the function reads no longer exists"
            g = t._grad
            if g is None or g.shape != shape or g.dtype != dtype:
                return "a .grad the function reads was cleared or changed shape or dtype"
        return None


def _group_index(group: Any) -> Any:
    i = getattr(group, "index", None)
    return "?" if i is None else i


def _aval(x: Any) -> Any:
    if isinstance(x, Tensor):
        d = x._data
        return d.aval if type(d) is Var else Aval(d.shape, d.dtype)
    return x


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
    rngs = _generators(fn)
    tracing.tracer = tracer
    clocks = _guard_clocks()
    try:
        out = fn(*targs, **tkwargs)
        _check_generators(rngs)
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
        _unguard_clocks(clocks)
        tracing.tracer = None
    return tracer.tape, tracer, out_tree, out_leaves


# Values a trace would read once and freeze into every later call: random draws and the clock.
#
# Random generators are compared before and after the trace: Python's global `random`
# instance and numpy's global RandomState (so every `random.*` and legacy `np.random.*`
# function, however imported), and each `random.Random`, numpy `Generator` or `RandomState`
# the traced function reaches through its globals, its closure, a bound method's object or an
# object's attributes, a few levels deep. A draw changes the state: the trace raises.
# (A profiler hook that sees every call costs 4x the trace time, and misses numpy's Cython.)
#
# The clock has no state to compare: while a trace runs, the `time` module's clock functions
# are wrapped, and a call from outside the standard library (logging's timestamps are fine)
# raises. `from time import time` done before the trace keeps the unwrapped function.
_CLOCKS = (
    "time",
    "time_ns",
    "perf_counter",
    "perf_counter_ns",
    "monotonic",
    "monotonic_ns",
    "process_time",
    "process_time_ns",
)
_STDLIB = os.path.dirname(os.__file__)
_RNG_TYPES = (random.Random, np.random.Generator, np.random.RandomState)


def _guard_clocks() -> list[tuple[str, Any]]:
    saved = []
    for name in _CLOCKS:
        original = getattr(time, name)
        saved.append((name, original))
        setattr(time, name, _clock_wrapper(name, original))
    return saved


def _unguard_clocks(saved: list[tuple[str, Any]]) -> None:
    for name, original in saved:
        setattr(time, name, original)


def _clock_wrapper(name: str, original: Any) -> Any:
    def clock() -> Any:
        if tracing.tracer is not None:
            frame = sys._getframe(1)
            if not frame.f_code.co_filename.startswith(_STDLIB):
                raise TracerError(
                    f"{frame.f_code.co_filename}:{frame.f_lineno}: time.{name}() was called "
                    "while tg.jit traced the function. Tracing runs the Python code once, so its "
                    "result would be frozen into every later call. Read the clock outside the "
                    "jitted function and pass the value in as an argument."
                )
        return original()

    clock.__name__ = name
    clock.__wrapped__ = original
    return clock


def _generators(fn: Any) -> list[tuple[Any, bytes, str]]:
    found: dict[int, tuple[Any, str]] = {
        id(random._inst): (random._inst, "Python's random module"),
        id(np.random.mtrand._rand): (np.random.mtrand._rand, "numpy.random"),
    }
    seen: set[int] = set()
    while isinstance(getattr(fn, "__wrapped__", None), types.FunctionType):
        fn = fn.__wrapped__  # a wrapper of the user's function (jit's JointTrace)
    todo: list[tuple[Any, int, str]] = [(fn, 0, getattr(fn, "__name__", "f"))]
    while todo and len(seen) < 2000:
        obj, depth, name = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, _RNG_TYPES):
            found[id(obj)] = (obj, name)
            continue
        if depth >= 3:
            continue
        for k, v in _references(obj):
            if isinstance(v, (types.FunctionType, types.MethodType, functools.partial)) or (
                hasattr(v, "__dict__") and not isinstance(v, (type, types.ModuleType, Tensor))
            ):
                todo.append((v, depth + 1, k))
            elif isinstance(v, _RNG_TYPES):
                todo.append((v, depth + 1, k))
    return [(g, _rng_state(g), name) for g, name in found.values()]


def _references(obj: Any) -> list[tuple[str, Any]]:
    """The named objects a function or object reaches directly."""
    if isinstance(obj, types.FunctionType):
        code = obj.__code__
        refs = [(k, v) for k, v in obj.__globals__.items() if k in code.co_names]
        for name, cell in zip(code.co_freevars, obj.__closure__ or ()):
            try:
                refs.append((name, cell.cell_contents))
            except ValueError:  # an empty cell
                pass
        refs += list((obj.__kwdefaults__ or {}).items())
        refs += [(str(i), v) for i, v in enumerate(obj.__defaults__ or ())]
        return refs
    if isinstance(obj, types.MethodType):
        return [("__func__", obj.__func__), ("self", obj.__self__)]
    if isinstance(obj, functools.partial):
        return [("func", obj.func), *((str(i), a) for i, a in enumerate(obj.args))]
    if isinstance(obj, (type, types.ModuleType)) or not hasattr(obj, "__dict__"):
        return []
    refs = list(vars(obj).items())
    call = getattr(type(obj), "forward", None) or vars(type(obj)).get("__call__")
    if isinstance(call, types.FunctionType):
        refs.append(("forward", call))
    return refs


def _rng_state(g: Any) -> bytes:
    if isinstance(g, random.Random):
        return pickle.dumps(g.getstate())
    bg = g.bit_generator if isinstance(g, np.random.Generator) else g._bit_generator
    return pickle.dumps(bg.state)


def _check_generators(rngs: list[tuple[Any, bytes, str]]) -> None:
    for g, state, name in rngs:
        if _rng_state(g) != state:
            raise TracerError(
                f"{user_location()}: {name} ({type(g).__module__}.{type(g).__name__}) drew "
                "random numbers while tg.jit traced the function. Tracing runs the Python code "
                "once, so the draws would be frozen into every later call. Draw them outside "
                "and pass them in as an argument, or use tracegrad's random ops (tg.rand, "
                "tg.randn, tg.randint, dropout), which draw fresh numbers at every call."
            )


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
