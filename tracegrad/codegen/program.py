"""Stage 3's product: a program, everything the code writers make of one tape.

`write_cpu_program(tape, parallel, cache)` partitions the tape (`fuse.partition`), groups the
kernels into segments (`fuse.segments`), writes each segment's `@njit` source (`cpu.py`) and
the Python driver that calls them in order (`driver.py`). The result is plain data: sources,
the vars each segment reads and writes, the shape tables and literal slots. `runtime/` compiles
the sources (through its caches), binds the compiled functions and the buffer pool into the
driver, and runs it; it decides nothing about the code. `CudaProgram` is the same for the CUDA
target (`cuda.py`), whose host steps run in numpy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..fuse.partition import KernelKind, may_return_view, partition
from ..fuse.segments import donations, fresh_values, group_segments, later_uses_of, segment_io
from ..tape.ir import Var
from .common import Naming, SegmentCode, python_step_label, tape_names
from .cpu import SegmentWriter
from .driver import DriverWriter


@dataclass(eq=False)
class CpuProgram:
    """A tape as compiled segments and numpy steps, run in order by a generated driver.

    steps          -- SegmentCode, or a kernel whose equation runs in numpy (matmul, the ops
                      without a lowering)
    driver_source  -- `call(args, captured)`; its globals are `driver_globals` plus, bound by
                      the runtime, `_segment{n}` (step n's compiled function), `_take` (the
                      buffer pool) and `_donate` (a captured array as its own new value's
                      buffer when the call may overwrite it)
    donations      -- {id of a state write's new value: id of the captured var it replaces}
    segment_args   -- {step n: the types of the arguments the driver passes segment n}, as
                      `DriverWriter.segment_args` describes them (the compile worker's input)
    """

    tape: Any
    kernels: list
    steps: list
    parallel: bool
    donations: dict[int, int]
    driver_source: str
    driver_globals: dict[str, Any]
    segment_args: dict[int, list[tuple]]

    def segments(self) -> list[tuple[int, SegmentCode]]:
        return [(n, s) for n, s in enumerate(self.steps) if isinstance(s, SegmentCode)]

    def source(self) -> str:
        """The program for people (`f.source()`): the driver, then each segment in the tape's
        names, and what runs between them."""
        parts = [
            "# ---- driver (Python): runs the steps below in order (codegen/driver.py) ----\n"
            + self.driver_source
        ]
        for n, step in enumerate(self.steps):
            if isinstance(step, SegmentCode):
                parts.append(
                    f"# ---- compiled segment {n}, in the tape's names (the compiled text names "
                    f"its values locally: {step.naming.legend()}) ----\n{step.display()}"
                )
            else:
                e = step.eqn
                parts.append(f"# ---- step {n}: {e.op.name} runs in {python_step_label(e)} ----\n")
        return "\n".join(parts)


def write_cpu_program(tape: Any, parallel: bool, cache: bool) -> CpuProgram:
    """`cache`: whether the segments' `@njit` keep their machine code on disk (`cache=True`)."""
    kernels = partition(tape)
    names = tape_names(tape)
    if parallel and any(e.op.uses_blas for k in kernels for e in k.eqns):
        # Graphs that call BLAS (matmul, conv) get serial loops. OpenBLAS's own threads
        # spin for about 0.1 s after each call; Numba's parallel loops in between wait for
        # the cores they hold. Measured on a ResNet-18 step (2 cores): parallel loops
        # 140-200 ms, serial 9 ms, eager 10 ms; with OpenBLAS's spin shortened
        # (OPENBLAS_THREAD_TIMEOUT=10) parallel was still slower than serial (13 vs 9 ms
        # at batch 1, 77 vs 61 ms at batch 16). The BLAS calls stay multi-threaded.
        parallel = False

    def decorator(uses_prange: bool) -> str:
        # fastmath: only reassociation and contraction (FMA), which let LLVM vectorize
        # reductions (8x for a row sum of exp); no nnan/ninf/arcp: NaN and inf keep their
        # IEEE meaning. nogil: other Python threads run while a segment computes (DDP's
        # communication thread finishing an all-reduce during the rest of the backward)
        return (
            f"@njit(parallel={parallel and uses_prange}, fastmath={{'reassoc', 'contract'}}, "
            f'error_model="numpy", nogil=True, cache={cache})'
        )

    # runs of compiled kernels form one segment; Python steps and matmul sit between.
    # matmul runs in numpy, between segments: inside Numba, np.dot calls SciPy's OpenBLAS,
    # a second copy of the library with a second thread pool, and the two pools' spinning
    # threads starved each other (a conv net's step: 44 ms in Numba vs 6 ms in numpy;
    # docs/compiler.md)
    groups = group_segments(kernels, lambda k: k.kind is KernelKind.PYTHON or _in_numpy(k))
    donated_ids = donations(tape, kernels)
    captured = {id(x): x for x in tape.captured}
    donated = {v: captured[old] for v, old in donated_ids.items()}
    steps: list[Any] = []
    for g, used_later in zip(groups, later_uses_of(tape, groups)):
        if isinstance(g, list):
            steps.append(_cpu_segment(g, used_later, names, decorator, parallel, donated))
        else:
            steps.append(g)
    consts = {
        id(e.out): (e.params["value"][()] if e.params["value"].ndim == 0 else e.params["value"])
        for e in tape.eqns
        if e.op.name == "const"
    }
    writer = DriverWriter(
        tape, kernels, steps, names, consts, fresh_values(kernels, may_return_view)
    )
    driver_source, driver_globals = writer.source()
    return CpuProgram(
        tape,
        kernels,
        steps,
        parallel,
        donated_ids,
        driver_source,
        driver_globals,
        writer.segment_args,
    )


def _cpu_segment(
    kernels: list, used_later: set, names: dict, decorator: Any, parallel: bool, donated: dict
) -> SegmentCode:
    inputs, outputs = segment_io(kernels, used_later)

    def write(display: bool) -> SegmentWriter:
        naming = Naming.of_segment(kernels, inputs, names, display)
        return SegmentWriter(naming, kernels, inputs, outputs, decorator, parallel, donated)

    writer = write(False)
    source = writer.source()
    return SegmentCode(
        kernels,
        inputs,
        outputs,
        writer.buffers,
        [id(donated[id(v)]) if id(v) in donated else None for v in writer.buffers],
        writer.n,
        source,
        lambda: write(True).source(),  # f.source(): in the tape's names
    )


def _in_numpy(k: Any) -> bool:
    """A library call that runs in numpy between segments (`Call.source` None: matmul)."""
    return k.kind is KernelKind.CALL and k.eqn.op.call.source is None


# ---- the CUDA target ------------------------------------------------------------------------


@dataclass(eq=False)
class CudaSegmentCode:
    """One generated CUDA module: a host function `segment(...)` launching its kernels."""

    inputs: list[Var]
    outputs: list[Var]
    naming: Naming
    source: str
    display: Callable[[], str]


@dataclass(eq=False)
class CudaProgram:
    """A tape as CUDA segments and host steps (numpy forwards on copies), run in order.

    consts -- {id of a const var: its host array}; fresh -- ids of the vars whose device
    arrays are new at every call (results that need no copy)."""

    tape: Any
    kernels: list
    steps: list
    consts: dict[int, np.ndarray]
    fresh: set[int]

    def source(self) -> str:
        parts = []
        for n, step in enumerate(self.steps):
            if isinstance(step, CudaSegmentCode):
                parts.append(
                    f"# ---- CUDA segment {n}, in the tape's names (the compiled text names its "
                    f"values locally: {step.naming.legend()}) ----\n{step.display()}"
                )
            else:
                parts.append(
                    f"# ---- step {n}: {step.eqn.op.name} runs on the host (numpy forward; "
                    "inputs copied to the host and the result back) ----\n"
                )
        return "\n".join(parts)


def write_cuda_program(tape: Any, cache: bool) -> CudaProgram:
    from .cuda import CudaSegmentWriter, cuda_lowers, cuda_returns_view

    kernels = partition(tape)
    names = tape_names(tape)
    groups = group_segments(
        kernels, lambda k: k.kind is not KernelKind.LOOP and not cuda_lowers(k.eqn)
    )
    steps: list[Any] = []
    for g, used_later in zip(groups, later_uses_of(tape, groups)):
        if not isinstance(g, list):
            steps.append(g)
            continue
        inputs, outputs = segment_io(g, used_later)
        naming = Naming.of_segment(g, inputs, names)
        source = CudaSegmentWriter(naming, g, inputs, outputs, cache).source()
        display = lambda g=g, inputs=inputs, outputs=outputs: CudaSegmentWriter(  # noqa: E731
            Naming.of_segment(g, inputs, names, display=True), g, inputs, outputs, cache
        ).source()
        steps.append(CudaSegmentCode(inputs, outputs, naming, source, display))
    consts = {
        id(e.out): np.ascontiguousarray(e.params["value"])
        for e in tape.eqns
        if e.op.name == "const"
    }
    fresh = fresh_values(
        kernels, lambda k: k.kind is not KernelKind.LOOP and cuda_returns_view(k.eqn)
    )
    return CudaProgram(tape, kernels, steps, consts, fresh)
