"""Stage 4's seam: turning a tape into something that runs.

`build_executable(tape, device, options, stats)` returns a callable
`(arg_arrays, captured_arrays) -> (outputs, write_values)`:

* `NumbaExecutable` (the default on the CPU): the tape is partitioned into kernels
  (`fuse.partition`), each run of loop kernels and library calls becomes one generated `@njit`
  function (`codegen.cpu`), compiled once per distinct source (`compile_cache`); the few ops
  without a lowering run as Python steps between those functions;
* `InterpreterExecutable`: the reference interpreter (`TRACEGRAD_EXECUTOR=interpreter`).

Tiered execution: unless told to block, a `NumbaExecutable` whose functions are neither in
memory nor in Numba's disk cache sends them to the compile worker (`compile_worker.py`) and is
`pending` until the worker has written them; `ready()` then loads them from the disk cache.
While it is pending, `tg.jit` runs the calls eagerly (runtime/jit.py); nothing here runs
uncompiled code.

Both take and return the same arrays, so the cache, the state write-back and the tests do not
depend on which one runs.
"""

from __future__ import annotations

import os
import sys
import threading
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..codegen.common import POOLED_BYTES
from ..codegen.driver import owned
from ..codegen.program import write_cpu_program
from ..fuse.partition import describe
from ..tape.interpret import interpret
from . import compile_cache, compile_worker


class InterpreterExecutable:
    """Runs a tape with the op table's numpy forwards."""

    kind = "interpreter"

    def __init__(self, tape: Any) -> None:
        self.tape = tape

    def __call__(self, args: Sequence[np.ndarray], captured: Sequence[np.ndarray]) -> tuple:
        outputs, writes = interpret(self.tape, args, captured)
        return _owned_results(outputs, writes, [*args, *captured])

    def source(self) -> str:
        return "# executed by the reference interpreter (tracegrad.tape.interpret)\n" + str(
            self.tape
        )


class BufferPool:
    """Output arrays for compiled loops and for the numpy steps that can write into one
    (`OpDef.forward_into`: matmul, im2col), reused between calls once nothing else holds them.

    A fresh large array costs page faults on first touch (more than the loop itself for a
    memory-bound kernel). An array handed out earlier is reused when its reference count says
    that only this pool holds it: the caller dropped the result, or it was a temporary. A
    result the user keeps (a Tensor, a numpy array, a view of it) holds a reference and is
    never reused."""

    SMALL = POOLED_BYTES  # (the program's buffer plan takes smaller ones from np.empty)

    def __init__(self, per_shape: int = 4) -> None:
        self._arrays: dict[tuple, list[np.ndarray]] = {}
        self._per_shape = per_shape
        self._lock = threading.Lock()

    def take(self, shape: tuple, dtype: np.dtype) -> np.ndarray:
        if _nbytes(shape, dtype) < self.SMALL:
            return np.empty(shape, dtype)  # small: no page faults worth avoiding
        key = (shape, dtype)
        with self._lock:
            arrays = self._arrays.setdefault(key, [])
            for a in arrays:
                # held by: the list, this loop's variable, getrefcount's argument
                if sys.getrefcount(a) == 3:
                    return a
            a = np.empty(shape, dtype)
            if len(arrays) < self._per_shape:
                arrays.append(a)
            return a


def _nbytes(shape: tuple, dtype: np.dtype) -> int:
    n = dtype.itemsize
    for s in shape:
        n *= s
    return n


class _FirstCall:
    """Stands in for a segment's function in the driver until its first call, which it makes
    under `compile_cache.compiling` (the lock file) and then puts the function itself in its
    place."""

    __slots__ = ("fn", "source", "namespace", "n")

    def __init__(self, fn: Any, source: str, namespace: dict, n: int) -> None:
        self.fn, self.source, self.namespace, self.n = fn, source, namespace, n

    def __call__(self, *args: Any) -> Any:
        with compile_cache.compiling(self.source):
            result = self.fn(*args)
        self.namespace[f"_segment{self.n}"] = self.fn
        return result


class NumbaExecutable:
    """Fused loops compiled with numba.njit; see the module docstring."""

    kind = "numba"

    def __init__(self, tape: Any, parallel: bool, stats: dict, block: bool = True) -> None:
        self.tape = tape
        self.stats = stats
        self.pool = BufferPool()
        self.program = write_cpu_program(tape, parallel, compile_cache.disk_enabled())
        self.kernels = self.program.kernels
        self.parallel = self.program.parallel
        # the segments' functions, compiled (or loaded from a cache level) from their sources
        self.functions = {n: compile_cache.load(seg.source) for n, seg in self.program.segments()}
        namespace = dict(self.program.driver_globals, _take=self.pool.take, _donate=self._donate)
        namespace.update({f"_segment{n}": fn for n, fn in self.functions.items()})
        if compile_cache.disk_enabled():
            # a function not yet called in this process compiles (or loads from Numba's cache)
            # at its first call: under the disk cache's lock, so that processes take turns
            for n, seg in self.program.segments():
                fn = self.functions[n]
                if not getattr(fn, "_tracegrad_seen", False):
                    namespace[f"_segment{n}"] = _FirstCall(fn, seg.source, namespace, n)
        exec(compile(self.program.driver_source, "<tracegrad driver>", "exec"), namespace)
        self.call = namespace["call"]
        self.namespace = namespace
        self._first_call_done = False
        # tiered execution: the functions the compile worker is building, and its job
        self.pending = False
        self.job: compile_worker.Job | None = None
        self.waiting: list[tuple[int, str, tuple]] = []
        self._finish_lock = threading.Lock()
        if not block and compile_cache.disk_enabled() and compile_worker.enabled():
            self._compile_in_background()
        if debug_level() >= 2:
            print(describe(self.kernels), file=sys.stderr)
        if debug_level() >= 3:
            print(self.source(), file=sys.stderr)

    @property
    def steps(self) -> list:
        return self.program.steps

    # tiered execution ---------------------------------------------------------------------

    def signature(self, n: int) -> tuple:
        """The Numba argument types of segment `n`'s call, from the driver's description (the
        same types Numba's dispatcher computes from the arrays at the call)."""
        from numba import typeof, types
        from numba.np.numpy_support import from_dtype

        sig = []
        for spec in self.program.segment_args[n]:
            if spec[0] == "array":
                sig.append(types.Array(from_dtype(spec[1]), spec[2], "C"))
            elif spec[0] == "scalar":
                sig.append(from_dtype(spec[1]))
            else:
                sig.append(typeof(self.namespace[spec[1]]))
        return tuple(sig)

    def _compile_in_background(self) -> None:
        waiting = []
        for n, seg in self.program.segments():
            fn = self.functions[n]
            sig = self.signature(n)
            if sig in fn.overloads or compile_cache.load_cached(fn, sig):
                continue  # compiled in this process already, or now loaded from the disk cache
            waiting.append((n, seg.source, sig))
        if not waiting:
            return
        directory = compile_cache.cache_dir()
        job = compile_worker.submit(str(directory), [(src, sig) for _, src, sig in waiting])
        if job is None:
            return  # no worker: the first call compiles them here
        self.job, self.waiting, self.pending = job, waiting, True

    def ready(self) -> bool:
        """Whether the compiled program can run now. While the worker compiles: False; once it
        has finished, its functions are loaded from the disk cache (or, if it failed, compiled
        here, with a warning) and this is True from then on."""
        if not self.pending:
            return True
        if not self.job.done.is_set():
            return False
        with self._finish_lock:
            if self.pending:
                self._finish()
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the worker (at most `timeout` seconds), then load; whether ready."""
        if self.pending and not self.job.wait(timeout):
            return False
        return self.ready()

    def _finish(self) -> None:
        job = self.job
        if job.error is not None:
            warnings.warn(
                "tracegrad: compiling in the background failed, so this process compiles the "
                f"functions itself; the worker reported:\n{job.error}",
                RuntimeWarning,
                stacklevel=4,
            )
        for n, source, sig in self.waiting:
            fn = self.functions[n]
            with compile_cache.compiling(source):
                fn.compile(sig)  # from Numba's disk cache (compiled here if the worker failed)
            if job.error is None:
                fn._tracegrad_seen = True  # counted below, not as this process's disk hit
            self.namespace[f"_segment{n}"] = fn
        if job.error is None:
            self.stats["compiles"] += job.compiled
            self.stats["disk_hits"] += len(self.waiting) - job.compiled
        self.pending = False
        self.waiting = []

    def __call__(self, args: Sequence[np.ndarray], captured: Sequence[np.ndarray]) -> tuple:
        result = self.call(args, captured)
        if not self._first_call_done:
            # every segment ran once: its dispatcher compiled, or loaded from Numba's cache
            self._first_call_done = True
            for fn in self.functions.values():
                self._count_first_call(fn)
            if os.environ.get("TRACEGRAD_CHECK_SIGNATURES") == "1":
                self.check_signatures()
        return result

    def check_signatures(self) -> None:
        """Raise if a segment was called with argument types other than `signature(n)`
        predicts (the compile worker would have compiled the wrong specialization, and the
        switch to the compiled tier would compile again here). The test suite turns this on
        (TRACEGRAD_CHECK_SIGNATURES=1) for every program it runs."""
        for n, _ in self.program.segments():
            fn = self.functions[n]
            sig = self.signature(n)
            if sig not in fn.overloads:
                called = "; ".join(str(k) for k in fn.overloads)
                raise AssertionError(
                    f"tracegrad: segment {n} was predicted to take {sig}, but was called with "
                    f"{called}"
                )

    def _donate(self, a: Any, args: Sequence[Any], shape: tuple, dtype: np.dtype) -> Any:
        """The captured array `a` as the buffer of its own new value when a loop may overwrite
        it (see _donations); else a buffer of the pool."""
        # ours to write (not a view that other tensors see differently, not read-only),
        # C-contiguous, and no argument of this call in it
        if (
            type(a) is np.ndarray
            and a.base is None
            and a.flags.c_contiguous
            and a.flags.writeable
            and not any(type(x) is np.ndarray and np.may_share_memory(a, x) for x in args)
        ):
            return a
        return self.pool.take(shape, dtype)

    def _count_first_call(self, fn: Any) -> None:
        # the dispatcher compiled now, or loaded machine code from Numba's disk cache
        seen = getattr(fn, "_tracegrad_seen", False)
        if seen:
            return
        fn._tracegrad_seen = True
        hits = sum(fn.stats.cache_hits.values()) if hasattr(fn, "stats") else 0
        if hits:
            self.stats["disk_hits"] += 1
        else:
            self.stats["compiles"] += 1

    def source(self) -> str:
        return self.program.source()


def _owned_results(outputs: tuple, writes: tuple, inputs: list) -> tuple:
    # results own their memory: an output must not alias an input or a captured tensor
    outputs = tuple(owned(o, inputs) for o in outputs)
    writes = tuple(None if w is None else owned(w, inputs) for w in writes)
    return outputs, writes


def debug_level() -> int:
    """TRACEGRAD_DEBUG: 1 tapes, 2 kernels, 3 generated source."""
    try:
        return int(os.environ.get("TRACEGRAD_DEBUG", "0"))
    except ValueError:
        return 0


def build_executable(
    tape: Any, device: str, parallel: bool = True, stats: dict | None = None, block: bool = True
) -> Any:
    """`block=False`: a CPU executable whose functions need compiling is `pending` while the
    compile worker builds them (see the module docstring); otherwise the first call compiles."""
    stats = stats if stats is not None else _null_stats()
    if device == "cuda":
        from .cuda_executor import CudaExecutable

        return CudaExecutable(tape, stats)
    if device != "cpu":
        raise ValueError(f"tg.jit: device {device!r} is not available; use 'cpu' or 'cuda'")
    if os.environ.get("TRACEGRAD_EXECUTOR", "numba") == "interpreter":
        return InterpreterExecutable(tape)
    return NumbaExecutable(tape, parallel, stats, block)


def _null_stats() -> dict:
    return {"compiles": 0, "disk_hits": 0}
