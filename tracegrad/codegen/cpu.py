"""Stage 3: kernels -> Python source for `numba.njit`.

One compiled *segment* (a run of loop kernels and library calls) becomes one `@njit` function.
For the value and gradient of `mean((2x+1)**2)` the whole tape is one segment with one loop::

    @njit(parallel=True, fastmath={'reassoc', 'contract'}, error_model="numpy", nogil=True,
          cache=True)
    def segment(a_, b, j, S, LF, LI):
        # literals, in the dtype they are used in
        LF0 = np.float32(LF[0])
        LI0 = np.float32(LI[0])
        ...
        # kernel 0: loop over the shape of d (rank 2)
        n0 = S[3, 0]
        n1 = S[3, 1]
        # c:f32[] = div a LF0
        c_ = np.float32((a_ / LF0))
        acc_k = 0.0
        # every array here has the loop's shape: one flat loop over the elements
        b_1d = b.ravel()
        j_1d = j.reshape(n0 * n1)
        for i0 in prange(n0 * n1):
            # d:f32[_,_] = mul b LI0
            d_ = np.float32((b_1d[i0] * LI0))
            ...
            j_1d[i0] = j_
            # k:f32[] = mean[dims=(0, 1), keepdim=False] f  (accumulate)
            acc_k += f_
        k_ = np.float32(acc_k / (n0 * n1))
        return (k_,)  # j: the buffer the caller passed in

Loops whose arrays broadcast run as nests (`for i0 in prange(n0): for i1 in range(n1): ...`,
a broadcast dim read at index 0). Names are local to the segment (`Naming`).

Sizes never appear in the source: loop bounds and allocation shapes come from `S` (the shape of
every var, one row per var), reduction sizes are products of `S` entries, and Python number
literals are read from `LF` (floats) and `LI` (ints and bools). The source depends only on the
graph's structure, dtypes, ranks and which dimensions broadcast, so a new batch size or a new
learning rate finds the same source and reuses the compiled function.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..fuse.partition import KernelKind
from ..ops.core import element_loops
from ..tape.ir import Var
from .common import CAST, Naming, cast, compute_dtype, eqn_comment, fold, scalar_expr, typed
from .numba_helpers import HELPERS_VERSION
from .source import SourceWriter

# elements below which a loop runs serially (PyTorch's at::internal::GRAIN_SIZE); a runtime
# value (a literal slot), so TRACEGRAD_PARALLEL_GRAIN changes it without recompiling
GRAIN_SIZE = 32768


def parallel_grain() -> int:
    """The grain for segments built now: TRACEGRAD_PARALLEL_GRAIN, else GRAIN_SIZE (the tests
    set 0 to run the parallel loops at small sizes)."""
    value = os.environ.get("TRACEGRAD_PARALLEL_GRAIN")
    try:
        return GRAIN_SIZE if value is None else max(0, int(value))
    except ValueError:
        raise ValueError(
            f"TRACEGRAD_PARALLEL_GRAIN must be a number of elements, got {value!r}"
        ) from None


def _row_depth(e: Any, rank: int) -> int:
    """The outermost loop depth d >= 1 such that every loop from d inwards is reduced by `e`
    (0 when the innermost loop is not reduced)."""
    dims = set(e.params["dims"])
    d = rank
    while d > 1 and d - 1 in dims:
        d -= 1
    return d if d < rank else 0


def _fold(w: Any, e: Any, acc: str, x: str) -> None:
    """Write the lines that fold `x` into the accumulator `acc` (`OpDef.reduction`)."""
    w.line(fold(e.op.reduction, acc, x))


def _counts_nans(e: Any) -> bool:
    """A 0-d reduction whose combine drops NaN (max, min) accumulates in a scalar that a
    `prange` loop reduces across threads; Numba recognizes only the bare combine there, so the
    NaNs are counted in a second (sum) reduction and make the result NaN at the end."""
    return e.out.ndim == 0 and e.op.reduction.nan_ignored and e.inputs[0].dtype.kind == "f"


def acc_init(e: Any) -> str:
    """The accumulator's start value (`OpDef.reduction`), for the reduced input's dtype."""
    return e.op.reduction.start(e.inputs[0].dtype)


class SegmentWriter:
    """Writes one `@njit` segment function for a run of loop and call kernels."""

    def __init__(
        self,
        naming: Naming,
        kernels: list[Any],
        inputs: list[Var],
        outputs: list[Var],
        decorator: Any,
        parallel: bool = True,
        donated: dict[int, Var] | None = None,
    ) -> None:
        self.n = naming
        self.parallel = parallel
        # {id(buffer var): the captured var whose array the caller may pass as that buffer}
        # (executor._donations): a loop reading the old value reads it through the buffer
        self.donated = {
            b: old for b, old in (donated or {}).items() if any(old is x for x in inputs)
        }
        self._through: dict[int, Var] = {}  # in the current loop: id(old) -> its buffer var
        self.kernels = kernels
        self.inputs = inputs
        self.outputs = outputs
        # arrays the loops write are allocated by the caller (numpy's allocator, and reused
        # between calls when nothing holds them) and passed in
        self.buffers = [v for k in kernels if k.kind is KernelKind.LOOP for v in k.materialize]
        self.decorator = decorator
        self.w = SourceWriter()
        self._flat = False  # inside a flattened loop: arrays are read as name_1d[i0]
        self._grain = False  # GRAIN defined
        self.literal_defs: list[str] = []
        # the form of each var inside this function (as DriverWriter.form is in the driver):
        # "array" (indexable), "scalar" (a local), "loop" (a local of the current loop body)
        self.form: dict[int, str] = {}
        for v in inputs:
            self.form[id(v)] = "scalar" if v.ndim == 0 else "array"

    def source(self) -> str:
        # the body first (it assigns literal slots), then the module around it
        with self.w.block("def segment(...):"):
            for i, k in enumerate(self.kernels):
                if k.kind is KernelKind.LOOP:
                    self._loop(i, k)
                else:
                    self._call(i, k)
            # the buffers the caller passed in are its already: only values made here return
            # (each returned array costs boxing code; 40 arguments and 20 results made an
            # empty function compile for 0.72 s, 1 result 0.37 s)
            passed = {id(v) for v in self.buffers}
            outs = [self._ref_out(v) for v in self.outputs if id(v) not in passed]
            self.w.line(f"return ({', '.join(outs)},)" if outs else "return (0,)")
        body = self.w.getvalue().splitlines()[1:]
        w = SourceWriter()
        w.line("import math")
        w.line("")
        w.line("import numpy as np")
        w.line("from numba import njit, prange")
        w.line("from numpy.lib.stride_tricks import as_strided")
        w.line("")
        w.line(
            "from tracegrad.codegen.numba_helpers import (  # helpers "
            f"v{HELPERS_VERSION}\n"
            "    add_rows, cat_into, check_index, erf_f32, exp_f32, take_rows, tanh_f32,\n"
            "    uniform_f32, uniform_f64,\n)"
        )
        w.line("")
        w.line("")
        params = [self._param(v) for v in self.inputs]
        params += [self.n.array(v) for v in self.buffers] + ["S", "LF", "LI"]
        # parallel only where a loop runs in parallel (Numba warns about parallel=True otherwise)
        w.line(self.decorator(any("in prange(" in line for line in body)))
        with w.block(f"def segment({', '.join(params)}):"):
            if self.literal_defs:
                w.comment("literals, in the dtype they are used in")
                for line in self.literal_defs:
                    w.line(line)
        return w.getvalue() + "\n".join(body) + "\n"

    def _param(self, v: Var) -> str:
        return self.n.scalar(v) if v.ndim == 0 else self.n.array(v)

    def _ref_out(self, v: Var) -> str:
        return self.n.scalar(v) if self.form[id(v)] == "scalar" else self.n.array(v)

    # operands ---------------------------------------------------------------------------------

    def _literal(self, x: Any, dtype: Any) -> str:
        """A literal as a local of the operation's dtype, converted once before any loop
        (float32 math stays float32, as in eager mode)."""
        slot = self.n.literal(x)
        name = "L" + slot[1] + slot[3:-1]  # LF[3] -> LF3, LI[2] -> LI2
        value = f"  # {x!r}" if self.n.display else ""  # f.source() shows the value
        self.literal_defs.append(f"{name} = {CAST[np.dtype(dtype).name]}({slot}){value}")
        return name

    def _operand(self, x: Any, space: tuple, in_loop: bool, dtype: Any = None) -> str:
        if not isinstance(x, Var):
            return self._literal(x, dtype) if dtype is not None else self.n.literal(x)
        kind = self.form.get(id(x))
        if kind in ("scalar", "loop"):
            return self.n.scalar(x)
        x = self._through.get(id(x), x)
        if not in_loop:
            raise AssertionError(f"array operand {self.n.array(x)} outside a loop")
        if self._flat:
            return f"{self.n.array(x)}_1d[i0]"
        # an array read inside the loop, broadcast against the iteration space: dims where the
        # array has size 1 and the loop does not are read at index 0 (size-generic: only the
        # pattern of broadcast dims is in the source, never a size)
        lead = len(space) - x.ndim
        idx = []
        for k in range(x.ndim):
            broadcast = x.shape[k] == 1 and space[lead + k] != 1
            idx.append("0" if broadcast else f"i{lead + k}")
        return f"{self.n.array(x)}[{', '.join(idx)}]" if idx else self.n.array(x)

    def _assign_scalar(self, e: Any, space: tuple, in_loop: bool) -> None:
        # literals take the dtype of the tensor operands (Python numbers are weakly typed)
        # (the dtype the op computes in: PyTorch's promotion of its operands; a condition does
        # not take part)
        ctx = compute_dtype(e)
        ops = [self._operand(x, space, in_loop, ctx) for x in e.inputs]
        self.w.comment(eqn_comment(self.n, e, ops))
        expr = scalar_expr(e, ops, self.n.literal)
        self.w.line(f"{self.n.scalar(e.out)} = {typed(e, expr, ops)}")

    # loop kernels -----------------------------------------------------------------------------

    def _loop(self, index: int, k: Any) -> None:
        w, n = self.w, self.n
        # a value an earlier kernel made and this loop recomputes (partition rule 8) is still
        # that kernel's array after this loop
        earlier = {id(e.out): self.form[id(e.out)] for e in k.body if id(e.out) in self.form}
        space = k.space
        rank = len(space)
        if rank:
            sv = k.space_var()
            w.comment(f"kernel {index}: loop over the shape of {n.array(sv)} (rank {rank})")
            for d, dim in enumerate(n.dims(sv)):
                w.line(f"n{d} = {dim}")
        else:
            w.comment(f"kernel {index}: scalar operations")
        for e in k.prologue:
            self._assign_scalar(e, space, False)
            self.form[id(e.out)] = "scalar"
        # accumulators: float sums accumulate in float64, integer ones in int64
        race = False
        for e in k.reductions:
            acc = "acc_" + n.array(e.out)
            kind = "f" if e.inputs[0].dtype.kind == "f" else "i"
            if e.op.reduction.shifted:  # two accumulators: the running max, the rescaled sum
                accs = [("acc_m_" + n.array(e.out), "-np.inf"), ("acc_s_" + n.array(e.out), "0.0")]
            else:
                accs = [(acc, acc_init(e))]
            if _counts_nans(e):
                accs.append(("nans_" + n.array(e.out), "0"))
            for name, init in accs:
                if e.out.ndim == 0:
                    w.line(f"{name} = {init}")
                else:
                    shape = ", ".join(n.dims(e.out))
                    dtype = "np.float64" if kind == "f" else "np.int64"
                    w.line(f"{name} = np.full(({shape},), {init}, dtype={dtype})")
            if e.out.ndim:
                race |= 0 in e.params["dims"]
            elif e.op.reduction.shifted:
                race = True  # a pair of scalars is no reduction Numba can split across threads
        self._read_through_buffers(k)
        if rank and self._flattenable(k):
            # every array in this loop has the loop's full shape: one flat loop over the
            # elements (C order), not a nest whose inner trip count may be 3 (a conv weight)
            w.comment("every array here has the loop's shape: one flat loop over the elements")
            for v in self._loop_arrays(k):
                view = (
                    "ravel()"
                    if id(v) not in {id(m) for m in k.materialize}
                    else (f"reshape({' * '.join(f'n{d}' for d in range(rank))})")
                )
                w.line(f"{n.array(v)}_1d = {n.array(v)}.{view}")
            self._flat = True
            total = " * ".join(f"n{d}" for d in range(rank))

            def flat_loop(loop: str) -> None:
                with w.block(f"for i0 in {loop}({total}):"):
                    self._nest([], k, space)

            if race:  # a log-sum-exp pair of scalars: no reduction Numba splits
                flat_loop("range")
            else:
                self._outer(rank, flat_loop)
            self._flat = False
        elif rank:
            # the outer loop runs in parallel unless a partial reduction over dim 0 would make
            # threads write the same accumulator element
            inner = [f"for i{d} in range(n{d}):" for d in range(1, rank)]
            if race:
                self._nest(["for i0 in range(n0):", *inner], k, space)
            else:
                self._outer(
                    rank, lambda loop: self._nest([f"for i0 in {loop}(n0):", *inner], k, space)
                )
        self._through = {}
        for e in k.reductions:
            self._finish_reduction(e, space)
        for e in k.epilogue:
            self._assign_scalar(e, space, False)
            self.form[id(e.out)] = "scalar"
        for e in k.body:
            if id(e.out) in {id(v) for v in k.materialize}:
                self.form[id(e.out)] = "array"
        self.form.update(earlier)

    def _outer(self, rank: int, emit: Any) -> None:
        """The outer loop of a kernel, written by `emit(loop)` with `loop` = "prange" or
        "range". Waking Numba's threads costs about 2-3 us per parallel loop (more with a
        reduction), more than a small loop takes: below PyTorch's grain size (32768 elements,
        at::internal::GRAIN_SIZE) the same loop runs serially. One function holds both, so a
        size crossing the grain reuses the compiled code (Numba compiles both in the time of
        the parallel one alone). The grain is a literal slot, not part of the source."""
        w = self.w
        if not self.parallel:
            emit("range")
            return
        with w.captured() as loop:
            emit("prange")
        if not self._grain:
            self._grain = True
            slot = self.n.literal(parallel_grain())
            self.n.grain_slot = len(self.n.ints) - 1
            self.literal_defs.append(f"GRAIN = {slot}  # loops smaller than this run serially")
        total = " * ".join(f"n{d}" for d in range(rank))
        if self.n.display:  # f.source(): the loop once (the compiled text has both copies)
            w.comment(f"in parallel; serially (the same loop) where {total} < GRAIN")
            w.lines([line[len(w.indent) :] for line in loop])  # (captured one level deeper)
            return
        with w.block(f"if {total} < GRAIN:"):
            w.comment("small: serial (the same loop as below, without waking the threads)")
        w.lines([line.replace(" in prange(", " in range(", 1) for line in loop])
        w.line("else:")
        w.lines(loop)

    def _read_through_buffers(self, k: Any) -> None:
        """A buffer this loop writes that may be the array of a captured value it reads (a
        parameter update `p_new = p - lr * g` written into p's own array, see
        executor._donations): the loop reads the old value through the buffer, so that the
        load and the store of an element use one array. Reading `p[i]` and writing `p_new[i]`
        as two arrays that are one at run time makes LLVM's overlap check fail, and the loop
        runs its scalar version (2x slower on ResNet-18's SGD update). When the caller passed
        a buffer of its own instead, the old values are copied into it first."""
        self._through = {}
        read = {id(x) for e in k.body for x in e.inputs if isinstance(x, Var)}
        for v in k.materialize:
            old = self.donated.get(id(v))
            if old is None or id(old) not in read:
                continue
            buf, src = self.n.array(v), self.n.array(old)
            self.w.comment(f"{buf} may be {src}'s own array: the loop reads {src} through {buf}")
            with self.w.block(f"if {buf}.ctypes.data != {src}.ctypes.data:"):
                self._copy_loop(buf, src, v.ndim)
            self._through[id(old)] = v

    def _copy_loop(self, dst: str, src: str, rank: int) -> None:
        """`dst[...] = src` as explicit loops: Numba compiles slice assignment's
        implementation for 3.5-5.5 s (per rank), a loop nest in 0.1 s."""
        for line in element_loops(dst, rank, f"{dst}[{{at}}] = {src}[{{at}}]"):
            self.w.line(line)

    def _loop_arrays(self, k: Any) -> list[Var]:
        """The arrays a loop kernel reads element by element, and the ones it writes."""
        out: dict[int, Var] = {}
        made_here = {id(e.out) for e in k.body}
        for e in k.body + k.reductions:
            for x in e.inputs:
                if (
                    isinstance(x, Var)
                    and id(x) not in made_here
                    and self.form.get(id(x)) not in ("scalar", "loop")
                    and id(x) not in self._through
                ):
                    out[id(x)] = x
        for v in k.materialize:
            out[id(v)] = v
        return list(out.values())

    def _flattenable(self, k: Any) -> bool:
        """A loop whose arrays all have its full shape (no broadcast reads) and whose
        reductions are total can run as one flat loop over the elements."""
        if len(k.space) < 2 or any(e.out.ndim for e in k.reductions):
            return False
        space = tuple(k.space)
        return all(tuple(v.shape) == space for v in self._loop_arrays(k))

    def _row_reductions(self, k: Any, depth: int, rank: int) -> list:
        """Reductions over every loop inside `depth` (a row sum, a row max; BatchNorm's sum
        over (0, 2, 3) is one over the loops inside depth 2): they accumulate in a local
        variable, kept in a register, and are combined into the accumulator array once per row.
        Each reduction is taken at the outermost such depth."""
        if depth == 0:
            return []
        return [
            e
            for e in k.reductions
            if e.out.ndim and not e.op.reduction.shifted and _row_depth(e, rank) == depth
        ]

    def _acc_index(self, e: Any, space: tuple) -> str:
        dims, keep = e.params["dims"], e.params["keepdim"]
        parts = []
        for d in range(len(space)):
            if d in dims:
                if keep:
                    parts.append("0")
            else:
                parts.append(f"i{d}")
        return ", ".join(parts)

    def _row_logsumexps(self, k: Any, depth: int, rank: int) -> list:
        """logsumexp over the innermost dim of an array that is ready before the loop: computed
        per row in two short inner loops (the row's max, then the sum of exp(x - max)). The
        second read of the row hits the cache, and both loops vectorize, unlike the one-pass
        running update."""
        if depth != rank - 1 or depth == 0:
            return []
        return [
            e
            for e in k.reductions
            if e.op.reduction.shifted
            and tuple(e.params["dims"]) == (rank - 1,)
            and self.form.get(id(e.inputs[0])) == "array"
        ]

    def _nest(self, headers: list[str], k: Any, space: tuple, depth: int = 0) -> None:
        if headers:
            w = self.w
            rows = self._row_reductions(k, depth, len(space))
            for e in rows:
                w.line(f"row_{self.n.array(e.out)} = {acc_init(e)}")
            lses = self._row_logsumexps(k, depth, len(space))
            for e in lses:
                name = self.n.array(e.out)
                x = self._operand(e.inputs[0], space, True)
                f32 = e.inputs[0].dtype == np.float32
                w.comment(eqn_comment(self.n, e) + "  (row max, then row sum of exp)")
                w.line(f"rowmax_{name} = -np.inf")
                with w.block(headers[0]):
                    w.line(f"rowmax_{name} = max(rowmax_{name}, {x})")
                w.line(f"shift_{name} = rowmax_{name} if abs(rowmax_{name}) < np.inf else 0.0")
                if f32:
                    w.line(f"shift32_{name} = np.float32(shift_{name})")
                w.line(f"rowsum_{name} = 0.0")
                with w.block(headers[0]):
                    if f32:
                        w.line(f"rowsum_{name} += exp_f32(np.float32({x} - shift32_{name}))")
                    else:
                        w.line(f"rowsum_{name} += math.exp({x} - shift_{name})")
                idx = self._acc_index(e, space)
                w.line(f"acc_m_{name}[{idx}] = shift_{name}")
                w.line(f"acc_s_{name}[{idx}] = rowsum_{name}")
            self._skip = getattr(self, "_skip", set()) | {id(e) for e in lses}
            with w.block(headers[0]):
                self._nest(headers[1:], k, space, depth + 1)
            for e in rows:
                name = self.n.array(e.out)
                acc = f"acc_{name}[{self._acc_index(e, space)}]"
                if set(e.params["dims"]) == set(range(depth, len(space))):
                    w.line(f"{acc} = row_{name}")  # one row per element: store it
                else:  # outer dims are reduced too: combine the rows
                    _fold(w, e, acc, f"row_{name}")
            return
        n, w = self.n, self.w
        materialized = {id(v) for v in k.materialize}
        idx = ", ".join(f"i{d}" for d in range(len(space)))
        skip = getattr(self, "_skip", set())
        if not k.body and all(id(e) in skip for e in k.reductions):
            w.line("pass  # everything in this loop was done per row above")
            return
        for e in k.body:
            self._assign_scalar(e, space, True)
            self.form[id(e.out)] = "loop"
            if id(e.out) in materialized:
                target = f"{n.array(e.out)}_1d[i0]" if self._flat else f"{n.array(e.out)}[{idx}]"
                w.line(f"{target} = {n.scalar(e.out)}")
        rows = {id(e) for d in range(1, len(space)) for e in self._row_reductions(k, d, len(space))}
        for e in k.reductions:
            if id(e) in getattr(self, "_skip", ()):
                continue  # a row logsumexp, done before this loop
            x = self._operand(e.inputs[0], space, True)
            if id(e) in rows:
                acc = "row_" + n.array(e.out)
            elif e.out.ndim:
                acc = f"acc_{n.array(e.out)}[{self._acc_index(e, space)}]"
            else:
                acc = "acc_" + n.array(e.out)
            w.comment(eqn_comment(n, e) + "  (accumulate)")
            if e.op.reduction.shifted:
                self._logsumexp_update(e, acc[len("acc_") :], x)
            elif _counts_nans(e):
                w.line(e.op.reduction.combine.format(acc=acc, x=x))
                w.line(f"nans_{n.array(e.out)} += {x} != {x}")
            else:
                _fold(w, e, acc, x)

    def _logsumexp_update(self, e: Any, target: str, x: str) -> None:
        # one pass: a larger element rescales the sum accumulated so far
        w = self.w
        name = self.n.array(e.out)
        m = f"acc_m_{target}"
        s_ = f"acc_s_{target}"
        w.line(f"v_{name} = {x}")
        with w.block(f"if v_{name} > {m}:"):
            w.line(f"{s_} = {s_} * math.exp({m} - v_{name}) + 1.0")
            w.line(f"{m} = v_{name}")
        with w.block(f"elif v_{name} > -np.inf:"):
            # (a second +inf adds 1, not exp(inf - inf) = NaN: the result stays +inf)
            w.line(f"{s_} += math.exp(v_{name} - {m}) if v_{name} < np.inf else 1.0")
        with w.block(f"elif v_{name} != v_{name}:"):
            w.line(f"{m} = v_{name}  # NaN propagates")

    def _finish_reduction(self, e: Any, space: tuple) -> None:
        """The result from its accumulator(s). For an array result, a loop nest over its
        elements: an array expression (`(acc_m + np.log(acc_s)).astype(...)`) over 4-d
        accumulators compiled for 11 s in Numba (an attention softmax's row logsumexp)."""
        n, w = self.n, self.w
        name = n.array(e.out)
        rank = e.out.ndim
        at = "[{at}]" if rank else ""
        if e.op.reduction.shifted:
            value = f"acc_m_{name}{at} + math.log(acc_s_{name}{at})"
        else:
            count = " * ".join(f"n{d}" for d in e.params["dims"]) or "1"
            value = e.op.reduction.result(f"acc_{name}{at}", count)
        if _counts_nans(e):
            value = f"np.nan if nans_{name}{at} else {value}"
        w.comment(eqn_comment(n, e))
        if rank == 0:
            w.line(f"{n.scalar(e.out)} = {cast(e.out)}({value})")
            self.form[id(e.out)] = "scalar"
            return
        shape = ", ".join(n.dims(e.out))
        w.line(f"{name} = np.empty(({shape},), dtype={cast(e.out)})")
        for line in element_loops(name, rank, f"{name}{at} = {cast(e.out)}({value})"):
            w.line(line)
        self.form[id(e.out)] = "array"

    # library calls ----------------------------------------------------------------------------

    def _call(self, index: int, k: Any) -> None:
        """The op's own Numba source (`OpDef.call`, ops/)."""
        n, w = self.n, self.w
        e = k.eqn
        w.comment(f"kernel {index}: {e.op.name}")
        w.comment(eqn_comment(n, e))
        ins = [self._ref(x) if isinstance(x, Var) else repr(x) for x in e.inputs]
        out_scalar = e.out.ndim == 0
        target = n.scalar(e.out) if out_scalar else n.array(e.out)
        for line in e.op.call.source(e, ins, target, n.dims(e.out)):
            w.line(line)
        self.form[id(e.out)] = "scalar" if out_scalar else "array"

    def _ref(self, v: Var) -> str:
        return self.n.scalar(v) if self.form[id(v)] in ("scalar", "loop") else self.n.array(v)
