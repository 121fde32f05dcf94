"""Stage 4's seam: turning a tape into something that runs.

`build_executable(tape, device, options, stats)` returns a callable
`(arg_arrays, captured_arrays) -> (outputs, write_values)`:

* `NumbaExecutable` (the default on the CPU): the tape is partitioned into kernels
  (`fuse.partition`), each run of loop kernels and library calls becomes one generated `@njit`
  function (`codegen.cpu`), compiled once per distinct source (`compile_cache`); the few ops
  without a lowering run as Python steps between those functions;
* `InterpreterExecutable`: the reference interpreter (`TRACEGRAD_EXECUTOR=interpreter`).

Both take and return the same arrays, so the cache, the state write-back and the tests do not
depend on which one runs.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..codegen.common import Naming, python_step_label, tape_names
from ..codegen.cpu import SegmentWriter
from ..codegen.driver import DriverWriter, owned
from ..fuse.partition import KernelKind, describe, may_return_view, partition
from ..fuse.segments import fresh_values, group_segments, later_uses_of, segment_io
from ..tape.interpret import interpret
from ..tape.ir import Var, WriteKind
from . import compile_cache


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

    SMALL = 1 << 16

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


class _Segment:
    def __init__(
        self,
        kernels: list,
        inputs: list[Var],
        outputs: list[Var],
        source: str,
        fn: Any,
        buffers: list[Var],
        naming: Naming,
    ) -> None:
        self.kernels = kernels
        self.naming = naming
        # the segment's own shape table and literals (its names are local: Naming)
        self.S = naming.shape_table()
        self.LF, self.LI = naming.literals()
        self.inputs = inputs
        self.outputs = outputs
        self.buffers = buffers
        # (shape, dtype, from the pool?): small buffers are plain np.empty (BufferPool.SMALL)
        self.buffer_plan = [
            (v.shape, v.dtype, _nbytes(v.shape, v.dtype) >= BufferPool.SMALL) for v in buffers
        ]
        self.source = source
        self.fn = fn


class NumbaExecutable:
    """Fused loops compiled with numba.njit; see the module docstring."""

    kind = "numba"

    def __init__(self, tape: Any, parallel: bool, stats: dict) -> None:
        self.tape = tape
        self.stats = stats
        self.pool = BufferPool()
        self.kernels = partition(tape)
        names = tape_names(tape)
        self.consts = {
            id(e.out): (e.params["value"][()] if e.params["value"].ndim == 0 else e.params["value"])
            for e in tape.eqns
            if e.op.name == "const"
        }
        cache = "True" if compile_cache.disk_enabled() else "False"
        if parallel and any(_calls_blas(k) for k in self.kernels):
            # Graphs that call BLAS (matmul, conv) get serial loops. OpenBLAS's own threads
            # spin for about 0.1 s after each call; Numba's parallel loops in between wait for
            # the cores they hold. Measured on a ResNet-18 step (2 cores): parallel loops
            # 140-200 ms, serial 9 ms, eager 10 ms; with OpenBLAS's spin shortened
            # (OPENBLAS_THREAD_TIMEOUT=10) parallel was still slower than serial (13 vs 9 ms
            # at batch 1, 77 vs 61 ms at batch 16). The BLAS calls stay multi-threaded.
            parallel = False
        self.parallel = parallel

        def decorator(uses_prange: bool) -> str:
            # fastmath: only reassociation and contraction (FMA), which let LLVM vectorize
            # reductions (8x for a row sum of exp); no nnan/ninf/arcp: NaN and inf keep their
            # IEEE meaning
            return (
                f"@njit(parallel={parallel and uses_prange}, fastmath={{'reassoc', 'contract'}}, "
                f'error_model="numpy", cache={cache})'
            )

        # runs of compiled kernels form one segment; Python steps and matmul sit between.
        # matmul runs in numpy, between segments: inside Numba, np.dot calls SciPy's OpenBLAS,
        # a second copy of the library with a second thread pool, and the two pools' spinning
        # threads starved each other (a conv net's step: 44 ms in Numba vs 6 ms in numpy;
        # docs/compiler.md)
        groups = group_segments(self.kernels, lambda k: k.kind is KernelKind.PYTHON or _in_numpy(k))
        later_uses = later_uses_of(self.tape, groups)
        donations = self._donations()
        captured = {id(x): x for x in tape.captured}
        donated = {v: captured[old] for v, old in donations.items()}
        self.steps: list[Any] = []
        for g, used_later in zip(groups, later_uses):
            if isinstance(g, list):
                self.steps.append(self._segment(g, used_later, names, decorator, donated))
            else:
                self.steps.append(g)
        # the Python driver: runs the steps in order (codegen/driver.py)
        self.driver_source, namespace = DriverWriter(
            tape,
            self.kernels,
            self.steps,
            names,
            self.consts,
            fresh_values(self.kernels, may_return_view),
            _Segment,
            self.pool.take,
            self._donate,
        ).source()
        exec(compile(self.driver_source, "<tracegrad driver>", "exec"), namespace)
        self.call = namespace["call"]
        self._first_call_done = False
        if debug_level() >= 2:
            print(describe(self.kernels), file=sys.stderr)
        if debug_level() >= 3:
            print(self.source(), file=sys.stderr)

    def _segment(
        self, kernels: list, used_later: set, names: dict, decorator: Any, donated: dict
    ) -> _Segment:
        """One compiled segment: its source (local names), compiled or loaded from a cache."""
        inputs, outputs = segment_io(kernels, used_later)

        def write(display: bool) -> SegmentWriter:
            naming = Naming.of_segment(kernels, inputs, names, display)
            return SegmentWriter(
                naming, kernels, inputs, outputs, decorator, self.parallel, donated
            )

        writer = write(False)
        source = writer.source()
        seg = _Segment(
            kernels,
            inputs,
            outputs,
            source,
            compile_cache.load(source),
            writer.buffers,
            writer.n,
        )
        seg.display = lambda: write(True).source()  # f.source(): in the tape's names
        # buffers that are the captured array they replace (see _donations)
        seg.donated = [id(donated[id(v)]) if id(v) in donated else None for v in writer.buffers]
        return seg

    def _donations(self) -> dict[int, int]:
        """State writes computed in place: {new value var: captured var}.

        A parameter update `p_new = p - lr * g` is a loop that reads p[i] and writes
        p_new[i]; when nothing after that loop reads the old p, the loop can write p_new into
        p's own array. That saves a buffer (page faults: a ResNet has 11.7M parameters) and the
        copy back after the call, as JAX's buffer donation does. Conditions, all checked here
        once: a data write of a value that a loop materializes, of the captured var's shape and
        dtype, that the loop space equals (every read of the old value at the same index), not
        returned as an output, and the old value not read by any later kernel. The call checks
        the array itself (contiguous, writeable, not sharing memory with an argument)."""
        position: dict[int, int] = {}
        reads: dict[int, list[int]] = {}
        # a call or Python step may return a view of its input (numpy's reshape, transpose,
        # broadcast_to, basic indexing): a read of the view is a read of the array under it
        alias_of: dict[int, int] = {}
        for i, k in enumerate(self.kernels):
            for e in k.eqns:
                position[id(e.out)] = i
                for x in e.inputs:
                    if isinstance(x, Var):
                        root = alias_of.get(id(x), id(x))
                        reads.setdefault(id(x), []).append(i)
                        if root != id(x):
                            reads.setdefault(root, []).append(i)
            if may_return_view(k):
                x = k.eqn.inputs[0]
                if isinstance(x, Var):
                    alias_of[id(k.eqn.out)] = alias_of.get(id(x), id(x))
        # read after the last kernel: the tape's outputs and the values of state writes
        outputs = {id(x) for x in self.tape.outputs if isinstance(x, Var)}
        outputs |= {id(w.value) for w in self.tape.writes if isinstance(w.value, Var)}
        outputs |= {alias_of[v] for v in list(outputs) if v in alias_of}  # views returned
        targets: dict[int, int] = {}
        for w in self.tape.writes:
            if w.kind is WriteKind.DATA and isinstance(w.target, Var):
                targets[id(w.target)] = targets.get(id(w.target), 0) + 1
        donations: dict[int, int] = {}
        for w in self.tape.writes:
            v, old = w.value, w.target
            if w.kind is not WriteKind.DATA or not isinstance(v, Var) or not isinstance(old, Var):
                continue
            i = position.get(id(v))
            if i is None or targets[id(old)] != 1 or v.aval != old.aval:
                continue
            if id(old) in outputs or id(v) in {id(x) for x in self.tape.outputs}:
                continue
            k = self.kernels[i]
            if k.kind is not KernelKind.LOOP or not k.space or tuple(k.space) != tuple(old.shape):
                continue
            if id(v) not in {id(m) for m in k.materialize}:
                continue
            if any(r > i for r in reads.get(id(old), [])):
                continue  # a later kernel reads the old value
            # inside the loop, the store of v[i] must come after every read of old[i]: body
            # statements run in order, accumulations after the whole body (in-place updates
            # always satisfy this today; a pass that folded `p.copy_(new)` into `new` would not)
            order = [id(e.out) for e in k.body]
            vpos = order.index(id(v))
            late = [e for e in k.body[vpos + 1 :] + k.reductions if _reads(e, old)]
            if not late:
                donations[id(v)] = id(old)
        return donations

    def __call__(self, args: Sequence[np.ndarray], captured: Sequence[np.ndarray]) -> tuple:
        result = self.call(args, captured)
        if not self._first_call_done:
            # every segment ran once: its dispatcher compiled, or loaded from Numba's cache
            self._first_call_done = True
            for step in self.steps:
                if type(step) is _Segment:
                    self._count_first_call(step.fn)
        return result

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
        parts = [
            "# ---- driver (Python): runs the steps below in order (codegen/driver.py) ----\n"
            + self.driver_source
        ]
        for n, step in enumerate(self.steps):
            if isinstance(step, _Segment):
                parts.append(
                    f"# ---- compiled segment {n}, in the tape's names (the compiled text names "
                    f"its values locally: {step.naming.legend()}) ----\n{step.display()}"
                )
            else:
                e = step.eqn
                where = python_step_label(e)
                parts.append(f"# ---- step {n}: {e.op.name} runs in {where} ----\n")
        return "\n".join(parts)


def _owned_results(outputs: tuple, writes: tuple, inputs: list) -> tuple:
    # results own their memory: an output must not alias an input or a captured tensor
    outputs = tuple(owned(o, inputs) for o in outputs)
    writes = tuple(None if w is None else owned(w, inputs) for w in writes)
    return outputs, writes


def _reads(e: Any, v: Var) -> bool:
    return any(x is v for x in e.inputs)


def _in_numpy(k: Any) -> bool:
    """A library call that runs in numpy between segments (`Call.source` None: matmul)."""
    return k.kind is KernelKind.CALL and k.eqn.op.call.source is None


def _calls_blas(k: Any) -> bool:
    return any(e.op.uses_blas for e in k.eqns)


def debug_level() -> int:
    """TRACEGRAD_DEBUG: 1 tapes, 2 kernels, 3 generated source."""
    try:
        return int(os.environ.get("TRACEGRAD_DEBUG", "0"))
    except ValueError:
        return 0


def build_executable(
    tape: Any, device: str, parallel: bool = True, stats: dict | None = None
) -> Any:
    stats = stats if stats is not None else _null_stats()
    if device == "cuda":
        from .cuda_executor import CudaExecutable

        return CudaExecutable(tape, stats)
    if device != "cpu":
        raise ValueError(f"tg.jit: device {device!r} is not available; use 'cpu' or 'cuda'")
    if os.environ.get("TRACEGRAD_EXECUTOR", "numba") == "interpreter":
        return InterpreterExecutable(tape)
    return NumbaExecutable(tape, parallel, stats)


def _null_stats() -> dict:
    return {"compiles": 0, "disk_hits": 0}
