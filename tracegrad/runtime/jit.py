"""Stage 4: `tg.jit` — cache key -> cache -> executable -> write back state.

    >>> import tracegrad as tg
    >>> @tg.jit
    ... def f(x):
    ...     return ((2 * x + 1) ** 2).mean()
    >>> f(tg.ones(2, 3)), f(tg.zeros(2, 3)), f.stats["traces"]
    (tensor(9.), tensor(1.), 1)

A call flattens its arguments (pytrees) into leaves and builds the cache key: the tree
structure, each tensor/array leaf's shape and dtype, each Python number's type and value (numbers
are literals of the tape), the static arguments, grad mode, device and options. A miss traces the
function (stage 1), optimizes the tape (DCE, CSE, simplification) and builds an executable (the
seam in `executor.py`); a hit checks the entry's guards (captured tensors alive and of the same
shape/dtype/requires_grad, `.grad`s that were read still the same objects, and the Python state
the trace used: flags, modules' structure, facts about numbers, `trace/pystate.py`) and runs it,
passing the current values of its runtime scalars (learning rates and other numbers read from
param groups and modules). After every call the new values of captured state are written back
into their tensors.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..autograd.function import OutputEdge
from ..autograd.grad_mode import is_grad_enabled
from ..autograd.grad_mode import state as _grad_mode
from ..autograd.pytree import flatten, unflatten
from ..devices import is_device_array, to_host
from ..ops.core import is_scalar
from ..tape import check
from ..tape.errors import TracerError
from ..tape.ir import WriteKind
from ..tape.passes import optimize
from ..tape.split import split_joint
from ..tensor import Tensor, tracing
from ..trace.pystate import compile_code, compile_scalars, describe, module_edits, same
from ..trace.tracer import NeedsEagerCall, trace
from . import compile_worker
from .blas_threads import leave_one_core
from .compiled_function import AutogradProgram, CompiledFunctionBackward, JointTrace
from .executor import build_executable, debug_level


class _Static:
    """A static argument in the key: compared by value (so it must be hashable)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Static) and self.value == other.value

    def __hash__(self) -> int:
        return hash(self.value)

    def __repr__(self) -> str:
        return f"static({self.value!r})"


class Entry:
    """One traced and built signature of a jitted function, with the guards it runs under."""

    def __init__(self, tape: Any, tracer: Any, out_tree: Any, executable: Any, eager: bool):
        self.tape = tape
        self.out_tree = out_tree
        self.executable = executable
        self.eager = eager
        self.guards = tracer.guards()
        # a tuple of tensors (value_and_grad's result): no tree to rebuild
        self.flat_tuple = out_tree.kind == "tuple" and all(
            c.kind == "leaf" for c in out_tree.children
        )
        # Python state (trace/pystate.py): the sources of runtime numbers and their types, the
        # facts the trace used (predicates), the modules and optimizers it touched
        self.sources = tracer.sources
        self.source_types = tuple(s.type for s in self.sources)
        self.predicates = [
            (compile_code(code), expected, code, what)
            for code, (expected, what) in tracer.predicates.items()
        ]
        # all of them in one call: a tuple compared with the traced one
        self.all_predicates = compile_code("(" + "".join(f"{c}, " for c in tracer.predicates) + ")")
        self.expected = tuple(expected for expected, _ in tracer.predicates.values())
        # modules are checked when one was edited since they last passed (pystate._Edits),
        # optimizers and modules with list attributes always
        modules = list(tracer.module_guards.values())
        self.module_guards = [g for g in modules if not g.volatile]
        self.module_epoch = module_edits.count
        self.object_guards = [
            *(g for g in modules if g.volatile),
            *tracer.optimizer_guards.values(),
        ]
        # tape.captured, position by position: a captured tensor's weak reference, or None
        # for a runtime scalar, whose values `scalars` computes from the sources at every call
        self.captured = []
        scalars = []
        for kind in tracer.captured_kinds:
            if isinstance(kind, tuple):
                self.captured.append(None)
                scalars.append(kind)
            else:
                self.captured.append(kind.ref)  # a weak reference, or trace.GradOf
        self.scalars = compile_scalars(scalars) if scalars else None
        self.checked = bool(self.guards or self.sources or self.object_guards or self.module_guards)
        self._call = executable  # the first call counts compiles; then the CPU driver itself
        self._track([executable])

    def _track(self, executables: list) -> None:
        """Tiered execution: while the compile worker builds the executables' functions the
        calls run eagerly (JitFunction.__call__); `pending` until they are all loaded."""
        self.executables = executables
        self.pending = any(getattr(x, "pending", False) for x in executables)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait (at most `timeout` seconds each) until the compiled programs are loaded;
        whether they are."""
        for x in self.executables:
            if getattr(x, "pending", False) and not x.wait(timeout):
                return False
        self.pending = False
        return True

    def compiled_ready(self) -> bool:
        """Whether the compiled programs may run now (loading them once the worker is done)."""
        return self.wait(0)

    def guard_failure(self) -> str | None:
        """None when this entry may run now; else why not."""
        return self.check()[0]

    def check(self) -> tuple[str | None, list | None]:
        """(why this entry may not run now, or None; the values of its sources, read once for
        the guards and the runtime scalars)."""
        why = self.guards.check()
        if why is not None:
            return why, None
        values = None
        if self.sources:
            values = [s.get() for s in self.sources]
            if tuple(map(type, values)) != self.source_types:
                for s, v in zip(self.sources, values):
                    if s.check(v) is not None:
                        return s.check(v), None
            try:
                unchanged = self.all_predicates(values) == self.expected
            except Exception:  # noqa: BLE001 - one of them raised: found below
                unchanged = False
            if not unchanged:
                why = self._changed_predicate(values)
                if why is not None:
                    return why, None
        for g in self.object_guards:
            why = g.check()
            if why is not None:
                return why, None
        if self.module_epoch != module_edits.count:
            for g in self.module_guards:
                why = g.check()
                if why is not None:
                    return why, None
            self.module_epoch = module_edits.count
        return None, values

    def _changed_predicate(self, values: list) -> str | None:
        for fn, expected, code, what in self.predicates:
            try:
                now = fn(values)
            except Exception as e:  # noqa: BLE001 - the retrace raises it where it belongs
                now = e
            if not same(now, expected):
                text = describe(code, self.sources)
                return f"{text} ({what}) was {expected!r} when traced, is now {now!r}"
        return None  # NaN == NaN: unchanged after all

    def _captured_values(self, values: list | None) -> list:
        """tape.captured's arrays now: captured tensors' data, runtime scalars' values."""
        if self.scalars is None:
            return [ref()._data for ref in self.captured]
        if values is None:
            values = [s.get() for s in self.sources]
        numbers = iter(self.scalars(values))
        return [next(numbers) if ref is None else ref()._data for ref in self.captured]

    def _execute(self, leaves: list, captured: list) -> list:
        outputs, writes = self._call(leaves, captured)
        if self._call is self.executable:
            self._call = getattr(self.executable, "call", self.executable)
        if writes:
            for w, value in zip(self.tape.writes, writes):
                _write_back(w, value)
        return outputs

    def run(
        self, leaves: list, values: list | None = None, tensors: Any = None, call: Any = None
    ) -> Any:
        """Run on `leaves` (arrays); `values`: the sources' values `check` read; `tensors`: the
        argument tensors the leaves came from, `call` the (args, kwargs) of the call (only a
        differentiable entry uses them)."""
        outputs = self._execute(leaves, self._captured_values(values))
        wrap = Tensor._wrap
        out = [wrap(o) if type(o) is np.ndarray or is_device_array(o) else o for o in outputs]
        if self.flat_tuple:
            return tuple(out)
        return unflatten(self.out_tree, out)


class AutogradEntry(Entry):
    """An entry whose outputs require grad: the forward program runs now and leaves a
    `CompiledFunctionBackward` node that runs the backward program (compiled_function.py)."""

    def __init__(self, tape: Any, tracer: Any, out_tree: Any, executable: Any, program: Any):
        super().__init__(tape, tracer, out_tree, executable, False)
        self.program = program
        self.flat_tuple = False
        self._track([executable, program.backward])

    def run(
        self, leaves: list, values: list | None = None, tensors: Any = None, call: Any = None
    ) -> Any:
        program = self.program
        captured = self._captured_values(values)
        kept = {
            i: (captured[i].copy() if i in program.copy_captured else captured[i])
            for i in program.captured_residuals
        }
        outputs = self._execute(leaves, captured)
        wrap = Tensor._wrap
        n = program.n_outputs
        out = [wrap(o) if type(o) is np.ndarray or is_device_array(o) else o for o in outputs[:n]]
        residuals = []
        saved = []
        for r in program.split.residuals:
            if r.kind == "arg":
                residuals.append(leaves[r.index])
                t = tensors[r.index]
                if isinstance(t, Tensor):
                    saved.append((t, t._version, t._version[0]))
            elif r.kind == "captured":
                residuals.append(kept[r.index])
                ref = self.captured[r.index]
                if ref is not None and r.index not in program.copy_captured:
                    t = ref()
                    saved.append((t, t._version, t._version[0]))
            else:
                residuals.append(outputs[r.index])
                if r.index < n:
                    t = out[r.index]
                    saved.append((t, t._version, t._version[0]))
        targets = [tensors[k] for k in program.wrt_args]
        targets += [self.captured[i]() for i in program.wrt_captured]
        fn = self.fn
        node = CompiledFunctionBackward(program, targets, residuals, saved, (fn, *call))
        for k, i in enumerate(program.diff):
            t = out[i]
            t.grad_fn = node if k == 0 else OutputEdge(node, k)
            t._requires_grad = True
        return unflatten(self.out_tree, out)


def _write_back(write: Any, value: Any) -> None:
    t = write.tensor_ref()
    if t is None:
        return
    if is_device_array(value):
        # the CUDA target: state keeps living where it lives (a CUDA tensor gets the new device
        # array; a CPU tensor captured by a CUDA function gets its new value copied back)
        home = t._data if write.kind is WriteKind.DATA else t
        if write.kind is WriteKind.DATA and is_device_array(home):
            t._data = value
            t._version[0] += 1
            return
        if not is_device_array(getattr(home, "_data", home)):
            value = to_host(value)
    if write.kind is WriteKind.DATA:
        target = t._data
        if value is target:
            pass  # computed in place (a donated buffer: executor._donations)
        elif target.shape == value.shape and target.dtype == value.dtype and target.flags.writeable:
            np.copyto(target, value)  # in place: views and from_numpy arrays see it
        else:
            t._data = np.asarray(value, dtype=t.dtype)
        t._version[0] += 1
    elif value is None:
        t._grad = None
    else:
        t._grad = Tensor._wrap(value)


class JitFunction:
    """A function compiled on first call for each input signature. See `tg.jit`."""

    def __init__(
        self,
        fn: Callable,
        static_argnums: int | Sequence[int] = (),
        static_argnames: str | Sequence[str] = (),
        device: str = "cpu",
        parallel: bool = True,
        block: bool | None = None,
    ) -> None:
        if device not in ("cpu", "cuda"):
            raise ValueError(f"tg.jit: device must be 'cpu' or 'cuda', got {device!r}")
        self.fn = fn
        self.static_argnums = (
            (static_argnums,) if isinstance(static_argnums, int) else tuple(static_argnums)
        )
        self.static_argnames = (
            (static_argnames,) if isinstance(static_argnames, str) else tuple(static_argnames)
        )
        self.device = device
        self.parallel = bool(parallel)
        self.options = (("parallel", bool(parallel)),)
        # block=None: TRACEGRAD_JIT_BLOCK=1 or a distributed job blocks, else calls run eagerly
        # while a new trace compiles in the background (decided at each trace)
        self.block = block
        self.stats = {
            "traces": 0,
            "compiles": 0,
            "memory_hits": 0,
            "disk_hits": 0,
            "eager_calls": 0,
            "calls_while_compiling": 0,
        }
        self._cache: dict[Any, list[Entry]] = {}
        self._fast: dict[Any, Entry] = {}
        self._lock = threading.RLock()
        functools.update_wrapper(self, fn)

    # the key ---------------------------------------------------------------------------------

    def _split(self, args: tuple, kwargs: dict) -> tuple:
        """(dynamic leaves, key) for a call."""
        nargs = len(args)
        for i in self.static_argnums:
            if not -nargs <= i < nargs:
                raise ValueError(
                    f"jit: static_argnums {self.static_argnums} refers to argument {i}, but "
                    f"{getattr(self.fn, '__name__', 'the function')} was called with {nargs}"
                )
        static_pos = {i % nargs for i in self.static_argnums} if nargs else set()
        marked_args = []
        for i, a in enumerate(args):
            if i in static_pos:
                marked_args.append(_Static(_hashable(a, f"argument {i} (static_argnums)")))
            else:
                marked_args.append(a)
        marked_kwargs = {}
        for k, v in kwargs.items():
            if k in self.static_argnames:
                marked_kwargs[k] = _Static(_hashable(v, f"argument {k!r} (static_argnames)"))
            else:
                marked_kwargs[k] = v
        leaves, treedef = flatten(
            (tuple(marked_args), marked_kwargs), is_leaf=lambda x: isinstance(x, _Static)
        )
        key_leaves = []
        dynamic = []
        for i, leaf in enumerate(leaves):
            if isinstance(leaf, _Static):
                key_leaves.append(leaf)
            elif isinstance(leaf, Tensor):
                # requires_grad decides which inputs the compiled backward gives gradients
                where = "cpu" if type(leaf._data) is np.ndarray else "cuda"
                key_leaves.append(("tensor", leaf.shape, leaf.dtype, where, leaf._requires_grad))
                dynamic.append(leaf)
            elif isinstance(leaf, np.ndarray):
                key_leaves.append(("tensor", leaf.shape, leaf.dtype))
                dynamic.append(leaf)
            elif is_scalar(leaf):
                key_leaves.append(("number", type(leaf), leaf))
            else:
                key_leaves.append(("object", _hashable(leaf, f"argument leaf {i}")))
        key = (treedef, tuple(key_leaves), is_grad_enabled(), self.device, self.options)
        return leaves, dynamic, key

    # calling ------------------------------------------------------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if tracing.tracer is not None:
            return self.fn(*args, **kwargs)  # inside another trace: trace through (inline)
        # fast path: positional tensors that need no gradient, nothing static. The key is their
        # shapes and dtypes and grad mode, the same facts the full key records for them
        # fast path: positional tensors that need no gradient, numpy arrays and Python
        # numbers, nothing static. The key holds the facts the full key records for them:
        # shapes and dtypes, the numbers' types and values, grad mode
        fast_key = None
        if not kwargs and not self.static_argnums:
            sig = []
            leaves = []
            for a in args:
                ta = type(a)
                if ta is Tensor:
                    d = a._data
                    if a._requires_grad or type(d) is not np.ndarray:
                        break
                elif ta is np.ndarray:
                    d = a
                elif ta is float or ta is int:
                    sig.append(ta)
                    sig.append(a)
                    continue
                else:
                    break
                sig.append(d.shape)
                sig.append(d.dtype)
                leaves.append(d)
            else:
                fast_key = (tuple(sig), _grad_mode.enabled)
                entry = self._fast.get(fast_key)
                if entry is not None and not entry.eager:
                    if entry.pending and not entry.compiled_ready():
                        return self._while_compiling(args, kwargs)
                    why, values = entry.check() if entry.checked else (None, None)
                    if why is None:
                        self.stats["memory_hits"] += 1
                        dyn = args
                        if len(leaves) != len(args):  # numbers are literals, not leaves
                            dyn = [a for a in args if type(a) is not float and type(a) is not int]
                        return entry.run(leaves, values, dyn, (args, kwargs))
        leaves, dynamic, key = self._split(args, kwargs)
        if self.device == "cpu":
            _check_on_cpu(self.fn, dynamic, "argument")
        with self._lock:
            entry, why = self._lookup(key)
            if entry is None:
                self._explain_miss(key, why)
                try:
                    entry = self._build(args, kwargs, key)
                except NeedsEagerCall as e:
                    entry = None
                    if debug_level() >= 1:
                        print(f"tracegrad: eager call, not compiled: {e}", file=sys.stderr)
            else:
                self.stats["memory_hits"] += 1
        if entry is None:  # state created on this call (NeedsEagerCall): trace the next one
            self.stats["eager_calls"] += 1
            return self.fn(*args, **kwargs)
        if fast_key is not None:
            self._fast[fast_key] = entry
        if entry.eager:
            self.stats["eager_calls"] += 1
            return self.fn(*args, **kwargs)
        if entry.pending and not entry.compiled_ready():
            return self._while_compiling(args, kwargs)
        arrays = [t._data if isinstance(t, Tensor) else t for t in dynamic]
        return entry.run(arrays, None, dynamic, (args, kwargs))

    def _while_compiling(self, args: tuple, kwargs: dict) -> Any:
        """The first tier: the worker is compiling this trace; the call runs eagerly, with
        one core left to the worker (blas_threads.py)."""
        self.stats["calls_while_compiling"] += 1
        with leave_one_core():
            return self.fn(*args, **kwargs)

    def _lookup(self, key: Any) -> tuple[Entry | None, str]:
        entries = self._cache.get(key)
        if not entries:
            return None, "new signature"
        first = ""
        for entry in entries:
            why = entry.guard_failure()
            if why is None:
                return entry, ""
            first = first or why  # the newest trace's reason: the one the user just changed
        return None, first

    def _build(self, args: tuple, kwargs: dict, key: Any) -> Entry:
        static_pos = {i % len(args) for i in self.static_argnums} if args else set()
        dyn_args = []
        for i, a in enumerate(args):
            dyn_args.append(_StaticBox(a) if i in static_pos else a)
        dyn_kwargs = {
            k: (_StaticBox(v) if k in self.static_argnames else v) for k, v in kwargs.items()
        }
        fn = self.fn

        def unboxed(*a: Any, **kw: Any) -> Any:
            a = [x.value if isinstance(x, _StaticBox) else x for x in a]
            kw = {k: (v.value if isinstance(v, _StaticBox) else v) for k, v in kw.items()}
            return fn(*a, **kw)

        # outputs that require grad (and no backward inside): the reverse sweep is traced too
        joint = JointTrace(unboxed)
        tape, tracer, out_tree, out_leaves = trace(joint, dyn_args, dyn_kwargs)
        self.stats["traces"] += 1
        tape = optimize(tape)
        name = getattr(self.fn, "__name__", "f")
        if debug_level() >= 1:
            check(tape)
            print(f"tracegrad: traced {name}:\n{tape}", file=sys.stderr)
        if self.device == "cpu":
            captured = [rec.tensor for rec in tracer.captured]
            _check_on_cpu(self.fn, captured, "captured tensor")
        block = self.block
        if block is None:
            block = compile_worker.blocks_by_default()
        if not joint.joint:
            executable = build_executable(tape, self.device, self.parallel, self.stats, block)
            entry = Entry(tape, tracer, out_tree, executable, False)
        else:
            split = split_joint(tape, joint.n_args, joint.n_outputs)
            if debug_level() >= 1:
                print(
                    f"tracegrad: {name}'s forward program:\n{split.forward}\nits backward "
                    f"program:\n{split.backward}",
                    file=sys.stderr,
                )
            forward = build_executable(split.forward, self.device, self.parallel, self.stats, block)
            backward = build_executable(
                split.backward, self.device, self.parallel, self.stats, block
            )
            program = AutogradProgram(joint, tape, split, backward, self.device)
            entry = AutogradEntry(split.forward, tracer, joint.out_tree, forward, program)
        entry.fn = fn
        self._cache.setdefault(key, []).insert(0, entry)
        return entry

    def _explain_miss(self, key: Any, why: str) -> None:
        if os.environ.get("TRACEGRAD_EXPLAIN_CACHE_MISSES") != "1":
            return
        name = getattr(self.fn, "__name__", "f")
        if why != "new signature" or not self._cache:
            print(f"tracegrad: cache miss for {name}: {why or 'first call'}", file=sys.stderr)
            return
        nearest = min(self._cache, key=lambda k: _key_distance(k, key))
        print(f"tracegrad: cache miss for {name}: {_key_difference(nearest, key)}", file=sys.stderr)

    # inspection -------------------------------------------------------------------------------

    def tape(self, *args: Any, **kwargs: Any) -> Any:
        """The (optimized) tape that runs for these arguments: forward and adjoint equations."""
        return self._entry_for(args, kwargs).tape

    def source(self, *args: Any, **kwargs: Any) -> str:
        """The generated source for these arguments."""
        return self._entry_for(args, kwargs).executable.source()

    def _entry_for(self, args: tuple, kwargs: dict) -> Entry:
        _, _, key = self._split(args, kwargs)
        with self._lock:
            entry, _ = self._lookup(key)
            if entry is None:  # tracing leaves captured state as it was: nothing runs
                entry = self._build(args, kwargs, key)
        return entry

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every trace made so far runs compiled (the background compiles finished
        and were loaded); False if `timeout` seconds passed first. Benchmarks and tests that
        need the compiled tier call this after the first call (or use block=True)."""
        with self._lock:
            entries = [e for es in self._cache.values() for e in es]
        return all(e.wait(timeout) for e in entries)

    def clear_cache(self) -> None:
        """Forget every trace (e.g. after replacing a captured tensor by another object)."""
        with self._lock:
            self._cache.clear()
            self._fast.clear()


def _check_on_cpu(fn: Any, tensors: list, what: str) -> None:
    for t in tensors:
        if isinstance(t, Tensor) and is_device_array(t._data):
            raise RuntimeError(
                f"tg.jit({getattr(fn, '__name__', 'f')}) compiles for the CPU, but a {what} of "
                f"shape {tuple(t.shape)} is on cuda:0. Compile for the GPU with "
                "tg.jit(f, device='cuda'), or move the tensor with .cpu()."
            )


class _StaticBox:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _hashable(value: Any, what: str) -> Any:
    try:
        hash(value)
    except TypeError:
        raise TypeError(
            f"jit: {what} is a {type(value).__name__}, which is not hashable; static "
            "arguments are part of the cache key. Pass a tuple instead of a list, or make it "
            "a traced argument"
        ) from None
    return value


def _key_distance(a: Any, b: Any) -> int:
    return sum(x != y for x, y in zip(a, b)) + (len(a[1]) != len(b[1])) * 10


def _key_difference(old: Any, new: Any) -> str:
    names = ("argument structure", "arguments", "grad mode", "device", "options")
    for name, x, y in zip(names, old, new):
        if x != y:
            if name == "arguments" and len(x) == len(y):
                for i, (p, q) in enumerate(zip(x, y)):
                    if p != q:
                        return f"argument leaf {i} changed: {p!r} -> {q!r}"
            return f"{name} changed: {x!r} -> {y!r}"
    return "unknown"


def jit(
    fn: Callable | None = None,
    static_argnums: int | Sequence[int] = (),
    static_argnames: str | Sequence[str] = (),
    device: str = "cpu",
    parallel: bool = True,
    block: bool | None = None,
) -> Any:
    """Compile `fn`: trace it once per input signature into a tape (forward, and the adjoint
    equations of any backward it runs), optimize it, and run that from then on.

    Tiered: while a new trace's Numba functions compile in a background worker process, its
    calls run eagerly (the same results and state changes); they switch to the compiled
    program once it is loaded. `block=True` (or `TRACEGRAD_JIT_BLOCK=1` for the default)
    makes the first call compile and run compiled instead; `f.wait()` waits for the worker.

    `@tg.jit` and `tg.jit(f, static_argnums=(1,))` both work. Tensors the function reads
    without receiving them (parameters, optimizer state, `.grad`) are captured: read afresh at
    every call, and updated in place after it when the function changes them. A call whose
    outputs require grad runs a compiled forward and leaves a `CompiledFunctionBackward` node
    that runs a compiled backward. `tg.jit(module)` returns the module compiled (as
    `torch.compile(model)`; nn/compiled.py). See docs/jit.md.
    """
    if fn is None:
        return lambda f: jit(f, static_argnums, static_argnames, device, parallel, block)
    compile_module = getattr(fn, "__tg_jit__", None)
    if compile_module is not None:  # a module: tg.jit(model) (nn/compiled.py)
        return compile_module(
            static_argnums=static_argnums,
            static_argnames=static_argnames,
            device=device,
            parallel=parallel,
            block=block,
        )
    return JitFunction(fn, static_argnums, static_argnames, device, parallel, block)


def compile(
    model: Callable | None = None,
    *,
    fullgraph: bool = False,
    dynamic: bool | None = None,
    backend: str = "inductor",
    mode: str | None = None,
    options: dict | None = None,
    disable: bool = False,
) -> Any:
    """`torch.compile`'s signature over `tg.jit`, so that PyTorch code keeps its line.

    tracegrad compiles whole graphs (an unsupported construct raises `TracerError`, as
    `fullgraph=True` does; there are no graph breaks) with size-generic kernels (as
    `dynamic=True`), so `fullgraph` and `dynamic` change nothing; `mode` may be any of
    PyTorch's (`"default"`, `"reduce-overhead"`, `"max-autotune"`, ...: one compiler here);
    `backend` must be `"inductor"` (the default; the Numba CPU compiler here) and `options`
    empty. `disable=True` returns `model` itself."""
    if backend != "inductor":
        raise ValueError(
            f"tg.compile: backend={backend!r} is not available; tracegrad has one compiler "
            "(Numba), selected by the default backend='inductor'"
        )
    if options:
        raise ValueError(
            f"tg.compile: options={options!r}: inductor's options do not apply to tracegrad's "
            "compiler; pass no options (tg.jit(f, parallel=False) turns parallel loops off)"
        )
    modes = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
    if mode not in modes:
        raise ValueError(f"tg.compile: unknown mode {mode!r}; PyTorch's modes are {modes[1:]}")
    if model is None:
        return lambda m: compile(m, disable=disable)
    return model if disable else jit(model)


__all__ = ["compile", "jit", "JitFunction", "TracerError"]
