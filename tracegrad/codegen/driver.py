"""Stage 3, the Python side: the driver of a CPU executable.

The compiled segments (`cpu.py`) are called from a small generated Python function, `call`,
that runs the steps of one trace in order: it unpacks the arguments, passes each segment its
arrays (made C-contiguous and of the dtype the segment was compiled for, where they could be
anything), allocates the arrays the loops write, runs the numpy steps (BLAS matmul, the few
ops without a lowering) in between, and returns the outputs and the new values of captured
state. It is the same idea as Inductor's wrapper code: straight-line Python with the tape's
names, so a call costs a few attribute lookups rather than an interpreter over a plan (about
1.5 us instead of 4 us for a one-segment function on a 2x3 input). For the value and gradient
of `mean((2x+1)**2)`::

    def call(args, captured):
        (a,) = args
        # step 0: compiled segment (kernel 0)
        a = _contiguous(a, _f32)
        k = _empty((2, 3), _f32)
        (e,) = _segment0(_cf, a, k, _S0, _LF0, _LI0)  # k: a buffer it wrote
        return (_array(e, _f32), k), ()

Globals of the driver start with `_` (the compiled segments, their shape tables and literal
slots, constants, dtypes and the helpers below); locals are the tape's names, as `f.tape()`
prints them. Sizes may appear in the driver (it belongs to one trace and is rebuilt, cheaply,
with it); they never appear in the compiled segments.
"""

from __future__ import annotations

import keyword
from collections.abc import Callable
from typing import Any

import numpy as np

from ..ops.core import blas_recent, note_blas
from ..tape.ir import Var
from .common import SegmentCode, python_step_label
from .source import SourceWriter


def contiguous(a: Any, dtype: np.dtype) -> np.ndarray:
    """`a` as a C-contiguous, writeable, aligned array of `dtype` (itself when it already is
    one, else a copy): one type for every call, known before the call (`segment_args`), so
    Numba compiles one specialization and the compile worker compiles that one."""
    if type(a) is np.ndarray and a.dtype == dtype:
        flags = a.flags
        if flags.c_contiguous and flags.writeable and flags.aligned:
            return a
    return np.array(a, dtype=dtype, order="C")


def as_dtype(a: Any, dtype: np.dtype) -> np.ndarray:
    """`a` as an array of `dtype` (itself when it already is one)."""
    if type(a) is np.ndarray and a.dtype == dtype:
        return a
    return np.asarray(a, dtype=dtype)


def owned(a: np.ndarray, inputs: list) -> np.ndarray:
    """`a`, or a copy of it when it shares memory with an argument or captured array: a result
    owns its memory."""
    if any(np.may_share_memory(a, i) for i in inputs if isinstance(i, np.ndarray)):
        return np.array(a, copy=True)
    return a


def python_step(e: Any) -> Callable:
    """A function of the step's Var inputs running `e`'s numpy forward (literal inputs and
    params bound), its result an array of the equation's dtype."""
    forward, params, dtype = e.op.forward, e.params, e.out.dtype
    slots = [x if not isinstance(x, Var) else None for x in e.inputs]
    positions = [i for i, x in enumerate(e.inputs) if isinstance(x, Var)]

    def step(*values: Any) -> np.ndarray:
        inputs = list(slots)
        for i, v in zip(positions, values):
            inputs[i] = v
        out = np.asarray(forward(*inputs, **params))
        return out if out.dtype == dtype else out.astype(dtype)

    step.__name__ = f"step_{e.op.name}"
    return step


def writes_into(e: Any) -> bool:
    """Whether `e` runs as `forward_into(out, ...)` with `out` from the executable's buffer
    pool: its op has one, the result is an array, and every input has the result's dtype."""
    return (
        e.op.forward_into is not None
        and e.out.ndim > 0
        and all(isinstance(x, Var) and x.dtype == e.out.dtype for x in e.inputs)
    )


def python_step_into(e: Any) -> Callable:
    """Like `python_step`, for an equation that `writes_into` its first argument."""
    forward_into, params = e.op.forward_into, e.params

    def step(out: np.ndarray, *values: Any) -> np.ndarray:
        forward_into(out, *values, **params)
        return out

    step.__name__ = f"step_{e.op.name}_into"
    return step


class DriverWriter:
    """Writes `call(args, captured)` for the steps of a `CpuProgram` (program.py).

    `steps` holds `SegmentCode`s and Python steps (kernels with an `eqn`); `fresh` is the set
    of ids of vars whose arrays are new at every call (cannot alias an argument). The source
    refers to globals the runtime binds: `_segment{n}` (step n's compiled function), `_take`
    (the buffer pool) and `_donate`."""

    def __init__(
        self,
        tape: Any,
        kernels: list[Any],
        steps: list[Any],
        names: dict[int, str],
        consts: dict[int, Any],
        fresh: set[int],
    ) -> None:
        self.tape = tape
        self.kernel_index = {id(k): i for i, k in enumerate(kernels)}
        self.steps = steps
        self.consts = consts
        self.fresh = fresh
        self.names = {k: _safe(v) for k, v in names.items()}
        self.globals: dict[str, Any] = {
            "np": np,
            "_contiguous": contiguous,
            "_as_dtype": as_dtype,
            "_owned": owned,
            "_array": np.array,
            "_empty": np.empty,
        }
        # how each var is held in the driver: "array" (a C-contiguous array of its dtype, made
        # by a compiled loop), "number" (a Python number returned by Numba for a 0-d result),
        # "const" (a global of the right type), "any" (arguments, captured state, numpy steps)
        self.form: dict[int, str] = {}
        self._aliasing = False  # a result needs the check against the inputs (`_owned`)
        # per segment step: the type of each argument its call passes, known before anything
        # runs (the compile worker compiles from these): ("array", dtype, ndim) for a
        # C-contiguous, writeable, aligned array, ("scalar", dtype) for a numpy scalar,
        # ("global", name) for a global of the driver (constants, tables)
        self.segment_args: dict[int, list[tuple]] = {}
        self.w = SourceWriter()

    def source(self) -> tuple[str, dict[str, Any]]:
        w = self.w
        with w.block("def call(args, captured):"):
            self._unpack("args", self.tape.args)
            self._unpack("captured", self.tape.captured)
            if any(isinstance(st, SegmentCode) and st.LI_serial is not None for st in self.steps):
                # loops run serially while OpenBLAS's threads spin after a BLAS call (ops/core)
                self.globals["_blas_recent"] = blas_recent
                w.line("_serial = _blas_recent()")
            for n, step in enumerate(self.steps):
                if isinstance(step, SegmentCode):
                    self._segment(n, step)
                else:
                    self._python(n, step)
            self._results()
        return w.getvalue(), self.globals

    # names --------------------------------------------------------------------------------

    def _name(self, v: Var) -> str:
        if id(v) in self.consts:
            g = "_c" + self.names[id(v)]
            if g not in self.globals:
                value = self.consts[id(v)]
                self.globals[g] = (
                    v.dtype.type(value)
                    if v.ndim == 0
                    else np.ascontiguousarray(value, dtype=v.dtype)
                )
            self.form[id(v)] = "const"
            return g
        return self.names[id(v)]

    def _dtype(self, dtype: np.dtype) -> str:
        g = "_" + _DTYPE_NAMES.get(np.dtype(dtype).name, np.dtype(dtype).name)
        self.globals[g] = np.dtype(dtype)
        return g

    def _scalar_type(self, dtype: np.dtype) -> str:
        g = "_" + _DTYPE_NAMES.get(np.dtype(dtype).name, np.dtype(dtype).name) + "_scalar"
        self.globals[g] = np.dtype(dtype).type
        return g

    def _unpack(self, what: str, vars: list[Var]) -> None:
        if not vars:
            return
        for v in vars:
            self.form[id(v)] = "any"
        names = ", ".join(self.names[id(v)] for v in vars)
        self.w.line(f"({names},) = {what}")

    # steps --------------------------------------------------------------------------------

    def _segment(self, n: int, seg: Any) -> None:
        w = self.w
        first = self.kernel_index[id(seg.kernels[0])]
        last = self.kernel_index[id(seg.kernels[-1])]
        what = f"kernel {first}" if first == last else f"kernels {first}-{last}"
        w.comment(f"step {n}: compiled segment ({what})")
        params = []
        types: list[tuple] = []
        for v in seg.inputs:
            name = self._name(v)
            form = self.form.get(id(v), "any")
            if form == "const":
                types.append(("global", name))
            elif v.ndim == 0:  # Numba specializes on the scalar's type: give it its own
                name = f"{self._scalar_type(v.dtype)}({name})"
                types.append(("scalar", v.dtype))
            else:
                if form != "array":
                    w.line(f"{name} = _contiguous({name}, {self._dtype(v.dtype)})")
                    self.form[id(v)] = "array"
                types.append(("array", v.dtype, v.ndim))
            params.append(name)
        for v, (shape, dtype, pooled), donor in zip(seg.buffers, seg.buffer_plan, seg.donated):
            name = self.names[id(v)]
            dt = self._dtype(dtype)
            if donor is not None:
                # the state's own array when it may be overwritten (executor._donations)
                old = next(x for x in self.tape.captured if id(x) == donor)
                w.line(f"{name} = _donate({self.names[id(old)]}, args, {tuple(shape)!r}, {dt})")
            elif pooled:
                w.line(f"{name} = _take({tuple(shape)!r}, {dt})")
            else:
                w.line(f"{name} = _empty({tuple(shape)!r}, {dt})")
            params.append(name)
            types.append(("array", np.dtype(dtype), len(shape)))
        g = f"_segment{n}"  # bound by the runtime to the compiled function
        for table, value in (("S", seg.S), ("LF", seg.LF), ("LI", seg.LI)):
            self.globals[f"_{table}{n}"] = value
        if seg.LI_serial is None:
            params += [f"_S{n}", f"_LF{n}", f"_LI{n}"]
        else:
            self.globals[f"_LI{n}_serial"] = seg.LI_serial
            params += [f"_S{n}", f"_LF{n}", f"(_LI{n}_serial if _serial else _LI{n})"]
        types += [("global", f"_S{n}"), ("global", f"_LF{n}"), ("global", f"_LI{n}")]
        self.segment_args[n] = types
        made_by_loops = {id(b) for b in seg.buffers}
        # the segment returns the values it made; the buffers passed in hold their results
        outs = [self.names[id(v)] for v in seg.outputs if id(v) not in made_by_loops]
        w.line(f"{_tuple(outs) if outs else '_'} = {g}({', '.join(params)})")
        for v in seg.outputs:
            if v.ndim == 0:
                self.form[id(v)] = "number"
            else:
                self.form[id(v)] = "array" if id(v) in made_by_loops else "any"

    def _python(self, n: int, k: Any) -> None:
        e = k.eqn
        where = python_step_label(e)
        self.w.comment(f"step {n}: {e.op.name} runs in {where}")
        args = [self._value(x) for x in e.inputs if isinstance(x, Var)]
        g = f"_step{n}"
        if writes_into(e):
            # into an array of the pool, reused by later calls once nothing holds it: a new
            # array per call costs page faults whenever malloc has handed the memory back
            self.globals[g] = python_step_into(e)
            out = f"_take({tuple(e.out.shape)!r}, {self._dtype(e.out.dtype)})"
            self.w.line(f"{self.names[id(e.out)]} = {g}({', '.join([out, *args])})")
        else:
            self.globals[g] = python_step(e)
            self.w.line(f"{self.names[id(e.out)]} = {g}({', '.join(args)})")
        self.form[id(e.out)] = "any"
        if e.op.uses_blas:
            self.globals["_note_blas"] = note_blas
            self.w.line("_note_blas()  # (ops/core.blas_recent)")

    def _value(self, v: Var) -> str:
        """`v` as an array (or numpy scalar) for numpy code."""
        name = self._name(v)
        if self.form.get(id(v)) == "number":
            return f"_array({name}, {self._dtype(v.dtype)})"
        return name

    def _results(self) -> None:
        w = self.w
        outs = []
        for i, x in enumerate(self.tape.outputs):
            outs.append(self._result(x, f"_out{i}"))
        writes = []
        for i, wr in enumerate(self.tape.writes):
            writes.append("None" if wr.value is None else self._result(wr.value, f"_write{i}"))
        if self._aliasing:
            w.comment("results own their memory: copies of those that share an input's")
            w.line("inputs = [*args, *captured]")
        w.line(f"return {_tuple(outs)}, {_tuple(writes)}")

    def _result(self, x: Any, literal_name: str) -> str:
        if not isinstance(x, Var):
            value = np.asarray(x)
            self.globals[literal_name] = value[()]
            return f"_array({literal_name}, {self._dtype(value.dtype)})"
        name = self._name(x)
        dt = self._dtype(x.dtype)
        form = self.form.get(id(x), "any")
        if form == "number" or form == "const":
            return f"_array({name}, {dt})"
        if form == "array" and id(x) in self.fresh:
            return name
        value = f"_as_dtype({name}, {dt})"
        if id(x) in self.fresh:
            return value
        self._aliasing = True  # the result may share an input's memory: checked per call
        return f"_owned({value}, inputs)"


_DTYPE_NAMES = {
    "float32": "f32",
    "float64": "f64",
    "float16": "f16",
    "int64": "i64",
    "int32": "i32",
    "int16": "i16",
    "int8": "i8",
    "uint8": "u8",
    "bool": "bool",
}


def _tuple(items: list[str]) -> str:
    return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"


def _safe(name: str) -> str:
    # tape names are letters only, so a digit makes a name no other var has ("as" -> "as0";
    # "asx" is a tape name of its own once a tape has 1300 vars)
    if keyword.iskeyword(name) or keyword.issoftkeyword(name) or name in ("np", "args", "inputs"):
        return name + "0"
    return name
