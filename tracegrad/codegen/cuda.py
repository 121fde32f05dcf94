"""Stage 3 for NVIDIA GPUs: kernels -> Python source for `numba.cuda`.

The same kernels as the CPU target (`fuse.partition`), the same naming, comments and
size-generic parameters (`S`, `LF`, `LI`; codegen/cpu.py), written as one module per segment:

* each loop kernel becomes a `@cuda.jit` kernel with a **grid-stride loop** over its iteration
  space (`_t` runs over the flat element index, unravelled into `i0, i1, ...` for broadcast
  reads; a loop whose arrays all have its full shape indexes flat views instead);
* a float **sum or mean to a scalar** is accumulated in the same pass: per thread in float64,
  then per block by a tree in shared memory, then one `cuda.atomic.add` per block into a float64
  accumulator; a one-thread `..._finish` kernel divides (mean) and runs the 0-d epilogue;
* **every other reduction** (over some dims, max/min/prod/logsumexp, integer sums) reads its
  input from memory (the loop stores it) in a kernel with **one block per output element**:
  the block's threads stride over the reduced elements and combine by a tree in shared memory
  (logsumexp: the max first, then the sum of exp(x - max)). Reductions are in float64 for
  float inputs (int64 for integers), as on the CPU;
* matmul is the tiled shared-memory kernel of `cuda_helpers` (one launch per batch element for
  batched products), permute a gather kernel, reshape a view; indexing, cat, gather/scatter_add,
  full, im2col/col2im, conv2d (im2col + GEMM), max_pool2d (and its window argmax) and
  argmax/argmin have kernels here too (on the CPU they are numpy steps);
* a plain-Python host function `segment(...)` allocates the results and launches the kernels in
  order; launch sizes come from `grid(n)` / `reduce_grid(m)` at run time.

0-d values live in device arrays of shape (1,) between kernels (read as `x[0]`); inside a
kernel they are locals (`x_`), as body values are. A 0-d result is stored once when something
after its kernel reads it: prologue values by the kernel's first thread, the rest by the
`_finish` kernel. The kernels' own variables start with an underscore (`_t`, `_acc`), which no
tape name does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..fuse.partition import KernelKind
from ..ops import reduce as reduce_ops
from ..tape.ir import Var
from .common import CAST, Naming, cast, compute_dtype, eqn_comment, fold, scalar_expr, typed
from .cuda_helpers import HELPERS_VERSION  # (imported after the CUDA check: runtime/)
from .source import SourceWriter

# the fold of a max pass (log-sum-exp's first pass, max pooling) and of a sum pass
_MAX = reduce_ops.amax.reduction
_SUM = reduce_ops.sum.reduction


class _Kernel:
    """One `@cuda.jit` function being written: its body, and the parameters the body used (in
    order of first use), so the signature lists exactly what it reads."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.w = SourceWriter(level=1)  # the body of `def name(...):`
        self.params: dict[str, str] = {}  # kernel parameter -> host expression passed for it
        self.locals: set[int] = set()  # vars held in a local of this kernel

    def use(self, param: str, host: str | None = None) -> str:
        self.params.setdefault(param, host if host is not None else param)
        return param


# the kernel writer of each op this target lowers (besides loops): op name -> (which equations it
# covers, the CudaSegmentWriter method that writes them). Registered beside each writer with
# @_writes; ops without one run as host steps (cuda_executor.py)
@dataclass(frozen=True)
class _Writer:
    applies: Callable[[Any], bool]  # whether the kernel handles this equation (else: host step)
    method: str  # the CudaSegmentWriter method that writes it
    view: bool  # its result is a view of its first input (device memory is not copied)


_WRITERS: dict[str, _Writer] = {}


def _always(e: Any) -> bool:
    return True


def _writes(*ops: str, applies: Callable[[Any], bool] = _always, view: bool = False) -> Callable:
    def register(method: Callable) -> Callable:
        for op in ops:
            _WRITERS[op] = _Writer(applies, method.__name__, view)
        return method

    return register


def _basic_index(e: Any) -> bool:
    from ..ops.shape import ARRAY

    return not any(p is ARRAY for p in e.params["idx"]) and e.out.size > 0


def _sized(e: Any) -> bool:
    return e.inputs[0].size > 0 and e.out.size > 0


def cuda_lowers(e: Any) -> bool:
    """Whether the CUDA target has a kernel for this equation (others run as host steps)."""
    writer = _WRITERS.get(e.op.name)
    return writer is not None and writer.applies(e)


def cuda_returns_view(e: Any) -> bool:
    """Whether the CUDA target's result for this equation may be a view of its first input
    (a reshape, the checked indices themselves); loops, other kernels and host steps make new
    device arrays."""
    return cuda_lowers(e) and _WRITERS[e.op.name].view


class CudaSegmentWriter:
    """Writes the module of one segment (a run of loop and call kernels) for numba.cuda."""

    def __init__(
        self,
        naming: Naming,
        kernels: list[Any],
        inputs: list[Var],
        outputs: list[Var],
        cache: bool,
    ) -> None:
        self.n = naming
        self.kernels = kernels
        self.inputs = inputs
        self.outputs = outputs
        self.cache = cache
        self.host = SourceWriter(level=1)  # the body of `def segment(...):`
        self.defs: list[_Kernel] = []
        self.literal_defs: list[str] = []
        self._flat = False
        # which kernels read each var (a prologue value is stored only when another reads it)
        self.readers: dict[int, set[int]] = {}
        for i, k in enumerate(kernels):
            for e in k.eqns:
                for x in e.inputs:
                    if isinstance(x, Var):
                        self.readers.setdefault(id(x), set()).add(i)
        for v in outputs:
            self.readers.setdefault(id(v), set()).add(-1)

    # the module -------------------------------------------------------------------------------

    def source(self) -> str:
        for i, k in enumerate(self.kernels):
            if k.kind is KernelKind.LOOP:
                self._loop(i, k)
            else:
                self._call(i, k)
        outs = [self.n.array(v) for v in self.outputs]
        self.host.line(f"return ({', '.join(outs)},)" if outs else "return (0,)")

        w = SourceWriter()
        w.line("import numpy as np")
        w.line("from numba import cuda, float64, int64")
        w.line("")
        w.line("from tracegrad.codegen.cuda_helpers import (")
        w.line("    TPB, check_index, copy_of, empty, fill_zero, grid, matmul, reduce_grid, zeros,")
        w.line("    math_for_kernels as math,  # the math module (IEEE results on the simulator)")
        w.line(f"){'  # helpers v' + str(HELPERS_VERSION)}")
        w.line("")
        decorator = f"@cuda.jit(cache={self.cache})"
        for kd in self.defs:
            w.line("")
            w.line(decorator)
            w.line(f"def {kd.name}({', '.join(kd.params)}):")
            w.extend(kd.w)
            w.line("")
        w.line("")
        params = [self.n.array(v) for v in self.inputs] + ["S", "LF", "LI"]
        with w.block(f"def segment({', '.join(params)}):"):
            w.comment("host: allocate results and launch the kernels in order")
            if self.literal_defs:
                w.comment("literals, in the dtype they are used in")
                for line in self.literal_defs:
                    w.line(line)
        w.extend(self.host)
        return w.getvalue()

    # operands ---------------------------------------------------------------------------------

    def _literal(self, kd: _Kernel, x: Any, dtype: Any) -> str:
        slot = self.n.literal(x)
        name = "L" + slot[1] + slot[3:-1]  # LF[3] -> LF3
        self.literal_defs.append(f"{name} = {CAST[np.dtype(dtype).name]}({slot})")
        return kd.use(name)

    def _operand(self, kd: _Kernel, x: Any, space: tuple, dtype: Any) -> str:
        if not isinstance(x, Var):
            return self._literal(kd, x, dtype)
        if id(x) in kd.locals:
            return self.n.scalar(x)
        name = self.n.array(x)
        if x.ndim == 0:
            return f"{kd.use(name)}[0]"  # a 0-d value from another kernel: shape (1,)
        if self._flat:
            return f"{kd.use(name + '_1d', self._flat_view(name))}[_t]"
        lead = len(space) - x.ndim
        idx = []
        for d in range(x.ndim):
            broadcast = x.shape[d] == 1 and space[lead + d] != 1
            idx.append("0" if broadcast else f"i{lead + d}")
        return f"{kd.use(name)}[{', '.join(idx)}]"

    def _flat_view(self, name: str) -> str:
        return f"{name}.reshape({self._total})"

    def _assign(self, kd: _Kernel, e: Any, space: tuple) -> None:
        ctx = compute_dtype(e)
        ops = [self._operand(kd, x, space, ctx) for x in e.inputs]
        kd.w.comment(eqn_comment(self.n, e, ops))
        expr = scalar_expr(e, ops, lambda x: self._literal(kd, x, e.out.dtype), fast=False)
        kd.w.line(f"{self.n.scalar(e.out)} = {typed(e, expr, ops)}")
        kd.locals.add(id(e.out))

    def _alloc(self, v: Var) -> None:
        """Host: allocate v's device array (0-d values as shape (1,))."""
        shape = ", ".join(self.n.dims(v)) if v.ndim else "1"
        if v.ndim > 1:
            shape = f"({shape})"
        dtype = cast(v)
        self.host.line(f"{self.n.array(v)} = empty({shape}, {dtype})")

    def _launch(self, kd: _Kernel, config: str) -> None:
        self.defs.append(kd)
        args = ", ".join(kd.params.values())
        self.host.line(f"{kd.name}[{config}]({args})")

    # loop kernels -----------------------------------------------------------------------------

    def _loop(self, index: int, k: Any) -> None:
        n, host = self.n, self.host
        space = tuple(k.space)
        rank = len(space)
        body_ids = {id(e.out) for e in k.body}
        atomic = [
            e
            for e in k.reductions
            if e.out.ndim == 0 and e.op.reduction.atomic and e.inputs[0].dtype.kind == "f"
        ]
        deferred = [e for e in k.reductions if e not in atomic]
        stored = list(k.materialize)
        for e in deferred:  # a reduction in its own kernel reads its input from memory
            x = e.inputs[0]
            if id(x) in body_ids and all(v is not x for v in stored):
                stored.append(x)
        if rank:
            sv = k.space_var()
            host.comment(f"kernel {index}: loop over the shape of {n.array(sv)} (rank {rank})")
            for d, dim in enumerate(n.dims(sv)):
                host.line(f"n{d} = {dim}")
        else:
            host.comment(f"kernel {index}: scalar operations (one thread)")
        self._total = " * ".join(f"n{d}" for d in range(rank)) or "1"
        for v in stored:
            self._alloc(v)
        # prologue values that something after this kernel's main pass reads: another kernel,
        # or the epilogue (which runs in the separate `_finish` kernel)
        later = {id(x) for e in k.epilogue for x in e.inputs if isinstance(x, Var)}
        kept = [
            e
            for e in k.prologue
            if self.readers.get(id(e.out), set()) - {index} or id(e.out) in later
        ]
        for e in kept:
            self._alloc(e.out)
        for e in atomic:
            host.line(f"acc_{n.array(e.out)} = zeros(1, np.float64)")

        kd = _Kernel(f"kernel{index}")
        dims = [kd.use(f"n{d}") for d in range(rank)]
        del dims
        w = kd.w
        if k.prologue:
            w.comment("prologue: 0-d values every thread computes")
        for e in k.prologue:
            self._assign(kd, e, space)
        if kept:
            with w.block("if cuda.grid(1) == 0:  # store what later kernels read"):
                for e in kept:
                    w.line(f"{kd.use(n.array(e.out))}[0] = {n.scalar(e.out)}")
        if rank and (k.body or atomic):
            for e in atomic:
                w.line(f"acc_{n.array(e.out)}_ = 0.0  # this thread's partial sum (float64)")
            self._flat = self._flattenable(k, stored, deferred)
            w.line("_t = cuda.grid(1)")
            if self._flat:
                w.comment("every array here has the loop's full shape: flat indexing")
            with w.block(f"while _t < {self._total}:"):
                if not self._flat:
                    self._unravel(w, "_t", list(range(rank)))
                for e in k.body:
                    self._assign(kd, e, space)
                    if any(v is e.out for v in stored):
                        target = self._store_target(kd, e.out, rank)
                        w.line(f"{target} = {n.scalar(e.out)}")
                for e in atomic:
                    x = self._operand(kd, e.inputs[0], space, None)
                    w.comment(eqn_comment(n, e) + "  (accumulate)")
                    w.line(f"acc_{n.array(e.out)}_ += {x}")
                w.line("_t += cuda.gridsize(1)")
            self._flat = False
            if atomic:
                self._block_sums(kd, [f"acc_{n.array(e.out)}" for e in atomic])
        if rank and (k.body or atomic):
            self._launch(kd, f"grid({self._total})")
        elif kept:
            self._launch(kd, "1, 1")

        for e in deferred:
            self._reduce_kernel(index, e, space)

        if atomic or k.epilogue:
            for e in atomic + k.epilogue:
                self._alloc(e.out)
            fin = _Kernel(f"kernel{index}_finish")
            for d in range(rank):
                fin.use(f"n{d}")
            for e in atomic:
                name = n.array(e.out)
                count = " * ".join(f"n{d}" for d in e.params["dims"]) or "1"
                value = e.op.reduction.result(f"{fin.use('acc_' + name)}[0]", count)
                fin.w.comment(eqn_comment(n, e))
                fin.w.line(f"{n.scalar(e.out)} = {cast(e.out)}({value})")
                fin.locals.add(id(e.out))
            if k.epilogue:
                fin.w.comment("epilogue: 0-d values after the loop")
            for e in k.epilogue:
                self._assign(fin, e, space)
            for e in atomic + k.epilogue:
                fin.w.line(f"{fin.use(n.array(e.out))}[0] = {n.scalar(e.out)}")
            self._launch(fin, "1, 1")

    def _flattenable(self, k: Any, stored: list, deferred: list) -> bool:
        space = tuple(k.space)
        if len(space) < 2:
            return False
        made = {id(e.out) for e in k.body}
        arrays = [
            x
            for e in k.body + [r for r in k.reductions if r not in deferred]
            for x in e.inputs
            if isinstance(x, Var) and x.ndim and id(x) not in made
        ]
        return all(tuple(v.shape) == space for v in arrays + stored)

    def _unravel(self, w: SourceWriter, flat: str, dims: list[int]) -> None:
        """`i2 = t % n2; q = t // n2; i1 = q % n1; ...`: a flat index into loop indices."""
        if len(dims) == 1:
            w.line(f"i{dims[0]} = {flat}")
            return
        w.line(f"_q = {flat}")
        for d in reversed(dims[1:]):
            w.line(f"i{d} = _q % n{d}")
            w.line(f"_q = _q // n{d}")
        w.line(f"i{dims[0]} = _q")

    def _store_target(self, kd: _Kernel, v: Var, rank: int) -> str:
        name = self.n.array(v)
        if self._flat:
            return f"{kd.use(name + '_1d', self._flat_view(name))}[_t]"
        return f"{kd.use(name)}[{', '.join(f'i{d}' for d in range(rank))}]"

    def _block_sums(self, kd: _Kernel, accs: list[str]) -> None:
        """Per-thread partial sums -> one atomic add per block (a tree in shared memory)."""
        w = kd.w
        w.comment("combine the block's partial sums in shared memory, then one atomic add")
        for a in accs:
            w.line(f"sh_{a} = cuda.shared.array(TPB, float64)")
            w.line(f"sh_{a}[cuda.threadIdx.x] = {a}_")
        w.line("cuda.syncthreads()")
        w.line("_s = cuda.blockDim.x // 2")
        with w.block("while _s > 0:"):
            with w.block("if cuda.threadIdx.x < _s:"):
                for a in accs:
                    w.line(f"sh_{a}[cuda.threadIdx.x] += sh_{a}[cuda.threadIdx.x + _s]")
            w.line("cuda.syncthreads()")
            w.line("_s //= 2")
        with w.block("if cuda.threadIdx.x == 0:"):
            for a in accs:
                w.line(f"cuda.atomic.add({kd.use(a)}, 0, sh_{a}[0])")

    def _reduce_kernel(self, index: int, e: Any, space: tuple) -> None:
        """One block per output element; the block's threads stride over the reduced ones."""
        n, host = self.n, self.host
        rank = len(space)
        x = e.inputs[0]
        name = n.array(e.out)
        op = e.op.name
        reduced = [d for d in range(rank) if d in e.params["dims"]]
        kept = [d for d in range(rank) if d not in reduced]
        self._alloc(e.out)
        kd = _Kernel(f"kernel{index}_{op}_{name}")
        for d in range(rank):
            kd.use(f"n{d}")
        w = kd.w
        xs = kd.use(n.array(x))
        out = kd.use(name)
        m = " * ".join(f"n{d}" for d in kept) or "1"
        kcount = " * ".join(f"n{d}" for d in reduced) or "1"
        w.comment(eqn_comment(n, e) + "  (one block per element of the result)")
        integer = x.dtype.kind != "f"
        acc_t = "int64" if integer else "float64"
        w.line(f"_sh = cuda.shared.array(TPB, {acc_t})")
        w.line("_tid = cuda.threadIdx.x")
        w.line("_o = cuda.blockIdx.x")
        with w.block(f"while _o < {m}:"):
            if kept:
                self._unravel(w, "_o", kept)
            read = f"{xs}[{', '.join(f'i{d}' for d in range(rank))}]"
            # a shifted (log-sum-exp) reduction: a max pass, then a sum of exp(x - max)
            r = e.op.reduction
            passes = [(r, read)]
            if r.shifted:
                passes = [(_MAX, read), (_SUM, f"math.exp({read} - _shift)")]
            for reduction, value in passes:
                init = reduction.start(x.dtype).replace("np.inf", "math.inf")
                w.line(f"_acc = {init}")
                w.line("_r = _tid")
                with w.block(f"while _r < {kcount}:"):
                    self._unravel(w, "_r", reduced)
                    w.line(f"_v = {value}")
                    w.line(fold(reduction, "_acc", "_v"))
                    w.line("_r += cuda.blockDim.x")
                w.line("_sh[_tid] = _acc")
                w.line("cuda.syncthreads()")
                w.line("_s = cuda.blockDim.x // 2")
                with w.block("while _s > 0:"):
                    with w.block("if _tid < _s:"):
                        w.line(fold(reduction, "_sh[_tid]", "_sh[_tid + _s]"))
                    w.line("cuda.syncthreads()")
                    w.line("_s //= 2")
                w.line("_total = _sh[0]")
                w.line("cuda.syncthreads()  # _sh is reused next")
                if r.shifted and reduction is _MAX:
                    w.line("_shift = _total if abs(_total) < math.inf else 0.0")
            if r.shifted:
                w.line("_total = _shift + math.log(_total) if _total == _total else _total")
            elif r.finish != "{acc}":
                w.line(f"_total = {r.result('_total', kcount)}")
            with w.block("if _tid == 0:"):
                if e.out.ndim == 0:
                    idx = "0"
                else:
                    parts = []
                    for d in range(rank):
                        if d in reduced:
                            if e.params["keepdim"]:
                                parts.append("0")
                        else:
                            parts.append(f"i{d}")
                    idx = ", ".join(parts)
                w.line(f"{out}[{idx}] = {cast(e.out)}(_total)")
            w.line("_o += cuda.gridDim.x")
        host.comment(f"{op} of {n.array(x)}: one block per element of {name}")
        self._launch(kd, f"reduce_grid({m})")

    # library calls ----------------------------------------------------------------------------

    def _call(self, index: int, k: Any) -> None:
        n, host = self.n, self.host
        e = k.eqn
        host.comment(f"kernel {index}: {e.op.name}")
        host.comment(eqn_comment(n, e))
        getattr(self, _WRITERS[e.op.name].method)(index, e)

    @_writes("reshape", view=True)
    def _reshape(self, index: int, e: Any) -> None:
        shape = ", ".join(self.n.dims(e.out)) if e.out.ndim else "1"
        self.host.line(
            f"{self.n.array(e.out)} = {self.n.array(e.inputs[0])}.reshape({shape})"
            "  # a view: arrays here are contiguous"
        )

    # batched or 1-D x N-D: one tiled GEMM per batch element
    @_writes(
        "matmul",
        applies=lambda e: e.inputs[0].dtype.kind == "f" and e.inputs[0].dtype == e.inputs[1].dtype,
    )
    def _matmul(self, index: int, e: Any) -> None:
        x, y = (self.n.array(v) for v in e.inputs)
        self.host.line(f"{self.n.array(e.out)} = matmul({x}, {y}, {e.out.ndim})")

    @_writes("permute")
    def _permute(self, index: int, e: Any) -> None:
        """out[i0, i1, ...] = x[...]: out's dim d is x's dim perm[d]."""
        n = self.n
        perm = tuple(e.params["dims"])
        rank = len(perm)
        for d, dim in enumerate(n.dims(e.out)):
            self.host.line(f"n{d} = {dim}")
        self._total = " * ".join(f"n{d}" for d in range(rank)) or "1"
        self._alloc(e.out)
        kd = _Kernel(f"kernel{index}_permute")
        for d in range(rank):
            kd.use(f"n{d}")
        xs = kd.use(n.array(e.inputs[0]))
        out = kd.use(n.array(e.out))
        w = kd.w
        w.line("_t = cuda.grid(1)")
        with w.block(f"while _t < {self._total}:"):
            self._unravel(w, "_t", list(range(rank)))
            src = [""] * rank
            for d, p in enumerate(perm):
                src[p] = f"i{d}"
            w.line(f"{out}[{', '.join(f'i{d}' for d in range(rank))}] = {xs}[{', '.join(src)}]")
            w.line("_t += cuda.gridsize(1)")
        self._launch(kd, f"grid({self._total})")

    # indexing, creation and joining (the CPU runs these as numpy steps) ---------------------

    def _dims_of(self, v: Var, prefix: str) -> list[str]:
        """Host lines `m0 = S[..]` for v's dims; returns the names."""
        names = []
        for d, dim in enumerate(self.n.dims(v)):
            self.host.line(f"{prefix}{d} = {dim}")
            names.append(f"{prefix}{d}")
        return names

    def _grid_kernel(self, name: str, dims: list[str]) -> _Kernel:
        """A kernel with a grid-stride loop over the elements of a shape (`dims`, host names
        passed as n0, n1, ...): the caller writes the body inside `kd.w` at loop level."""
        kd = _Kernel(name)
        for d, host in enumerate(dims):
            kd.use(f"n{d}", host)
        kd.w.line("_t = cuda.grid(1)")
        return kd

    def _loop_over(self, kd: _Kernel, rank: int) -> Any:
        total = " * ".join(f"n{d}" for d in range(rank)) or "1"
        block = kd.w.block(f"while _t < {total}:")
        block.__enter__()
        if rank:
            self._unravel(kd.w, "_t", list(range(rank)))
        return block

    def _end_loop(self, kd: _Kernel, block: Any) -> None:
        kd.w.line("_t += cuda.gridsize(1)")
        block.__exit__(None, None, None)

    def _launch_over(self, kd: _Kernel, dims: list[str]) -> None:
        self._launch(kd, f"grid({' * '.join(dims) or '1'})")

    @_writes("full")
    def _full(self, index: int, e: Any) -> None:
        """out = value everywhere."""
        self._alloc(e.out)
        dims = self._dims_of(e.out, "m") if e.out.ndim else []
        kd = self._grid_kernel(f"kernel{index}_full", dims)
        out = kd.use(self.n.array(e.out))
        block = self._loop_over(kd, len(dims))
        value = self._literal(kd, e.params["value"], e.out.dtype)
        kd.w.line(f"{out}[{self._index_list(len(dims))}] = {value}")
        self._end_loop(kd, block)
        self._launch_over(kd, dims)

    def _index_list(self, rank: int) -> str:
        return ", ".join(f"i{d}" for d in range(rank)) or "0"

    def _basic_targets(self, kd: _Kernel, idx: tuple, shape: tuple) -> list[str]:
        """For a basic index (ints, slices, None, ...) of an array of `shape`: the index
        expression of each of its dims in terms of the region's loop indices i0, i1, ...
        Starts, steps and ints are literal slots (runtime values), the kind of each part is
        source."""
        parts = list(idx)
        real = sum(1 for p in parts if p is not None and p is not Ellipsis)
        if any(p is Ellipsis for p in parts):
            at = next(i for i, p in enumerate(parts) if p is Ellipsis)
            parts[at : at + 1] = [slice(None)] * (len(shape) - real)
        else:
            parts += [slice(None)] * (len(shape) - real)
        exprs = []
        out_dim = 0
        d = 0
        for p in parts:
            if p is None:
                out_dim += 1
                continue
            if isinstance(p, slice):
                start, _stop, step = p.indices(shape[d])
                a = self._literal(kd, start, np.int64)
                b = self._literal(kd, step, np.int64)
                exprs.append(f"{a} + {b} * i{out_dim}")
                out_dim += 1
            else:
                v = int(p)
                exprs.append(self._literal(kd, v + shape[d] if v < 0 else v, np.int64))
            d += 1
        return exprs

    def _region_dims(self, idx: tuple, shape: tuple) -> list[int]:
        from ..ops.core import Aval
        from ..ops.shape import _zero_strided

        return list(_zero_strided(Aval(shape, np.float64))[idx].shape)

    @_writes("getitem", applies=_basic_index)
    def _getitem(self, index: int, e: Any) -> None:
        """out[i...] = x[start + step * i ...] (basic indexing: a strided gather)."""
        x = e.inputs[0]
        self._alloc(e.out)
        dims = self._dims_of(e.out, "m") if e.out.ndim else []
        kd = self._grid_kernel(f"kernel{index}_getitem", dims)
        xs = kd.use(self.n.array(x))
        out = kd.use(self.n.array(e.out))
        block = self._loop_over(kd, len(dims))
        src = self._basic_targets(kd, e.params["idx"], x.shape)
        kd.w.line(f"{out}[{self._index_list(len(dims))}] = {xs}[{', '.join(src) or '0'}]")
        self._end_loop(kd, block)
        self._launch_over(kd, dims)

    @_writes("unindex", applies=_basic_index)
    def _unindex(self, index: int, e: Any) -> None:
        """getitem's adjoint for basic indexing: zeros, with g written into the region (a basic
        index never repeats an element, so plain stores)."""
        g = e.inputs[0]
        self._alloc(e.out)
        self.host.line(f"fill_zero({self.n.array(e.out)})")
        dims = self._dims_of(g, "m") if g.ndim else []
        kd = self._grid_kernel(f"kernel{index}_unindex", dims)
        gs = kd.use(self.n.array(g))
        out = kd.use(self.n.array(e.out))
        block = self._loop_over(kd, len(dims))
        dst = self._basic_targets(kd, e.params["idx"], tuple(e.params["shape"]))
        kd.w.line(f"{out}[{', '.join(dst) or '0'}] = {gs}[{self._index_list(len(dims))}]")
        self._end_loop(kd, block)
        self._launch_over(kd, dims)

    @_writes("setitem", applies=_basic_index)
    def _setitem(self, index: int, e: Any) -> None:
        """out = a copy of x, with the region of a basic index set to v (broadcast)."""
        x, v = e.inputs[0], e.inputs[1]
        target = self.n.array(e.out)
        self.host.line(f"{target} = copy_of({self.n.array(x)})")
        region = self._region_dims(e.params["idx"], x.shape)
        kd = _Kernel(f"kernel{index}_setitem")
        dims = []
        for d, size in enumerate(region):
            dims.append(self._literal(kd, size, np.int64))  # the region's extent: a runtime value
            kd.params.pop(dims[-1])
            kd.use(f"n{d}", dims[-1])
        kd.w.line("_t = cuda.grid(1)")
        out = kd.use(target)
        block = self._loop_over(kd, len(region))
        dst = self._basic_targets(kd, e.params["idx"], x.shape)
        if isinstance(v, Var):
            vshape = list(v.shape)
            while len(vshape) > len(region) and vshape[0] == 1:
                vshape = vshape[1:]
            lead = len(region) - len(vshape)
            vidx = [
                "0" if size == 1 and region[lead + k] != 1 else f"i{lead + k}"
                for k, size in enumerate(vshape)
            ]
            vidx = ["0"] * (v.ndim - len(vshape)) + vidx
            value = f"{kd.use(self.n.array(v))}[{', '.join(vidx) or '0'}]"
        else:
            value = self._literal(kd, v, x.dtype)
        kd.w.line(f"{out}[{', '.join(dst) or '0'}] = {value}")
        self._end_loop(kd, block)
        self._launch(kd, f"grid({' * '.join(dims) or '1'})")

    @_writes("cat")
    def _cat(self, index: int, e: Any) -> None:
        """Each input copied into its slab of the result (offsets summed from the sizes)."""
        dim = e.params["dim"]
        rank = e.out.ndim
        self._alloc(e.out)
        kd = _Kernel(f"kernel{index}_cat")
        for d in range(rank):
            kd.use(f"n{d}")
        src = kd.use("_src")
        out = kd.use(self.n.array(e.out))
        kd.use("_offset")
        kd.w.line("_t = cuda.grid(1)")
        block = self._loop_over(kd, rank)
        dst = [f"_offset + i{d}" if d == dim else f"i{d}" for d in range(rank)]
        kd.w.line(f"{out}[{', '.join(dst)}] = {src}[{self._index_list(rank)}]")
        self._end_loop(kd, block)
        self.defs.append(kd)
        self.host.line("_offset = 0")
        for x in e.inputs:
            dims = self._dims_of(x, "m")
            args = [*dims, self.n.array(x), self.n.array(e.out), "_offset"]
            self.host.line(f"{kd.name}[grid({' * '.join(dims)})]({', '.join(args)})")
            self.host.line(f"_offset += m{dim}")

    @_writes("gather")
    def _gather(self, index: int, e: Any) -> None:
        """out[i...] = x[i0, .., index[i...], ..] along dim (negative indices wrap; an index out
        of range is an IndexError, checked after the kernel)."""
        x, ix = e.inputs
        dim = e.params["dim"]
        self._alloc(e.out)
        size = self.n.dims(x)[dim]
        self.host.line("_err = zeros(1, np.int64)")
        dims = self._dims_of(ix, "m")
        kd = self._grid_kernel(f"kernel{index}_gather", dims)
        xs, ixs, out = (
            kd.use(self.n.array(x)),
            kd.use(self.n.array(ix)),
            kd.use(self.n.array(e.out)),
        )
        kd.use("_size", size)
        kd.use("_err")
        block = self._loop_over(kd, len(dims))
        here = self._index_list(len(dims))
        self._wrapped_index(kd, f"{ixs}[{here}]")
        src = ["_j" if d == dim else f"i{d}" for d in range(x.ndim)]
        kd.w.line(f"{out}[{here}] = {xs}[{', '.join(src)}]")
        self._end_loop(kd, block)
        self._launch_over(kd, dims)
        self._check_index("gather", dim, x, ix)

    @_writes("scatter_add", applies=lambda e: e.out.dtype.kind == "f")  # float atomics
    def _scatter_add(self, index: int, e: Any) -> None:
        """out = a copy of x; out[i0, .., index[i...], ..] += src[i...] with atomic adds (an
        index may repeat)."""
        x, ix, src = e.inputs
        dim = e.params["dim"]
        target = self.n.array(e.out)
        self.host.line(f"{target} = copy_of({self.n.array(x)})")
        self.host.line("_err = zeros(1, np.int64)")
        size = self.n.dims(x)[dim]
        dims = self._dims_of(ix, "m")
        kd = self._grid_kernel(f"kernel{index}_scatter_add", dims)
        ixs, ss, out = kd.use(self.n.array(ix)), kd.use(self.n.array(src)), kd.use(target)
        kd.use("_size", size)
        kd.use("_err")
        block = self._loop_over(kd, len(dims))
        here = self._index_list(len(dims))
        self._wrapped_index(kd, f"{ixs}[{here}]")
        dst = ["_j" if d == dim else f"i{d}" for d in range(x.ndim)]
        kd.w.line(f"cuda.atomic.add({out}, ({', '.join(dst)},), {ss}[{here}])")
        self._end_loop(kd, block)
        self._launch_over(kd, dims)
        self._check_index("scatter_add", dim, x, ix)

    def _wrapped_index(self, kd: _Kernel, read: str) -> None:
        w = kd.w
        w.line(f"_j = {read}")
        with w.block("if _j < 0:"):
            w.line("_j += _size")
        with w.block("if _j < 0 or _j >= _size:"):
            w.line("_err[0] = 1  # reported by the host after the kernel")
            w.line("_j = 0")

    def _shape_expr(self, v: Var) -> str:
        return f"({', '.join(self.n.dims(v))},)" if v.ndim else "()"

    def _check_index(self, op: str, dim: int, x: Var, ix: Var) -> None:
        shape, ishape = self._shape_expr(x), self._shape_expr(ix)
        self.host.line(f'check_index(_err, "{op}", {dim}, {shape}, {ishape})')

    @_writes("index_check", view=True)
    def _index_check(self, index: int, e: Any) -> None:
        """The indices themselves (an alias), after a kernel checked 0 <= i < size."""
        x = e.inputs[0]
        self.host.line(f"{self.n.array(e.out)} = {self.n.array(x)}  # the same indices")
        self.host.line("_err = zeros(1, np.int64)")
        dims = self._dims_of(x, "m") if x.ndim else []
        kd = self._grid_kernel(f"kernel{index}_index_check", dims)
        xs = kd.use(self.n.array(x))
        kd.use("_err")
        size = self._literal(kd, int(e.params["size"]), np.int64)
        block = self._loop_over(kd, len(dims))
        with kd.w.block(
            f"if {xs}[{self._index_list(len(dims))}] < 0 or "
            f"{xs}[{self._index_list(len(dims))}] >= {size}:"
        ):
            kd.w.line("_err[0] = 1")
        self._end_loop(kd, block)
        self._launch_over(kd, dims)
        shape = self._shape_expr(x)
        what = e.params["what"].replace('"', "'")
        self.host.line(f'check_index(_err, "{what}", None, {shape}, {shape})')

    # convolution, pooling, argmax --------------------------------------------------------

    def _window_params(self, kd: _Kernel, e: Any, with_padding: bool = True) -> list[str]:
        """stride, dilation (and padding) as literal slots: sh, sw, dh, dw, ph, pw."""
        p = e.params
        values = [*p["stride"], *p["dilation"]] + ([*p["padding"]] if with_padding else [])
        return [self._literal(kd, int(v), np.int64) for v in values]

    @_writes("unfold2d", applies=_sized)
    def _unfold2d(self, index: int, e: Any) -> None:
        """im2col: out[c, i, j, b, r, q] = x[b, c, r*sh + i*dh - ph, q*sw + j*dw - pw] (the
        padding value outside the input)."""
        x = e.inputs[0]
        self._alloc(e.out)
        self._unfold_into(index, e, x, self.n.array(e.out), e.params.get("pad_value", 0.0))

    def _unfold_into(self, index: int, e: Any, x: Var, target: str, pad_value: float) -> None:
        dims = self._dims_of_shape(target, 6)
        kd = self._grid_kernel(f"kernel{index}_unfold", dims)
        xs = kd.use(self.n.array(x))
        out = kd.use(target)
        kd.use("_h", self.n.dims(x)[2])
        kd.use("_w", self.n.dims(x)[3])
        sh, sw, dh, dw, ph, pw = self._window_params(kd, e)
        pad = self._literal(kd, pad_value, x.dtype)
        block = self._loop_over(kd, 6)
        w = kd.w
        w.comment("i0..i5 = channel, window row, window col, sample, output row, output col")
        w.line(f"_hi = i4 * {sh} + i1 * {dh} - {ph}")
        w.line(f"_wi = i5 * {sw} + i2 * {dw} - {pw}")
        with w.block("if 0 <= _hi < _h and 0 <= _wi < _w:"):
            w.line(f"{out}[i0, i1, i2, i3, i4, i5] = {xs}[i3, i0, _hi, _wi]")
        with w.block("else:"):
            w.line(f"{out}[i0, i1, i2, i3, i4, i5] = {pad}")
        self._end_loop(kd, block)
        self._launch_over(kd, dims)

    def _dims_of_shape(self, array: str, rank: int) -> list[str]:
        names = []
        for d in range(rank):
            self.host.line(f"m{d} = {array}.shape[{d}]")
            names.append(f"m{d}")
        return names

    @_writes("fold2d", applies=_sized)
    def _fold2d(self, index: int, e: Any) -> None:
        """col2im, as a gather (no atomics): out[b, c, h, w] = the sum of the columns whose
        window position lands on (h, w) -- for each window offset (i, j), the output position
        r = (h + ph - i*dh) / sh when that divides and is in range."""
        cols = e.inputs[0]
        self._alloc(e.out)
        dims = self._dims_of(e.out, "m")
        kd = self._grid_kernel(f"kernel{index}_fold", dims)
        cs = kd.use(self.n.array(cols))
        out = kd.use(self.n.array(e.out))
        for d, name in zip((1, 2, 4, 5), ("_kh", "_kw", "_oh", "_ow")):
            kd.use(name, self.n.dims(cols)[d])
        sh, sw, dh, dw, ph, pw = self._window_params(kd, e)
        block = self._loop_over(kd, 4)
        w = kd.w
        w.comment("i0..i3 = sample, channel, row, col of the (cropped) result")
        acc = "0.0" if e.out.dtype.kind == "f" else "0"
        w.line(f"_acc = {acc}")
        with w.block("for _i in range(_kh):"):
            w.line(f"_rr = i2 + {ph} - _i * {dh}")
            with w.block(f"if _rr >= 0 and _rr % {sh} == 0 and _rr // {sh} < _oh:"):
                with w.block("for _j in range(_kw):"):
                    w.line(f"_qq = i3 + {pw} - _j * {dw}")
                    with w.block(f"if _qq >= 0 and _qq % {sw} == 0 and _qq // {sw} < _ow:"):
                        w.line(f"_acc += {cs}[i1, _i, _j, i0, _rr // {sh}, _qq // {sw}]")
        w.line(f"{out}[i0, i1, i2, i3] = {cast(e.out)}(_acc)")
        self._end_loop(kd, block)
        self._launch_over(kd, dims)

    @_writes("conv2d", applies=_sized)
    def _conv2d(self, index: int, e: Any) -> None:
        """im2col (the unfold kernel), one tiled GEMM per group, then (O, N, OH, OW) ->
        (N, O, OH, OW)."""
        x, wt = e.inputs
        n, host = self.n, self.host
        groups = e.params["groups"]
        cols = f"cols_{n.array(e.out)}"
        kh, kw = n.dims(wt)[2], n.dims(wt)[3]
        o, cg = n.dims(wt)[0], n.dims(wt)[1]
        nb, oh, ow = n.dims(e.out)[0], n.dims(e.out)[2], n.dims(e.out)[3]
        c = n.dims(x)[1]
        host.line(f"{cols} = empty(({c}, {kh}, {kw}, {nb}, {oh}, {ow}), {cast(e.out)})")
        self._unfold_into(index, e, x, cols, 0.0)
        host.line(f"_k = {cg} * {kh} * {kw}")
        host.line(f"_nl = {nb} * {oh} * {ow}")
        prod = f"prod_{n.array(e.out)}"
        host.line(f"{prod} = empty(({o}, _nl), {cast(e.out)})")
        if groups == 1:
            host.line(f"matmul({n.array(wt)}.reshape({o}, _k), {cols}.reshape(_k, _nl), 2, {prod})")
        else:
            host.line(f"_og = {o} // {groups}")
            w3 = f"{n.array(wt)}.reshape({groups}, _og, _k)"
            c3 = f"{cols}.reshape({groups}, _k, _nl)"
            p3 = f"{prod}.reshape({groups}, _og, _nl)"
            with host.block(f"for _g in range({groups}):"):
                host.line(f"matmul({w3}[_g], {c3}[_g], 2, {p3}[_g])")
        self._alloc(e.out)
        dims = self._dims_of(e.out, "m")
        kd = self._grid_kernel(f"kernel{index}_conv_out", dims)
        ps = kd.use(prod.replace(prod, prod), f"{prod}.reshape({o}, {nb}, {oh}, {ow})")
        out = kd.use(n.array(e.out))
        block = self._loop_over(kd, 4)
        kd.w.line(f"{out}[i0, i1, i2, i3] = {ps}[i1, i0, i2, i3]")
        self._end_loop(kd, block)
        self._launch_over(kd, dims)

    def _window_kernel(self, index: int, e: Any, name: str, rank: int) -> tuple:
        """A grid kernel over the elements of a pooling op's output (rank dims), with the input
        (x, `_h`, `_w`) and the window's sizes as literal slots; returns (kd, input, output,
        host dims, the open loop block, the window's (kh, kw, sh, sw, dh, dw, ph, pw))."""
        x = e.inputs[0]
        self._alloc(e.out)
        dims = self._dims_of(e.out, "m")
        kd = self._grid_kernel(f"kernel{index}_{name}", dims)
        xs = kd.use(self.n.array(x))
        out = kd.use(self.n.array(e.out))
        kd.use("_h", self.n.dims(x)[2])
        kd.use("_w", self.n.dims(x)[3])
        kh = self._literal(kd, int(e.params["kernel"][0]), np.int64)
        kw = self._literal(kd, int(e.params["kernel"][1]), np.int64)
        window = (kh, kw, *self._window_params(kd, e))
        return kd, xs, out, dims, self._loop_over(kd, rank), window

    @_writes("max_pool2d", applies=_sized)
    def _max_pool2d(self, index: int, e: Any) -> None:
        """The maximum of each window (padding is -inf; NaN propagates, as eager)."""
        kd, xs, out, dims, block, window = self._window_kernel(index, e, "max_pool", 4)
        w = kd.w
        w.line("_best = -math.inf")
        with _over_window(w, window):
            with w.block("if 0 <= _hi < _h and 0 <= _wi < _w:"):
                w.line(f"_v = {xs}[i0, i1, _hi, _wi]")
                w.line(fold(_MAX, "_best", "_v"))
        w.line(f"{out}[i0, i1, i2, i3] = {cast(e.out)}(_best)")
        self._end_loop(kd, block)
        self._launch_over(kd, dims)

    @_writes("max_pool2d_argmax", applies=_sized)
    def _max_pool2d_argmax(self, index: int, e: Any) -> None:
        """The position (hi * W + wi) of each window's first element equal to its maximum
        `out` (the first NaN when that is NaN); H * W for a window with no element inside the
        input, as the CPU's kernel in ops/nn.py."""
        kd, xs, out, dims, block, window = self._window_kernel(index, e, "pool_argmax", 4)
        maxima = kd.use(self.n.array(e.inputs[1]))
        w = kd.w
        w.line(f"_m = {maxima}[i0, i1, i2, i3]")
        w.line("_nan = _m != _m")
        w.line("_k = _h * _w")
        with _over_window(w, window):
            with w.block("if _k == _h * _w and 0 <= _hi < _h and 0 <= _wi < _w:"):
                w.line(f"_v = {xs}[i0, i1, _hi, _wi]")
                with w.block("if _v == _m or (_nan and _v != _v):"):
                    w.line("_k = _hi * _w + _wi")
        w.line(f"{out}[i0, i1, i2, i3] = _k")
        self._end_loop(kd, block)
        self._launch_over(kd, dims)

    @_writes("argmax", applies=lambda e: e.inputs[0].size > 0)
    def _argmax(self, index: int, e: Any) -> None:
        self._arg_reduce(index, e, ">")

    @_writes("argmin", applies=lambda e: e.inputs[0].size > 0)
    def _argmin(self, index: int, e: Any) -> None:
        self._arg_reduce(index, e, "<")

    def _arg_reduce(self, index: int, e: Any, better: str) -> None:
        """One block per output element; (value, index) pairs combined by a tree in shared
        memory. The first extreme wins; a NaN beats every number (numpy's and PyTorch's)."""
        x = e.inputs[0]
        rank = x.ndim
        dim = e.params["dim"]
        reduced = list(range(rank)) if dim is None else [dim % rank]
        kept = [d for d in range(rank) if d not in reduced]
        self._alloc(e.out)
        for d, dimexpr in enumerate(self.n.dims(x)):
            self.host.line(f"m{d} = {dimexpr}")
        kd = _Kernel(f"kernel{index}_{e.op.name}")
        for d in range(rank):
            kd.use(f"n{d}", f"m{d}")
        xs = kd.use(self.n.array(x))
        out = kd.use(self.n.array(e.out))
        w = kd.w
        m = " * ".join(f"n{d}" for d in kept) or "1"
        kcount = " * ".join(f"n{d}" for d in reduced) or "1"
        vt = "float64" if x.dtype.kind == "f" else "int64"
        w.comment(eqn_comment(self.n, e) + "  (one block per element of the result)")
        w.line(f"_sh = cuda.shared.array(TPB, {vt})")
        w.line("_shi = cuda.shared.array(TPB, int64)")
        w.line("_tid = cuda.threadIdx.x")
        w.line("_o = cuda.blockIdx.x")
        with w.block(f"while _o < {m}:"):
            if kept:
                self._unravel(w, "_o", kept)
            w.line("_bv = 0" if vt == "int64" else "_bv = 0.0")
            w.line("_bi = -1")
            w.line("_r = _tid")
            with w.block(f"while _r < {kcount}:"):
                if rank:
                    self._unravel(w, "_r", reduced)
                read = f"{xs}[{', '.join(f'i{d}' for d in range(rank)) or '0'}]"
                w.line(f"_v = {read}")
                cond = f"_bi < 0 or (_v != _v and _bv == _bv) or _v {better} _bv"
                with w.block(f"if {cond}:"):
                    w.line("_bv = _v")
                    w.line("_bi = _r  # the flat index over the reduced dims")
                w.line("_r += cuda.blockDim.x")
            w.line("_sh[_tid] = _bv")
            w.line("_shi[_tid] = _bi")
            w.line("cuda.syncthreads()")
            w.line("_s = cuda.blockDim.x // 2")
            with w.block("while _s > 0:"):
                with w.block("if _tid < _s:"):
                    w.line("_va = _sh[_tid]")
                    w.line("_ia = _shi[_tid]")
                    w.line("_vb = _sh[_tid + _s]")
                    w.line("_ib = _shi[_tid + _s]")
                    w.comment("take b when a is empty, b is NaN and a is not (or an earlier")
                    w.comment("NaN), or both are numbers and b is better (or equal and earlier)")
                    take = (
                        f"_ib >= 0 and (_ia < 0 or (_vb != _vb and (_va == _va or _ib < _ia)) "
                        f"or (_va == _va and (_vb {better} _va or (_vb == _va and _ib < _ia))))"
                    )
                    with w.block(f"if {take}:"):
                        w.line("_sh[_tid] = _vb")
                        w.line("_shi[_tid] = _ib")
                w.line("cuda.syncthreads()")
                w.line("_s //= 2")
            with w.block("if _tid == 0:"):
                if e.out.ndim == 0:
                    idx = "0"
                else:
                    parts = []
                    for d in range(rank):
                        if d in reduced:
                            if e.params["keepdim"]:
                                parts.append("0")
                        else:
                            parts.append(f"i{d}")
                    idx = ", ".join(parts) or "0"
                w.line(f"{out}[{idx}] = _shi[0]")
            w.line("cuda.syncthreads()  # _sh is reused next")
            w.line("_o += cuda.gridDim.x")
        self._launch(kd, f"reduce_grid({m.replace('n', 'm')})")


@contextlib.contextmanager
def _over_window(w: Any, window: tuple) -> Iterator[None]:
    """The loops over a pooling window at output position (i2, i3): `_hi`, `_wi` are the input
    row and column of window offset (`_i`, `_j`), possibly in the padding."""
    kh, kw, sh, sw, dh, dw, ph, pw = window
    with w.block(f"for _i in range({kh}):"):
        w.line(f"_hi = i2 * {sh} + _i * {dh} - {ph}")
        with w.block(f"for _j in range({kw}):"):
            w.line(f"_wi = i3 * {sw} + _j * {dw} - {pw}")
            yield
